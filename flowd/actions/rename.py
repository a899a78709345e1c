"""rename: change the asset's name for the actions after it (the source file keeps its name)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowd.action import Result, Step
from flowd.actions.common import render, validate
from flowd.asset import Asset, split_name
from flowd.context import RunContext
from flowd.errors import PathEscapeError
from flowd.parse import Loc, Parser
from flowd.template import Template

# Not allowed in Windows file names (with the control characters 0-31); trailing dots and spaces are dropped.
_WINDOWS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_TRAILING = re.compile(r"[. ]+$")


class RenameSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to: str = "{name}"
    chars: dict[str, str] = Field(default_factory=dict)
    windows_safe: bool = False
    max_length: int | None = Field(None, ge=1, le=255)
    cut: Literal["right", "left"] | None = None


@dataclass(frozen=True, slots=True)
class Rename:
    """`rename: {to: "{stem}_{now:%H%M%S}{ext}"}`: later `{name}`, `{stem}`, `{ext}` and `{relpath}` see the new name.

    Color Factory's file naming, applied in this order to the rendered name: `chars` (a character map),
    `windows_safe` (characters Windows refuses become `_`), `max_length` (the stem is shortened, from its
    end or with `cut: left` from its start; the extension stays)."""

    to: Template
    chars: tuple[tuple[str, str], ...] = ()
    windows_safe: bool = False
    max_length: int | None = None
    cut_left: bool = False
    kind: ClassVar[str] = "rename"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        name = self.apply(render(self.to, asset, step))
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise PathEscapeError(f"rename produced {name!r}, which is not a plain file name")
        if len(name.encode("utf-8", "surrogateescape")) > 255:
            raise PathEscapeError(f"rename produced a name of more than 255 bytes ({name[:40]!r}...)")
        return Result(asset.renamed(name), {"name": name})

    def apply(self, name: str) -> str:
        """The naming options on a rendered name: chars, then windows_safe, then max_length."""
        if self.chars:
            name = map_chars(name, dict(self.chars))
        if self.windows_safe:
            name = windows_safe(name)
        if self.max_length is not None:
            name = shorten(name, self.max_length, self.cut_left)
            if self.windows_safe:
                name = windows_safe(name)  # a cut may end the name in a dot ("photo.jpg" at 6: "photo.")
        return name


def map_chars(name: str, chars: Mapping[str, str]) -> str:
    """Replace each key character by its value, in one pass (a value is never mapped again). A key also
    matches its decomposed form (å as a + combining ring, as macOS spells names)."""
    table: dict[str, str] = {}
    for key, value in chars.items():
        table[key] = value
        table.setdefault(unicodedata.normalize("NFD", key), value)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda m: table[m.group(0)], name)


def windows_safe(name: str) -> str:
    """`<>:"/\\|?*` and control characters become `_`, and so do trailing dots and spaces."""
    name = _WINDOWS.sub("_", name)
    return _TRAILING.sub(lambda m: "_" * len(m.group(0)), name)


def shorten(name: str, limit: int, left: bool = False) -> str:
    """At most `limit` characters, extension included: the stem is cut (its end, or its start when `left`),
    the extension kept; an extension of `limit` characters or more cuts the whole name. A cut never separates
    a letter from its combining accents (it takes fewer characters instead)."""
    if len(name) <= limit:
        return name
    stem, ext = split_name(name)
    if len(ext) >= limit:
        stem, ext = name, ""
    keep = limit - len(ext)
    return (_tail(stem, keep) if left else _head(stem, keep)) + ext


def _head(text: str, n: int) -> str:
    end = n
    while 0 < end < len(text) and unicodedata.combining(text[end]):
        end -= 1  # the next character is an accent of the last one kept: drop that letter too
    return text[:end] if end > 0 else text[:n]


def _tail(text: str, n: int) -> str:
    start = len(text) - n
    while start < len(text) and unicodedata.combining(text[start]):
        start += 1  # an accent whose letter is cut off goes with it
    return text[start:] if start < len(text) else text[len(text) - n:]


def build_rename(value: object, loc: Loc, p: Parser) -> Rename | None:
    spec = validate(RenameSpec, value, loc, p)
    if spec is None:
        return None
    chars: dict[str, str] = {}
    ok = True
    for key, replacement in spec.chars.items():
        single = unicodedata.normalize("NFC", key)
        if len(single) != 1:
            p.error([*loc, "chars", key], "a character map key is exactly one character", key)
            ok = False
        chars[single] = replacement
    if spec.cut is not None and spec.max_length is None:
        p.error([*loc, "cut"], "cut says which end max_length shortens; there is no max_length", spec.cut)
        ok = False
    template = p.template(spec.to, [*loc, "to"])
    if template is None or not ok:
        return None
    static = "".join(part for part in template.parts if isinstance(part, str))
    if "/" in static or static in (".", ".."):
        p.error([*loc, "to"], "rename sets a file name; to route into folders use store/move with a path", spec.to)
        return None
    return Rename(template, tuple(chars.items()), spec.windows_safe, spec.max_length, spec.cut == "left")
