"""The action contract: one step of a rule, with a stable identity so it happens exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from flowd.asset import Asset
from flowd.context import RunContext


@dataclass(frozen=True, slots=True)
class Step:
    """Which step this is: `token` is stable across retries of the same job."""

    rule: str
    index: int
    token: str

    @property
    def id(self) -> str:
        return f"{self.rule}/{self.index}"


@dataclass(slots=True)
class Result:
    asset: Asset
    record: dict[str, Any] = field(default_factory=dict)
    consumes: bool = False  # move and delete ask for the source's removal once every rule succeeded
    # Set when the rule must go no further for this asset (convert's `modes: {cmyk: skip}`): the reason.
    # A rule skipped before any effect counts as not matched, so the file is left for other rules.
    skip_rule: str | None = None


class Action(Protocol):
    kind: ClassVar[str]
    effectful: ClassVar[bool]  # False: pure (rename); it is recomputed on retry, never journalled

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result: ...
