"""The condition contract and the comparison shared by size, age and later numeric conditions."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flowd.asset import Asset
from flowd.context import RunContext

Record = dict[str, Any]


class Condition(Protocol):
    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        """True when the asset satisfies it. Appends what it looked at and the result to `out`."""
        ...


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
    "eq": operator.eq, "ne": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Compare:
    """All of {gt: .., lt: ..} hold. Built from the rule with units already parsed."""

    bounds: tuple[tuple[str, float], ...]

    def __call__(self, value: float) -> bool:
        return all(OPERATORS[op](value, bound) for op, bound in self.bounds)

    def show(self) -> dict[str, float]:
        return dict(self.bounds)


def parse_compare(value: object, parse: Callable[[object], float], help_text: str) -> Compare:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected a comparison like {{gt: ..., lt: ...}} with {help_text}")
    bounds = []
    for op, raw in value.items():
        if op not in OPERATORS:
            raise ValueError(f"unknown comparison '{op}'; allowed: {', '.join(OPERATORS)}")
        bounds.append((str(op), float(parse(raw))))
    return Compare(tuple(bounds))
