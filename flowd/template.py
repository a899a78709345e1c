"""Path and text templates: `{name}`, `{now:%Y/%m/%d}`, `{{` for a literal brace.

Templates are compiled when rules load, so an unknown placeholder or a bad format is a `flowd check`
error with a line number, never a surprise during an overnight run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from flowd.errors import TemplateError

# Every placeholder and whether it takes a format after the colon. Later capabilities add theirs here.
PLACEHOLDERS: dict[str, bool] = {
    "name": False, "stem": False, "ext": False, "relpath": False, "reldir": False,
    "hotfolder": False, "tenant": False, "output": False, "size": False,
    "sha256": False, "uuid": False, "extension": False, "now": True, "mtime": True,
}
_DATE_DEFAULT = "%Y-%m-%dT%H%M%S"
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

Resolve = Callable[[str, str | None], str]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    fmt: str | None


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[str | Field, ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Field))

    @property
    def is_static(self) -> bool:
        return not self.fields

    def literal_prefix(self) -> str:
        """The text before the first placeholder (used to check a target's storage at load time)."""
        out = []
        for part in self.parts:
            if isinstance(part, Field):
                break
            out.append(part)
        return "".join(out)

    def render(self, resolve: Resolve) -> str:
        return "".join(p if isinstance(p, str) else resolve(p.name, p.fmt) for p in self.parts)


def compile_template(source: str, allowed: Mapping[str, bool] = PLACEHOLDERS) -> Template:
    """Parse once; raise TemplateError naming the bad placeholder and what exists."""
    parts: list[str | Field] = []
    pos = 0
    for match in _TOKEN.finditer(source):
        if match.start() > pos:
            parts.append(source[pos:match.start()])
        token = match.group(0)
        pos = match.end()
        if token in ("{{", "}}"):
            parts.append(token[0])
            continue
        if match.group(1) is None:
            raise TemplateError(f"unbalanced '{token}' at position {match.start()}; write '{token}{token}' for a literal brace")
        inner = match.group(1)
        name, _, fmt = inner.partition(":")
        name = name.strip()
        if not _NAME.match(name) or name not in allowed:
            known = ", ".join(sorted(allowed))
            raise TemplateError(f"unknown placeholder {{{inner}}}; known placeholders: {known}")
        takes_format = allowed[name]
        if ":" in inner and not takes_format:
            raise TemplateError(f"placeholder {{{name}}} takes no format (got '{{{inner}}}')")
        if takes_format and fmt:
            _check_date_format(name, fmt)
        parts.append(Field(name, fmt if ":" in inner else None))
    if pos < len(source):
        parts.append(source[pos:])
    merged: list[str | Field] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + part
        else:
            merged.append(part)
    return Template(source, tuple(merged))


def format_date(value: datetime, fmt: str | None) -> str:
    return value.strftime(fmt or _DATE_DEFAULT)


def _check_date_format(name: str, fmt: str) -> None:
    if "%" not in fmt:
        raise TemplateError(f"{{{name}:{fmt}}} needs a strftime format such as %Y/%m/%d")
    for directive in re.findall(r"%(.)", fmt.replace("%%", "")):
        if directive not in "aAwdbBmyYHIpMSfzZjUWcxXGuVe-":
            raise TemplateError(f"{{{name}:{fmt}}}: unknown date directive %{directive}")
