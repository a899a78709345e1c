"""store and move: write the asset into a storage under a conflict policy."""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from flowd.action import Result, Step
from flowd.actions.common import render_target, validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import PermanentError
from flowd.parse import Loc, Parser
from flowd.storage.base import Conflict, Put
from flowd.template import Template


class StoreSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to: str
    conflict: Conflict = Conflict.FAIL
    keep_mtime: bool = False
    digits: int | None = Field(None, ge=1, le=9)


@dataclass(frozen=True, slots=True)
class Store:
    """`store: {to: "lake:originals/{relpath}", conflict: increment}`: write a copy; the source stays
    until the hot folder's `after` decides its fate.

    `keep_mtime: true`: the output gets the source's modification time (Color Factory's "copy file date");
    ADLS keeps it in the blob's metadata as `flowd_mtime`. `digits: 3` (with `conflict: increment`):
    photo_001.jpg rather than photo_1.jpg."""

    to: Template
    conflict: Conflict
    keep_mtime: bool = False
    digits: int = 0
    kind: ClassVar[str] = "store"
    effectful: ClassVar[bool] = True
    consumes: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        target = render_target(self.to, asset, step, ctx.storages)
        storage = ctx.storages.get(target.storage)
        if storage is None:
            raise PermanentError(f"no storage named '{target.storage}'")
        if storage.tenants is not None and asset.tenant not in storage.tenants:
            raise PermanentError(f"storage '{target.storage}' is not open to tenant '{asset.tenant}'")
        origin = asset.origin
        in_place = origin is not None and origin.storage == target.storage and origin.key == target.key
        record: dict[str, Any] = {}
        renamed = None
        if not ctx.simulate and self.consumes and origin is not None and asset.content is None \
                and origin.storage == target.storage:
            renamed = self._rename(storage, origin.key, target.key, origin.version, ctx)
        mtime_ns = asset.mtime_ns if self.keep_mtime else None
        if ctx.simulate:
            put = storage.plan(target.key, self.conflict, asset.sha256, digits=self.digits)
            if in_place and self.conflict is Conflict.OVERWRITE:
                record["in_place"] = True
        elif renamed is not None:
            put = renamed
            record["renamed"] = True  # one atomic server-side rename: no bytes travelled
        elif storage.remote:
            info = {"flowd_source": _source(asset), "flowd_rule": step.rule, "flowd_tenant": asset.tenant,
                    "flowd_job": str(asset.job_id)}
            replaces = origin.version if in_place and origin is not None else None
            if replaces is not None and self.conflict is not Conflict.OVERWRITE:
                raise PermanentError(f"{target} is the asset itself: writing it back in place needs "
                                     "conflict: overwrite (the write is refused if the blob changed meanwhile)")
            path = asset.path  # resolved in the lane (a stored asset may download its bytes here)
            with ctx.released():  # a network upload: other workers compute meanwhile
                # The upload hashes the bytes as it reads them; asset.sha256 (a second read of the file)
                # runs only if a comparison needs the hash first (skip_identical finding a blob there).
                put = storage.put_file(target.key, path, conflict=self.conflict, token=step.token,
                                       sha256=asset.sha256, info=info, replaces=replaces, mtime_ns=mtime_ns,
                                       digits=self.digits)
            if replaces is not None:
                record["in_place"] = True
        elif asset.content is not None:
            # Rewritten bytes in the job's work folder are private: linking them is always safe (the
            # storage copies instead once the file already has a second name). Being private, it can take the
            # source's time itself so that keep_mtime still links, unless an earlier output shares it already.
            if mtime_ns is not None and os.stat(asset.content).st_nlink == 1:
                os.utime(asset.content, ns=(mtime_ns, mtime_ns))
            put = storage.put_file(target.key, asset.path, conflict=self.conflict, token=step.token,
                                   sha256=asset.sha256, may_link=True, mtime_ns=mtime_ns, digits=self.digits)
        else:
            # One link per job at most: two outputs sharing one inode would also share the step token.
            may_link = (asset.disposable or self.consumes) and not ctx.linked and origin is None
            put = storage.put_file(target.key, asset.path, conflict=self.conflict, token=step.token,
                                   sha256=asset.sha256, may_link=may_link, mtime_ns=mtime_ns, digits=self.digits)
            if put.linked:
                ctx.linked.append((target.storage, put.key))
        record = {"target": f"{target.storage}:{put.key}", "outcome": put.outcome, "conflict": self.conflict.value,
                  **record}
        if self.keep_mtime:
            record["keep_mtime"] = True
        if asset.sidecar is not None:
            # The XMP sidecar follows its file's final name (after `increment`): photo_1.jpg -> photo_1.xmp.
            key = posixpath.splitext(put.key)[0] + ".xmp"
            if not ctx.simulate:
                sidecar = asset.sidecar
                storage.put_file(key, sidecar, conflict=Conflict.OVERWRITE, token=f"{step.token}-xmp",
                                 sha256=lambda: hashlib.sha256(sidecar.read_bytes()).hexdigest())
            record["sidecar"] = f"{target.storage}:{key}"
        return Result(asset, record, consumes=self.consumes)

    def _rename(self, storage: object, source: str, key: str, version: str | None, ctx: RunContext) -> Put | None:
        rename = getattr(storage, "rename", None)
        if rename is None or source == key:
            return None
        with ctx.released():
            put: Put | None = rename(source, key, conflict=self.conflict, etag=version, digits=self.digits)
        return put


def _source(asset: Asset) -> str:
    """Where an output came from, as its blob metadata records it."""
    if asset.origin is not None:
        return f"{asset.origin.storage}:{asset.origin.key}"
    return f"{asset.hotfolder}/{asset.source_relpath}"


@dataclass(frozen=True, slots=True)
class Move(Store):
    """`move: {to: ...}`: store, then remove the source once every matching rule has succeeded."""

    kind: ClassVar[str] = "move"
    consumes: ClassVar[bool] = True


S = TypeVar("S", bound=Store)


def build_store(value: object, loc: Loc, p: Parser) -> Store | None:
    return _build(Store, value, loc, p)


def build_move(value: object, loc: Loc, p: Parser) -> Move | None:
    return _build(Move, value, loc, p)


def _build(kind: type[S], value: object, loc: Loc, p: Parser) -> S | None:
    spec = validate(StoreSpec, value, loc, p)
    if spec is None:
        return None
    to = p.target(spec.to, [*loc, "to"])
    if spec.digits is not None and spec.conflict is not Conflict.INCREMENT:
        p.error([*loc, "digits"], "digits pads the counter that conflict: increment appends; this conflict policy "
                f"is '{spec.conflict.value}'", spec.digits)
        return None
    return kind(to, spec.conflict, spec.keep_mtime, spec.digits or 0) if to else None
