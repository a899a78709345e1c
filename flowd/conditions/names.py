"""name, regex, extension, path: conditions on what a file is called and where it sits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowd.asset import Asset
from flowd.condition import Record
from flowd.context import RunContext
from flowd.glob import GlobError, compile_glob
from flowd.parse import Loc, Parser


@dataclass(frozen=True, slots=True)
class Name:
    """`name: "*_draft*"` or a list: the file name matches any glob (case-insensitive)."""

    patterns: tuple[str, ...]
    compiled: tuple[re.Pattern[str], ...]
    on: str = "name"

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        value = asset.name if self.on == "name" else asset.relpath
        result = any(p.match(value) for p in self.compiled)
        # The trace names the condition as the rule wrote it: `path`, not the attribute it reads.
        out.append({"if": "name" if self.on == "name" else "path", "value": value, "expect": list(self.patterns),
                    "result": result})
        return result


@dataclass(frozen=True, slots=True)
class Regex:
    """`regex: "^IMG_\\d+"` or `{pattern: ..., on: name|relpath, ignore_case: true}`: re.search."""

    pattern: re.Pattern[str]
    on: str

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        value = asset.name if self.on == "name" else asset.relpath
        result = self.pattern.search(value) is not None
        out.append({"if": "regex", "on": self.on, "value": value, "expect": self.pattern.pattern, "result": result})
        return result


@dataclass(frozen=True, slots=True)
class Extension:
    """`extension: [jpg, jpeg]`: the last extension, without the dot, case-insensitive."""

    extensions: frozenset[str]

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        value = asset.ext[1:].lower()
        result = value in self.extensions
        out.append({"if": "extension", "value": value, "expect": sorted(self.extensions), "result": result})
        return result


def _strings(value: object, loc: Loc, p: Parser, what: str) -> list[str] | None:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        p.error(loc, f"expected {what} or a list of them", value)
        return None
    return [str(v) for v in items]


def build_globs(value: object, loc: Loc, p: Parser, on: str) -> Name | None:
    patterns = _strings(value, loc, p, "a glob such as '*.jpg'")
    if patterns is None:
        return None
    compiled = []
    for i, pattern in enumerate(patterns):
        try:
            compiled.append(compile_glob(pattern))
        except GlobError as exc:
            p.error([*loc, i] if isinstance(value, list) else loc, f"bad glob: {exc}", pattern)
            return None
    return Name(tuple(patterns), tuple(compiled), on)


def build_name(value: object, loc: Loc, p: Parser) -> Name | None:
    return build_globs(value, loc, p, "name")


def build_path(value: object, loc: Loc, p: Parser) -> Name | None:
    return build_globs(value, loc, p, "relpath")


def build_regex(value: object, loc: Loc, p: Parser) -> Regex | None:
    on, ignore_case, pattern = "name", False, value
    if isinstance(value, dict):
        extra = set(value) - {"pattern", "on", "ignore_case"}
        if extra:
            key = sorted(extra)[0]
            p.error([*loc, key], f"unknown key '{key}'", key, "pattern, on, ignore_case")
            return None
        pattern, on, ignore_case = value.get("pattern"), value.get("on", "name"), value.get("ignore_case", False)
        if on not in ("name", "relpath"):
            p.error([*loc, "on"], "regex can look at the name or the relpath", on, "name, relpath")
            return None
        if not isinstance(ignore_case, bool):
            p.error([*loc, "ignore_case"], "expected true or false", ignore_case)
            return None
    if not isinstance(pattern, str) or not pattern:
        p.error(loc, "expected a regular expression", pattern)
        return None
    try:
        compiled = re.compile(pattern, re.I if ignore_case else 0)
    except re.error as exc:
        p.error(loc, f"bad regular expression: {exc}", pattern)
        return None
    return Regex(compiled, str(on))


def build_extension(value: object, loc: Loc, p: Parser) -> Extension | None:
    items = _strings(value, loc, p, "an extension such as 'jpg'")
    if items is None:
        return None
    for item in items:
        if "/" in item or "*" in item:
            p.error(loc, "an extension is a plain word such as 'jpg' (use name: for globs)", item)
            return None
    return Extension(frozenset(i.lower().lstrip(".") for i in items))
