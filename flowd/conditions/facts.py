"""size, age, format, hotfolder: conditions on facts of the file rather than its name."""

from __future__ import annotations

from dataclasses import dataclass

from flowd.asset import Asset
from flowd.condition import Compare, CompareError, Record, parse_compare
from flowd.context import RunContext
from flowd.parse import Loc, Parser
from flowd.sniff import FORMATS
from flowd.units import DURATION_HELP, SIZE_HELP, parse_duration, parse_size


@dataclass(frozen=True, slots=True)
class Size:
    """`size: {gt: 1KB, le: 20MB}`: bytes, SI (KB) or IEC (KiB) units."""

    compare: Compare

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        result = self.compare(asset.size)
        out.append({"if": "size", "value": asset.size, "expect": self.compare.show(), "result": result})
        return result


@dataclass(frozen=True, slots=True)
class Age:
    """`age: {gt: 30d}`: time since the file was last modified, in seconds."""

    compare: Compare

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        age = max(0.0, ctx.now.timestamp() - asset.mtime_ns / 1e9)
        result = self.compare(age)
        out.append({"if": "age", "value": round(age, 3), "expect": self.compare.show(), "result": result})
        return result


@dataclass(frozen=True, slots=True)
class Format:
    """`format: [jpeg, tiff]`: sniffed from the first bytes, whatever the extension says."""

    formats: frozenset[str]

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        value = asset.format()
        result = value in self.formats
        out.append({"if": "format", "value": value, "expect": sorted(self.formats), "result": result})
        return result


@dataclass(frozen=True, slots=True)
class HotFolderIs:
    """`hotfolder: inbox` or a list: which hot folder the asset arrived in."""

    names: frozenset[str]

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        result = asset.hotfolder in self.names
        out.append({"if": "hotfolder", "value": asset.hotfolder, "expect": sorted(self.names), "result": result})
        return result


def build_size(value: object, loc: Loc, p: Parser) -> Size | None:
    try:
        return Size(parse_compare(value, parse_size, SIZE_HELP))
    except CompareError as exc:
        p.error([*loc, exc.key] if exc.key else loc, str(exc), exc.got, exc.allowed)
        return None


def build_age(value: object, loc: Loc, p: Parser) -> Age | None:
    try:
        return Age(parse_compare(value, parse_duration, DURATION_HELP))
    except CompareError as exc:
        p.error([*loc, exc.key] if exc.key else loc, str(exc), exc.got, exc.allowed)
        return None


def build_format(value: object, loc: Loc, p: Parser) -> Format | None:
    items = value if isinstance(value, list) else [value]
    bad = [v for v in items if v not in FORMATS]
    if not items or bad:
        p.error(loc, "unknown format", bad[0] if bad else value, ", ".join(FORMATS))
        return None
    return Format(frozenset(str(v) for v in items))


def build_hotfolder(value: object, loc: Loc, p: Parser) -> HotFolderIs | None:
    if any(src.startswith("~") for src in p.rule_hotfolders):
        # A sweep's jobs come from its own listing, whatever folder it lists: the condition would never hold.
        p.error(loc, "a sweep rule's files come from over:, not from a hot folder; to sweep a hot folder, "
                "write over: {hotfolder: NAME}", value)
        return None
    items = value if isinstance(value, list) else [value]
    known = p.hotfolders_of_tenant()
    bad = [v for v in items if not isinstance(v, str) or v not in known]  # [[inbox]] is unhashable
    if not items or bad:
        p.error(loc, f"no hot folder of tenant '{p.tenant}' has this name", bad[0] if bad else value,
                ", ".join(sorted(known)) or "(none)")
        return None
    return HotFolderIs(frozenset(str(v) for v in items))
