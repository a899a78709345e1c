"""delete: remove the source once every matching rule has succeeded (nothing is stored)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from flowd.action import Result, Step
from flowd.actions.common import validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.parse import Loc, Parser


class DeleteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Delete:
    """`delete: {}`: the source is removed at the end, after every other matching rule has succeeded."""

    kind: ClassVar[str] = "delete"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        return Result(asset, {"outcome": "source removal requested"}, consumes=True)


def build_delete(value: object, loc: Loc, p: Parser) -> Delete | None:
    return Delete() if validate(DeleteSpec, value, loc, p) is not None else None
