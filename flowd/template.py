"""Path and text templates: `{name}`, `{now:%Y/%m/%d}`, `{{` for a literal brace.

Templates are compiled when rules load, so an unknown placeholder or a bad format is a `flowd check`
error with a line number, never a surprise during an overnight run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flowd.errors import TemplateError

# What follows a placeholder's colon: nothing, a strftime format, a date source with an optional format
# (`{date:metadata:%Y}`), a date source alone (`{weekday:file}`), or a file-name separator or length.
FormatKind = Literal["none", "date", "source_date", "source", "separator"]

# Every placeholder and what it takes after the colon. Later capabilities add theirs here.
PLACEHOLDERS: dict[str, FormatKind] = {
    "name": "none", "stem": "none", "ext": "none", "relpath": "none", "reldir": "none",
    "hotfolder": "none", "tenant": "none", "output": "none", "size": "none",
    # a stored asset's container and storage event (created | deleted); empty for hot folder files
    "container": "none", "event": "none",
    "sha256": "none", "uuid": "none", "extension": "none", "now": "date", "mtime": "date",
    # image facts of the asset's current bytes (after any convert)
    "width": "none", "height": "none", "color": "none",
    # routing helpers, one per Color Factory AutoRouting method
    # (`source_prefix`: the prefix of the name the file arrived with, whatever `rename` did since)
    "prefix": "separator", "unprefixed": "separator", "source_prefix": "separator", "date": "source_date", "weekday": "source", "day": "source",
    # `{meta.116}`, `{meta.caption}`, `{meta.photoshop:Credit}`, `{meta.55:%Y/%m}`: resolved when the rule loads
    "meta": "date",
    # `{ftp.user}`, `{ftp.group}`, `{ftp.client}`, `{ftp.time:%Y-%m-%d}`: who delivered the asset over FTP
    # (empty for assets that did not arrive over FTP)
    "ftp": "date",
    # `{jrf.output}` (the requested output's file name), `{jrf.input}`, `{jrf.M_KEY}`: the job request that
    # named the asset (empty for assets that did not come from a JRF)
    "jrf": "none",
}
FTP_FACTS = ("user", "group", "client", "time")
_SHOWN = {"meta": "meta.FIELD", "ftp": "ftp.user, ftp.group, ftp.client, ftp.time",
          "jrf": "jrf.output, jrf.input, jrf.M_KEY"}
DATE_SOURCES = ("system", "file", "metadata")
FILTERS = ("map", "lower", "upper")
_DATE_DEFAULT = "%Y-%m-%dT%H%M%S"
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

Resolve = Callable[["Field"], str]
# Resolves `meta.<key>` to the field it names (a FieldDef), or raises KeyError with a helpful message.
FieldResolver = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Filter:
    name: str                      # map | lower | upper
    table: Mapping[str, str] | None = None  # map: value -> replacement ("*" = default; "{value}" = the value)
    arg: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    fmt: str | None
    key: Any = None                # meta: the FieldDef; date/weekday/day: the date source
    filters: tuple[Filter, ...] = ()


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
        return "".join(p if isinstance(p, str) else apply_filters(p, resolve(p)) for p in self.parts)


def apply_filters(field: Field, value: str) -> str:
    for f in field.filters:
        if f.name == "lower":
            value = value.lower()
        elif f.name == "upper":
            value = value.upper()
        elif f.name == "map" and f.table is not None:
            value = map_value(f.arg or "", f.table, value)
    return value


def map_value(name: str, table: Mapping[str, str], value: str) -> str:
    """`desks: {SPO: Sport, "*": "{value}"}`: exact match first, then the default; none -> an error the
    asset is quarantined with (a routing table that does not know a value must not invent a folder)."""
    out = table.get(value)
    if out is None:
        out = table.get("*")
    if out is None:
        raise ValueError(f"map '{name}' has no entry for {value!r} and no default (\"*\")")
    return out.replace("{value}", value)


def compile_template(source: str, allowed: Mapping[str, FormatKind] = PLACEHOLDERS, *,
                     fields: FieldResolver | None = None, maps: Mapping[str, Mapping[str, str]] | None = None,
                     ) -> Template:
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
        parts.append(_field(match.group(1), allowed, fields, maps or {}))
    if pos < len(source):
        parts.append(source[pos:])
    merged: list[str | Field] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + part
        else:
            merged.append(part)
    return Template(source, tuple(merged))


def _field(inner: str, allowed: Mapping[str, FormatKind], fields: FieldResolver | None,
           maps: Mapping[str, Mapping[str, str]]) -> Field:
    head, *filter_specs = inner.split("|")
    filters = tuple(_filter(spec.strip(), inner, maps) for spec in filter_specs)
    name, _, fmt = head.partition(":")
    name = name.strip()
    if name.startswith("meta.") and "meta" in allowed:
        found, field_fmt = _meta(head[5:], inner, fields)
        return Field("meta", field_fmt, found, filters)
    if name.startswith("ftp.") and "ftp" in allowed:
        fact = name[4:]
        if fact not in FTP_FACTS:
            raise TemplateError(f"unknown placeholder {{{inner}}}; the FTP facts are "
                                + ", ".join(f"ftp.{f}" for f in FTP_FACTS))
        if ":" in head and fact != "time":
            raise TemplateError(f"placeholder {{ftp.{fact}}} takes no format (got '{{{inner}}}')")
        if fmt:
            _check_date_format(name, fmt)
        return Field("ftp", fmt or None, fact, filters)
    if name.startswith("jrf.") and "jrf" in allowed:
        fact = name[4:]
        if fact not in ("output", "input") and not re.fullmatch(r"M_[A-Z0-9_]+", fact):
            raise TemplateError(f"unknown placeholder {{{inner}}}; the job request facts are jrf.output, "
                                "jrf.input and jrf.M_KEY (any key of the request, upper case)")
        if ":" in head:
            raise TemplateError(f"placeholder {{{name}}} takes no format (got '{{{inner}}}')")
        return Field("jrf", None, fact, filters)
    if not _NAME.match(name) or name not in allowed or name in ("ftp", "jrf"):
        known = ", ".join(sorted(_SHOWN.get(n, n) for n in allowed))
        raise TemplateError(f"unknown placeholder {{{inner}}}; known placeholders: {known}")
    kind = allowed[name]
    has_fmt = ":" in head
    if kind == "none" and has_fmt:
        raise TemplateError(f"placeholder {{{name}}} takes no format (got '{{{inner}}}')")
    key: Any = None
    if kind == "date" and fmt:
        _check_date_format(name, fmt)
    elif kind == "separator":
        if not fmt:
            raise TemplateError(f"{{{name}:SEP}} needs a separator or a length, e.g. {{{name}:_}} or {{{name}:3}}")
        key = int(fmt) if fmt.isdigit() else fmt
        if key == 0:
            raise TemplateError(f"{{{name}:{fmt}}}: a prefix length must be at least 1")
    elif kind in ("source", "source_date"):
        source, _, date_fmt = fmt.partition(":")
        source = source or "system"
        if source not in DATE_SOURCES:
            raise TemplateError(f"{{{inner}}}: unknown date source '{source}'; use one of {', '.join(DATE_SOURCES)}")
        if kind == "source" and date_fmt:
            raise TemplateError(f"{{{name}:{source}}} takes a date source only (got '{{{inner}}}')")
        if date_fmt:
            _check_date_format(name, date_fmt)
        return Field(name, date_fmt or None, source, filters)
    return Field(name, fmt if has_fmt else None, key, filters)


def _meta(rest: str, inner: str, fields: FieldResolver | None) -> tuple[Any, str | None]:
    """`116`, `caption`, `photoshop:Credit` or `55:%Y/%m`: the field key may itself hold one colon."""
    if fields is None:
        raise TemplateError(f"{{{inner}}}: metadata placeholders are not available here")
    pieces = rest.split(":")
    last: KeyError | None = None
    for n in (2, 1):
        if n > len(pieces):
            continue
        key, fmt = ":".join(pieces[:n]).strip(), ":".join(pieces[n:]) or None
        if n == 2 and fmt is None and "%" in key:
            continue
        try:
            found = fields(key)
        except KeyError as exc:
            last = exc
            continue
        if fmt:
            _check_date_format(f"meta.{key}", fmt)
        return found, fmt
    message = last.args[0] if last and last.args else f"unknown field in {{{inner}}}"
    raise TemplateError(f"{{{inner}}}: {message}")


def _filter(spec: str, inner: str, maps: Mapping[str, Mapping[str, str]]) -> Filter:
    name, _, arg = spec.partition(":")
    if name == "map":
        if arg not in maps:
            raise TemplateError(f"{{{inner}}}: no map named '{arg}' in this rule file's maps: "
                                f"{', '.join(sorted(maps)) or '(none defined)'}")
        return Filter("map", maps[arg], arg)
    if name in ("lower", "upper") and not arg:
        return Filter(name)
    raise TemplateError(f"{{{inner}}}: unknown filter '|{spec}'; filters: map:NAME, lower, upper")


def format_date(value: datetime, fmt: str | None) -> str:
    return value.strftime(fmt or _DATE_DEFAULT)


def _check_date_format(name: str, fmt: str) -> None:
    if "%" not in fmt:
        raise TemplateError(f"{{{name}:{fmt}}} needs a strftime format such as %Y/%m/%d")
    for directive in re.findall(r"%(.)", fmt.replace("%%", "")):
        if directive not in "aAwdbBmyYHIpMSfzZjUWcxXGuVe-":
            raise TemplateError(f"{{{name}:{fmt}}}: unknown date directive %{directive}")
