"""image: conditions on the pixels' facts, read from the header only (no decode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowd.asset import Asset
from flowd.condition import Compare, CompareError, Record, parse_compare
from flowd.context import RunContext
from flowd.errors import PermanentError
from flowd.parse import Loc, Parser

NUMERIC = ("width", "height", "megapixels", "bits", "orientation")
KEYS = (*NUMERIC, "color", "has_icc")
COLORS = ("rgb", "cmyk", "gray")


@dataclass(frozen=True, slots=True)
class ImageIs:
    """`image: {width: {ge: 2000}, color: cmyk, has_icc: false}`: every test holds. A file that is not
    an image (or that libvips cannot read) fails every image condition; the trace says why."""

    numeric: tuple[tuple[str, Compare], ...]
    colors: frozenset[str] | None
    has_icc: bool | None

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        try:
            facts = asset.image()
        except PermanentError as exc:
            out.append({"if": "image", "value": None, "error": str(exc), "result": False})
            return False
        seen: dict[str, Any] = {}
        expect: dict[str, Any] = {}
        result = True
        for key, compare in self.numeric:
            value = facts.megapixels if key == "megapixels" else getattr(facts, key)
            seen[key], expect[key] = round(value, 3), compare.show()
            result = result and compare(value)
        if self.colors is not None:
            seen["color"], expect["color"] = facts.color, sorted(self.colors)
            result = result and facts.color in self.colors
        if self.has_icc is not None:
            seen["has_icc"], expect["has_icc"] = facts.has_icc, self.has_icc
            result = result and facts.has_icc == self.has_icc
        out.append({"if": "image", "value": seen, "expect": expect, "result": result})
        return result


def build_image(value: object, loc: Loc, p: Parser) -> ImageIs | None:
    if not isinstance(value, dict) or not value:
        p.error(loc, "expected image tests, e.g. {width: {gt: 1000}, color: cmyk}", value, ", ".join(KEYS))
        return None
    numeric: list[tuple[str, Compare]] = []
    colors: frozenset[str] | None = None
    has_icc: bool | None = None
    ok = True
    for key, arg in value.items():
        where = [*loc, key]
        if key in NUMERIC:
            if isinstance(arg, int | float) and not isinstance(arg, bool):
                arg = {"eq": arg}  # `bits: 16` means exactly 16
            try:
                numeric.append((str(key), parse_compare(arg, _number, "a number")))
            except CompareError as exc:
                p.error([*where, exc.key] if exc.key else where, str(exc), exc.got, exc.allowed)
                ok = False
        elif key == "color":
            items = arg if isinstance(arg, list) else [arg]
            bad = [c for c in items if c not in COLORS]
            if not items or bad:
                p.error(where, "unknown colour mode", bad[0] if bad else arg, ", ".join(COLORS))
                ok = False
            else:
                colors = frozenset(str(c) for c in items)
        elif key == "has_icc":
            if not isinstance(arg, bool):
                p.error(where, "expected true or false", arg)
                ok = False
            else:
                has_icc = arg
        else:
            p.error(where, f"unknown image test '{key}'", key, ", ".join(KEYS))
            ok = False
    return ImageIs(tuple(numeric), colors, has_icc) if ok else None


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    return float(value)
