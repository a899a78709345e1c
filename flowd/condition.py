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


class CompareError(ValueError):
    """What is wrong in {gt: .., lt: ..}: `key` is the operator at fault (None: the whole mapping)."""

    def __init__(self, message: str, key: str | None, got: Any, allowed: str | None) -> None:
        super().__init__(message)
        self.key, self.got, self.allowed = key, got, allowed


def parse_compare(value: object, parse: Callable[[object], float], help_text: str) -> Compare:
    operators = ", ".join(OPERATORS)
    if not isinstance(value, dict) or not value:
        raise CompareError(f"expected a comparison like {{gt: ..., lt: ...}} with {help_text}", None, value, operators)
    bounds = []
    for op, raw in value.items():
        if op not in OPERATORS:
            raise CompareError(f"unknown comparison '{op}'", str(op), op, operators)
        try:
            bounds.append((str(op), float(parse(raw))))
        except ValueError as exc:  # a bad size or duration: name it, not the operators
            raise CompareError(str(exc), str(op), raw, None) from None
    return Compare(tuple(bounds))
