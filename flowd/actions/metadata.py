"""set_metadata, merge_metadata, strip_metadata, map_category: edit the asset's fields.

Edits never touch the source: the new bytes go to a private file in the job's work folder, which is
read back and checked before later steps (and the final store) use it. A retry redoes the edit from the
untouched source, so an edit can never be applied twice.
"""

from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowd.action import Result, Step
from flowd.actions.common import render, validate
from flowd.asset import Asset
from flowd.condition import Condition
from flowd.context import RunContext
from flowd.errors import PermanentError, TransientError
from flowd.metadata.codes import CodeFacts, expand_codes, unknown_codes
from flowd.metadata.macro import apply as apply_macro
from flowd.parse import Loc, Parser
from flowd.template import Template
from flowd.units import parse_duration

if TYPE_CHECKING:
    from flowd.metadata.fields import FieldDef
    from flowd.metadata.model import Metadata

MacroAction = Literal["clear", "append", "replace", "add_substring", "replace_substring"]
_UID_NS = uuid.UUID("0b8f3c52-8e4e-4f0f-a2cd-3a4f61c5d0e7")
_LOGIN = getpass.getuser()


class EntrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    field: str | int
    action: MacroAction = "replace"
    value: str | int | float = ""
    find: str | None = None
    if_: Any = Field(None, alias="if")


class SetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    entries: list[Any]
    to: Literal["file", "sidecar"] = "file"


@dataclass(frozen=True, slots=True)
class Entry:
    field: FieldDef
    action: MacroAction
    value: Template | None
    find: str | None
    condition: Condition | None


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """`set_metadata: [{field: 116, action: replace, value: "(c) %%INSDATE", if: {...}}, ...]`: the Color
    Factory macro, entry by entry; each entry's `if` sees the edits of the entries before it."""

    entries: tuple[Entry, ...]
    to: str
    kind: ClassVar[str] = "set_metadata"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        meta = _editable(asset, ctx)
        changes: list[dict[str, Any]] = []
        for i, entry in enumerate(self.entries):
            view = asset.with_metadata(meta)
            if entry.condition is not None:
                seen: list[dict[str, Any]] = []
                if not entry.condition.check(view, ctx, seen):
                    changes.append({"field": entry.field.name, "skipped": "condition false"})
                    continue
            value = _value(entry, view, ctx, step, i)
            before = meta.get(entry.field)
            after = apply_macro(before, entry.action, value, entry.find, entry.field.multi)
            if after != before:
                meta.set(entry.field, after)
            changes.append({"field": entry.field.name, "action": entry.action,
                            "value": after if entry.field.multi else ", ".join(after)})
        return _written(asset, ctx, step, meta, self.to, {"fields": changes})


@dataclass(frozen=True, slots=True)
class MergeMetadata:
    """`merge_metadata: {from: sidecar, wait: 10s, overwrite: false}` or `{from: "templates/agency.xmp"}`:
    copy fields from a sidecar with the source's base name (.xmp, or .txt lines `field=value`) or from a
    fixed template file; fill empty fields only unless `overwrite`. A merged sidecar follows its picture
    (deleted, moved or quarantined with it) unless `consume: false`."""

    source: str  # "sidecar" or a template file path
    suffixes: tuple[str, ...]
    wait: float
    overwrite: bool
    required: bool
    to: str
    consume: bool
    kind: ClassVar[str] = "merge_metadata"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        from flowd.metadata.sidecar import find_sidecar

        if self.source == "sidecar":
            found = find_sidecar(asset.source, self.suffixes)
            if found is not None and self.consume and not ctx.simulate:
                st = found.stat()
                rel = found.relative_to(asset.root).as_posix()
                if (rel, st.st_size, st.st_mtime_ns) not in ctx.companions:
                    ctx.companions.append((rel, st.st_size, st.st_mtime_ns))
            if found is None:
                waited = time.time() - asset.detected_at.timestamp()
                if waited < self.wait and not ctx.simulate:
                    raise TransientError(f"waiting up to {self.wait:.0f}s for a sidecar "
                                         f"({', '.join(asset.stem + s for s in self.suffixes)})")
                if self.required:
                    raise PermanentError(f"no sidecar {asset.stem}{self.suffixes[0]} arrived within {self.wait:.0f}s")
                return Result(asset, {"merged": None, "outcome": "no sidecar"})
        else:
            found = Path(self.source)
        meta = _editable(asset, ctx)
        changed = meta.merge(_read_other(found, ctx), self.overwrite)
        return _written(asset, ctx, step, meta, self.to, {"from": str(found), "fields": changed})


