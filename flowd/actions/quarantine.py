"""quarantine: send the asset to its hot folder's errors folder with a reason a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from flowd.action import Result, Step
from flowd.actions.common import render, validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import PermanentError
from flowd.parse import Loc, Parser
from flowd.template import Template


class QuarantineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reason: str = Field(min_length=1)


class Quarantined(PermanentError):
    """Raised on purpose: the asset goes to `errors` with this reason, later rules do not run."""


@dataclass(frozen=True, slots=True)
class Quarantine:
    """`quarantine: {reason: "no caption"}`: the reason may use placeholders."""

    reason: Template
    kind: ClassVar[str] = "quarantine"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        raise Quarantined(render(self.reason, asset, step))


def build_quarantine(value: object, loc: Loc, p: Parser) -> Quarantine | None:
    spec = validate(QuarantineSpec, value, loc, p)
    reason = p.template(spec.reason, [*loc, "reason"]) if spec else None
    return Quarantine(reason) if reason else None
