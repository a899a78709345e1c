"""all, any, not: combine conditions to any depth. Every branch's values land in the trace."""

from __future__ import annotations

from dataclasses import dataclass

from flowd.asset import Asset
from flowd.condition import Condition, Record
from flowd.context import RunContext
from flowd.parse import Loc, Parser


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]
    kind: str = "all"

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        inner: list[Record] = []
        result = True
        for item in self.items:
            if not item.check(asset, ctx, inner):
                result = False
                break  # later conditions are not evaluated (and may be costly, like hashing)
        out.append({"if": self.kind, "result": result, "of": inner})
        return result


@dataclass(frozen=True, slots=True)
class Any_:
    items: tuple[Condition, ...]

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        inner: list[Record] = []
        result = False
        for item in self.items:
            if item.check(asset, ctx, inner):
                result = True
                break
        out.append({"if": "any", "result": result, "of": inner})
        return result


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        inner: list[Record] = []
        result = not self.item.check(asset, ctx, inner)
        out.append({"if": "not", "result": result, "of": inner})
        return result


def build_all(value: object, loc: Loc, p: Parser) -> Condition | None:
    items = p.condition_list(value, loc)
    return All(tuple(items)) if items is not None else None


def build_any(value: object, loc: Loc, p: Parser) -> Condition | None:
    items = p.condition_list(value, loc)
    return Any_(tuple(items)) if items is not None else None


def build_not(value: object, loc: Loc, p: Parser) -> Condition | None:
    inner = p.condition(value, loc)
    return Not(inner) if inner is not None else None