@dataclass(frozen=True, slots=True)
class StripMetadata:
    """`strip_metadata: {}` removes EXIF, IPTC and XMP; `{keep: [116, credit]}` keeps those fields
    (Color Factory's "save metadata with output file" off)."""

    keep: tuple[FieldDef, ...]
    kind: ClassVar[str] = "strip_metadata"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        meta = _editable(asset, ctx)
        meta.strip(self.keep)
        return _written(asset, ctx, step, meta, "file", {"kept": [f.name for f in self.keep]}, force=True)


@dataclass(frozen=True, slots=True)
class MapCategory:
    """`map_category: {map: {SPO: S, POL: P}}` or `{map: NAME}` (a file's `maps:`), on `field` (default the
    category, 15): a value with no entry (and no "*") is left as it is."""

    field: FieldDef
    table: dict[str, str]
    kind: ClassVar[str] = "map_category"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        meta = _editable(asset, ctx)
        before = meta.get(self.field)
        after = []
        for value in before:
            mapped = self.table.get(value, self.table.get("*"))
            after.append(value if mapped is None else mapped.replace("{value}", value))
        if after == before:
            return Result(asset, {"field": self.field.name, "value": before, "outcome": "unchanged"})
        meta.set(self.field, after)
        return _written(asset, ctx, step, meta, "file", {"field": self.field.name, "from": before, "to": after})


# -- shared ----------------------------------------------------------------------------------------------
def _editable(asset: Asset, ctx: RunContext) -> Metadata:
    """A fresh copy of the asset's metadata to edit (the cached one may be shared with other rules)."""
    from flowd.metadata.fields import DEFAULT_FIELDS
    from flowd.metadata.model import Metadata

    return Metadata.read(asset.path, ctx.fields or DEFAULT_FIELDS)


def _read_other(path: Path, ctx: RunContext) -> Metadata:
    from flowd.metadata.fields import DEFAULT_FIELDS
    from flowd.metadata.model import Metadata
    from flowd.metadata.sidecar import read_text_template

    table = ctx.fields or DEFAULT_FIELDS
    if path.suffix.lower() == ".txt":
        other = Metadata.empty(table)
        for field, values in read_text_template(path, table).items():
            other.set(field, values)
        return other
    return Metadata.read(path, table)


def _value(entry: Entry, asset: Asset, ctx: RunContext, step: Step, index: int) -> str:
    text = render(entry.value, asset, step) if entry.value is not None else ""
    if "%%INS" not in text:
        return text
    needs_image = any(code in text for code in ("%%INSPPL", "%%INSNOL", "%%INSCOL", "%%INSRES"))
    facts = asset.image() if needs_image else None
    source = asset.source
    return expand_codes(text, CodeFacts(
        now=ctx.now, filename=asset.name, folder=source.parent.name, path=str(source),
        width=facts.width if facts else None, height=facts.height if facts else None,
        color=facts.color.upper() if facts and facts.color != "gray" else ("Gray" if facts else None),
        xres_dpi=facts.xres_dpi if facts else None,
        uid=str(uuid.uuid5(_UID_NS, f"{asset.job_id}:{step.id}:{index}")).upper(), login=_LOGIN))


def _written(asset: Asset, ctx: RunContext, step: Step, meta: Metadata, to: str, record: dict[str, Any],
             force: bool = False) -> Result:
    if not meta.changed and not force:
        return Result(asset, {**record, "outcome": "unchanged"})
    if to == "sidecar":
        sidecar = ctx.work_file(step.token, ".xmp")
        if asset.sidecar is not None:  # an earlier step's sidecar: build on it
            sidecar.write_bytes(asset.sidecar.read_bytes())
        meta.save_sidecar(sidecar)
        return Result(asset.derived(sidecar=sidecar), {**record, "written": "sidecar"})
    dst = ctx.work_file(step.token, asset.ext or ".bin")
    meta.save(asset.path, dst)
    return Result(asset.derived(dst, metadata=meta), {**record, "written": "file", "bytes": dst.stat().st_size})


# -- builders ---------------------------------------------------------------------------------------------
def build_set_metadata(value: object, loc: Loc, p: Parser) -> SetMetadata | None:
    to = "file"
    items = value
    where = loc
    if isinstance(value, dict):
        spec = validate(SetSpec, value, loc, p)
        if spec is None:
            return None
        items, to, where = spec.entries, spec.to, [*loc, "entries"]
    if not isinstance(items, list) or not items:
        p.error(where, "expected a list of entries, e.g. [{field: 116, action: replace, value: ...}]", items)
        return None
    entries = []
    for i, item in enumerate(items):
        entry = _entry(item, [*where, i], p)
        if entry is not None:
            entries.append(entry)
    if len(entries) != len(items):
        return None
    return SetMetadata(tuple(entries), to)


