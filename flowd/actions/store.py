"""store and move: write the asset into a storage under a conflict policy."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from flowd.action import Result, Step
from flowd.actions.common import render_target, validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import PermanentError
from flowd.parse import Loc, Parser
from flowd.storage.base import Conflict
from flowd.template import Template


class StoreSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to: str
    conflict: Conflict = Conflict.FAIL


@dataclass(frozen=True, slots=True)
class Store:
    """`store: {to: "lake:originals/{relpath}", conflict: increment}`: write a copy; the source stays
    until the hot folder's `after` decides its fate."""

    to: Template
    conflict: Conflict
    kind: ClassVar[str] = "store"
    effectful: ClassVar[bool] = True
    consumes: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        target = render_target(self.to, asset, step)
        storage = ctx.storages.get(target.storage)
        if storage is None:
            raise PermanentError(f"no storage named '{target.storage}'")
        if storage.tenants is not None and asset.tenant not in storage.tenants:
            raise PermanentError(f"storage '{target.storage}' is not open to tenant '{asset.tenant}'")
        if ctx.simulate:
            put = storage.plan(target.key, self.conflict, asset.sha256)
        else:
            if storage.remote:
                sha = asset.sha256()  # hashed here, in the lane, so the upload itself needs no CPU turn
                with ctx.released():  # a network upload: other workers compute meanwhile
                    put = storage.put_file(target.key, asset.path, conflict=self.conflict, token=step.token,
                                           sha256=lambda: sha)
            elif asset.content is not None:
                # Rewritten bytes in the job's work folder are private: linking them is always safe (the
                # storage copies instead once the file already has a second name).
                put = storage.put_file(target.key, asset.path, conflict=self.conflict, token=step.token,
                                       sha256=asset.sha256, may_link=True)
            else:
                # One link per job at most: two outputs sharing one inode would also share the step token.
                may_link = (asset.disposable or self.consumes) and not ctx.linked
                put = storage.put_file(target.key, asset.path, conflict=self.conflict, token=step.token,
                                       sha256=asset.sha256, may_link=may_link)
                if put.linked:
                    ctx.linked.append((target.storage, put.key))
        record = {"target": f"{target.storage}:{put.key}", "outcome": put.outcome, "conflict": self.conflict.value}
        if asset.sidecar is not None:
            # The XMP sidecar follows its file's final name (after `increment`): photo_1.jpg -> photo_1.xmp.
            key = posixpath.splitext(put.key)[0] + ".xmp"
            if not ctx.simulate:
                sidecar = asset.sidecar
                storage.put_file(key, sidecar, conflict=Conflict.OVERWRITE, token=f"{step.token}-xmp",
                                 sha256=lambda: hashlib.sha256(sidecar.read_bytes()).hexdigest())
            record["sidecar"] = f"{target.storage}:{key}"
        return Result(asset, record, consumes=self.consumes)


@dataclass(frozen=True, slots=True)
class Move(Store):
    """`move: {to: ...}`: store, then remove the source once every matching rule has succeeded."""

    kind: ClassVar[str] = "move"
    consumes: ClassVar[bool] = True


def build_store(value: object, loc: Loc, p: Parser) -> Store | None:
    spec = validate(StoreSpec, value, loc, p)
    to = p.target(spec.to, [*loc, "to"]) if spec else None
    return Store(to, spec.conflict) if spec and to else None


def build_move(value: object, loc: Loc, p: Parser) -> Move | None:
    spec = validate(StoreSpec, value, loc, p)
    to = p.target(spec.to, [*loc, "to"]) if spec else None
    return Move(to, spec.conflict) if spec and to else None
