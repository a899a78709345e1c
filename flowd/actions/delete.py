"""delete: remove the source once every matching rule has succeeded (nothing is stored), or remove another
stored file now (`delete: {target: ...}`: a rendition whose original was deleted)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from flowd.action import Result, Step
from flowd.actions.common import render_target, target_storage, validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.parse import Loc, Parser
from flowd.template import Template


class DeleteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """`delete: {}`: the source is removed at the end, after every other matching rule has succeeded."""

    kind: ClassVar[str] = "delete"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        return Result(asset, {"outcome": "source removal requested"}, consumes=True)


@dataclass(frozen=True, slots=True)
class DeleteTarget:
    """`delete: {target: "lake:web/{relpath}"}`: remove that stored file now; the source is untouched.
    Already gone is success, so a retry (or a second deletion event) is harmless."""

    target: Template
    kind: ClassVar[str] = "delete"
    effectful: ClassVar[bool] = True

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        target = render_target(self.target, asset, step, ctx.storages)
        storage = target_storage(ctx, target, asset.tenant)
        if ctx.simulate:
            outcome = "would delete" if storage.exists(target.key) else "nothing to delete"
        elif storage.remote:
            with ctx.released():
                outcome = "deleted" if storage.delete(target.key) else "already gone"
        else:
            outcome = "deleted" if storage.delete(target.key) else "already gone"
        return Result(asset, {"target": str(target), "outcome": outcome})


def build_delete(value: object, loc: Loc, p: Parser) -> Delete | DeleteTarget | None:
    spec = validate(DeleteSpec, value, loc, p)
    if spec is None:
        return None
    if spec.target is None:
        return Delete()
    target = p.target(spec.target, [*loc, "target"])
    return DeleteTarget(target) if target is not None else None