def _entry(item: object, loc: Loc, p: Parser) -> Entry | None:
    spec = validate(EntrySpec, item, loc, p)
    if spec is None:
        return None
    field = p.field(spec.field, [*loc, "field"])
    condition = p.condition(spec.if_, [*loc, "if"]) if spec.if_ is not None else None
    template = None
    if spec.action == "replace_substring" and not spec.find:
        p.error([*loc, "find"], "replace_substring needs `find:` (the text to replace)")
        return None
    if spec.action != "clear":
        text = str(spec.value)
        bad = unknown_codes(text)
        if bad:
            p.error([*loc, "value"], f"unknown dynamic code {bad[0]}", text,
                    "%%INSDATE[+-n], %%INSLDATE, %%INSTIME, %%INSLTIME, %%INSXMPDATE, %%INSDAYDATE+-n, "
                    "%%INSHOURDATE+-n, %%INSSECDATE+-n, %%INSFILENAME, %%INSFOLDER, %%INSPATH, %%INSPPL, "
                    "%%INSNOL, %%INSCOL, %%INSRESINCH, %%INSRESCM, %%INSUID, %%INSSYSLOGIN")
            return None
        if text:
            template = p.template(text, [*loc, "value"])
            if template is None:
                return None
            if field is not None and template.is_static and "%%INS" not in text:
                from flowd.metadata.fields import normalise

                try:  # a fixed value the field can never hold is a rule error, not a quarantine tonight
                    normalise(field, [text])
                except ValueError as exc:
                    p.error([*loc, "value"], str(exc).split(", got ")[0], text)
                    return None
        elif spec.action != "replace":
            p.error([*loc, "value"], f"{spec.action} needs a value")
            return None
    if field is None or (spec.if_ is not None and condition is None):
        return None
    return Entry(field, spec.action, template, spec.find, condition)


class MergeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str = Field("sidecar", alias="from")
    suffixes: list[str] = Field(default_factory=lambda: [".xmp", ".txt"])
    wait: str | float = 0
    overwrite: bool = False
    required: bool = False
    to: Literal["file", "sidecar"] = "file"
    consume: bool = True


def build_merge_metadata(value: object, loc: Loc, p: Parser) -> MergeMetadata | None:
    spec = validate(MergeSpec, value, loc, p)
    if spec is None:
        return None
    try:
        wait = parse_duration(spec.wait)
    except ValueError as exc:
        p.error([*loc, "wait"], str(exc), spec.wait)
        return None
    source = spec.from_
    if source != "sidecar":
        path = Path(source)
        if not path.is_absolute():
            path = (p.base or Path.cwd()) / path  # relative to the config file's folder, like every path
        if not path.is_file():
            p.error([*loc, "from"], "no such template file (give `sidecar` or a path to an .xmp or .txt file)",
                    source)
            return None
        source = str(path)
    bad = [s for s in spec.suffixes if not s.startswith(".") or "/" in s]
    if bad:
        p.error([*loc, "suffixes"], "a sidecar suffix starts with '.' (e.g. .xmp)", bad[0])
        return None
    return MergeMetadata(source, tuple(spec.suffixes), wait, spec.overwrite, spec.required, spec.to, spec.consume)


class StripSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    keep: list[str | int] = Field(default_factory=list)


def build_strip_metadata(value: object, loc: Loc, p: Parser) -> StripMetadata | None:
    spec = validate(StripSpec, value, loc, p)
    if spec is None:
        return None
    keep = [p.field(k, [*loc, "keep", i]) for i, k in enumerate(spec.keep)]
    if any(k is None for k in keep):
        return None
    return StripMetadata(tuple(k for k in keep if k is not None))


class MapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    map: str | dict[str, str | int | float]
    field: str | int = 15


def build_map_category(value: object, loc: Loc, p: Parser) -> MapCategory | None:
    table_in = value.get("map") if isinstance(value, dict) else None
    if isinstance(table_in, dict):
        for code, replacement in table_in.items():
            if replacement is None or isinstance(replacement, dict | list):
                p.error([*loc, "map", str(code)], "expected code: replacement (text)", replacement)
                return None
    spec = validate(MapSpec, value, loc, p)
    if spec is None:
        return None
    field = p.field(spec.field, [*loc, "field"])
    if isinstance(spec.map, str):
        table = p.maps.get(spec.map)
        if table is None:
            p.error([*loc, "map"], "no map of this name in this file's maps:", spec.map,
                    ", ".join(sorted(p.maps)) or "(none defined)")
            return None
    else:
        table = {str(k): str(v) for k, v in spec.map.items()}
    return MapCategory(field, table) if field is not None else None
