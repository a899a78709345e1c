"""field and required_fields: conditions on what the asset's metadata says.

Text comparisons ignore case ("Associated Press" matches "ASSOCIATED PRESS", as Color Factory's macro
conditions do); `matches` is a regular expression (add `(?-i)` for case). A multi-valued field
(keywords) satisfies a comparison when any of its values does; `is_empty` looks at all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowd.asset import Asset
from flowd.condition import Record
from flowd.context import RunContext
from flowd.parse import Loc, Parser
from flowd.units import parse_duration

if TYPE_CHECKING:
    from flowd.metadata.fields import FieldDef

TEXT_OPS = ("equals", "contains", "starts_with", "in", "matches")
OPS = ("is_empty", "not_empty", *TEXT_OPS, "gt", "lt", "ge", "le", "before", "after")
DATE_HELP = "a date (2025-01-31 or 2025-01-31T12:00) or an age like 30d (that long before now)"


@dataclass(frozen=True, slots=True)
class Test:
    op: str
    arg: Any
    show: Any

    def __call__(self, values: list[str], when: datetime | None, now: datetime) -> bool:
        op, arg = self.op, self.arg
        if op == "is_empty":
            return bool((not any(v.strip() for v in values)) == arg)
        if op == "not_empty":
            return bool(any(v.strip() for v in values) == arg)
        if op in ("before", "after"):
            if when is None:
                return False
            when = when.replace(tzinfo=None)  # compared as local wall-clock time, as the rule writes it
            bound = now - arg if isinstance(arg, timedelta) else arg
            return when < bound if op == "before" else when > bound
        if op in ("gt", "lt", "ge", "le"):
            return any(_numeric(v, op, arg) for v in values)
        folded = [v.casefold() for v in values]
        match op:
            case "equals": return arg in folded
            case "contains": return any(arg in v for v in folded)
            case "starts_with": return any(v.startswith(arg) for v in folded)
            case "in": return any(v in arg for v in folded)
            case "matches": return any(arg.search(v) for v in values)
        raise AssertionError(op)


def _numeric(value: str, op: str, bound: float) -> bool:
    try:
        number = float(value.strip())
    except ValueError:
        return False
    return {"gt": number > bound, "lt": number < bound, "ge": number >= bound, "le": number <= bound}[op]


@dataclass(frozen=True, slots=True)
class FieldIs:
    """`field: {116: {is_empty: true}}`, `field: {source: {contains: Associated Press}}`: every test holds."""

    checks: tuple[tuple[FieldDef, str, tuple[Test, ...]], ...]

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        meta = asset.metadata(ctx.fields)
        result = True
        for field, written, tests in self.checks:
            values = meta.get(field)
            when = meta.date(field) if any(t.op in ("before", "after") for t in tests) else None
            ok = all(t(values, when, ctx.now) for t in tests)
            out.append({"if": "field", "field": written, "value": values if field.multi else meta.text(field),
                        "expect": {t.op: t.show for t in tests}, "result": ok})
            result = result and ok
            if not result:
                break
        return result


@dataclass(frozen=True, slots=True)
class RequiredFields:
    """`required_fields: [caption, byline]`: every listed field has a value (Color Factory's
    "Required text missing" routing is `not: {required_fields: [...]}`)."""

    fields: tuple[tuple[FieldDef, str], ...]

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        meta = asset.metadata(ctx.fields)
        missing = [written for field, written in self.fields if not any(v.strip() for v in meta.get(field))]
        out.append({"if": "required_fields", "expect": [w for _f, w in self.fields], "missing": missing,
                    "result": not missing})
        return not missing


def build_field(value: object, loc: Loc, p: Parser) -> FieldIs | None:
    if not isinstance(value, dict) or not value:
        p.error(loc, "expected {FIELD: {TEST: value}}, e.g. {116: {is_empty: true}}", value)
        return None
    checks = []
    ok = True
    for key, spec in value.items():
        field = p.field(key, [*loc, key])
        tests = _tests(spec, [*loc, key], p)
        if field is None or tests is None:
            ok = False
            continue
        checks.append((field, str(key), tests))
    return FieldIs(tuple(checks)) if ok else None


def _tests(spec: object, loc: Loc, p: Parser) -> tuple[Test, ...] | None:
    if not isinstance(spec, dict) or not spec:
        p.error(loc, "expected a mapping of tests, e.g. {contains: Reuters}", spec, ", ".join(OPS))
        return None
    out = []
    for op, arg in spec.items():
        where = [*loc, op]
        if op not in OPS:
            p.error(where, f"unknown field test '{op}'", op, ", ".join(OPS))
            return None
        built = _test(str(op), arg, where, p)
        if built is None:
            return None
        out.append(built)
    return tuple(out)


def _test(op: str, arg: object, loc: Loc, p: Parser) -> Test | None:
    if op in ("is_empty", "not_empty"):
        if not isinstance(arg, bool):
            p.error(loc, "expected true or false", arg)
            return None
        return Test(op, arg, arg)
    if op == "in":
        if not isinstance(arg, list) or not arg or any(isinstance(v, dict | list) for v in arg):
            p.error(loc, "expected a list of values", arg)
            return None
        return Test(op, frozenset(str(v).casefold() for v in arg), [str(v) for v in arg])
    if op == "matches":
        if not isinstance(arg, str):
            p.error(loc, "expected a regular expression", arg)
            return None
        try:
            return Test(op, re.compile(arg, re.IGNORECASE), arg)
        except re.error as exc:
            p.error(loc, f"not a valid regular expression: {exc}", arg)
            return None
    if op in ("gt", "lt", "ge", "le"):
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            p.error(loc, "expected a number", arg)
            return None
        return Test(op, float(arg), arg)
    if op in ("before", "after"):
        parsed = _when(arg)
        if parsed is None:
            p.error(loc, f"expected {DATE_HELP}", arg)
            return None
        return Test(op, parsed, arg if isinstance(arg, str | int | float) else str(arg))
    if arg is None or isinstance(arg, dict | list):
        p.error(loc, "expected a text value", arg)
        return None
    return Test(op, str(arg).casefold(), str(arg))


def _when(arg: object) -> datetime | timedelta | None:
    if hasattr(arg, "isoformat") and not isinstance(arg, datetime):  # YAML gives a date for 2025-01-31
        return datetime.fromisoformat(arg.isoformat())
    if isinstance(arg, datetime):
        return arg.replace(tzinfo=None)
    if isinstance(arg, str):
        try:
            return datetime.fromisoformat(arg).replace(tzinfo=None)
        except ValueError:
            pass
    try:
        return timedelta(seconds=parse_duration(arg))
    except ValueError:
        return None


def build_required_fields(value: object, loc: Loc, p: Parser) -> RequiredFields | None:
    items = value if isinstance(value, list) else [value]
    if not items:
        p.error(loc, "expected a list of fields, e.g. [caption, byline] or [120, 80]", value)
        return None
    out = []
    for i, item in enumerate(items):
        field = p.field(item, [*loc, i] if isinstance(value, list) else loc)
        if field is None:
            return None
        out.append((field, str(item)))
    return RequiredFields(tuple(out))

