"""The rule parser's shared state: where we are in which file, and every error found so far.

Conditions and actions are single-key mappings (`- size: {gt: 1KB}`, `- store: {to: ...}`); the key is
looked up in an explicit registry and the value validated by that entry, so a typo names the line and the
known keys instead of a generic union error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flowd.errors import ConfigError, TemplateError
from flowd.locate import yaml_line
from flowd.target import TargetError, clean_key
from flowd.template import Template, compile_template

if TYPE_CHECKING:
    from flowd.condition import Condition
    from flowd.config import HotFolder, StorageSpec
    from flowd.metadata.fields import FieldDef, FieldTable

Loc = Sequence[str | int]
_UNSET: Any = object()
_STORAGE_PREFIX = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):")


class Parser:
    def __init__(self, file: str, root: yaml.Node | None, tenant: str,
                 hotfolders: Mapping[str, HotFolder], storages: Mapping[str, StorageSpec],
                 fields: FieldTable | None = None) -> None:
        self.file = file
        self.root = root
        self.tenant = tenant
        self.hotfolders = hotfolders
        self.storages = storages
        if fields is None:
            from flowd.metadata.fields import DEFAULT_FIELDS

            fields = DEFAULT_FIELDS
        self.fields: FieldTable = fields
        self.base: Path | None = None  # the config file's folder: relative paths in rules start there
        self.maps: dict[str, dict[str, str]] = {}  # this file's `maps:` for `|map:NAME`
        self.errors: list[ConfigError] = []
        self.rule_hotfolders: list[str] = []  # the hot folders the rule being parsed runs on
        self.events: Mapping[str, object] = {}  # [events.NAME] streams, for `on: [{storage_events: NAME}]`
        self.ftp_groups: Mapping[str, str] = {}  # [[ftp.groups]] name -> tenant, for `on: [{ftp: GROUP}]`
        self.ftp_outputs: Mapping[str, str | None] = {}  # "ftp:GROUP" -> the output its uploads have
        self.sweep_outputs: dict[str, str | None] = {}  # "~TENANT/RULE" -> the output of the hot folder it sweeps

    def error(self, loc: Loc, message: str, got: Any = _UNSET, allowed: str | None = None) -> None:
        self.errors.append(ConfigError(self.file, yaml_line(self.root, loc), ".".join(map(str, loc)), message,
                                       None if got is _UNSET else got, allowed, has_got=got is not _UNSET))

    def hotfolders_of_tenant(self) -> set[str]:
        return {name for name, hf in self.hotfolders.items() if hf.tenant == self.tenant}

    # -- conditions ----------------------------------------------------------------------------------
    def condition(self, value: object, loc: Loc) -> Condition | None:
        from flowd.conditions import CONDITIONS
        from flowd.conditions.logic import All

        if isinstance(value, list):
            items = self.condition_list(value, loc)
            return All(tuple(items)) if items is not None else None
        if not isinstance(value, dict) or len(value) != 1:
            self.error(loc, "a condition is a mapping with one key, e.g. {extension: jpg}", value,
                       ", ".join(CONDITIONS))
            return None
        (kind, arg), = value.items()
        builder = CONDITIONS.get(kind)
        if builder is None:
            self.error([*loc, kind], f"unknown condition '{kind}'", kind, ", ".join(CONDITIONS))
            return None
        return builder(arg, [*loc, kind], self)

    def condition_list(self, value: object, loc: Loc) -> list[Condition] | None:
        if not isinstance(value, list) or not value:
            self.error(loc, "expected a non-empty list of conditions", value)
            return None
        items = [self.condition(item, [*loc, i]) for i, item in enumerate(value)]
        return None if any(i is None for i in items) else items  # type: ignore[return-value]

    # -- metadata fields ------------------------------------------------------------------------------
    def field(self, value: object, loc: Loc) -> FieldDef | None:
        """A metadata field by Fotoware number (116), name (copyright) or XMP name (dc:rights)."""
        from flowd.metadata.fields import UnknownField

        if not isinstance(value, str | int) or isinstance(value, bool):
            self.error(loc, "expected a field number, name or XMP name (e.g. 116, copyright, dc:rights)", value)
            return None
        try:
            return self.fields.resolve(value)
        except UnknownField as exc:
            self.error(loc, exc.args[0] if exc.args else "unknown field", value)
            return None

    # -- templates and targets -----------------------------------------------------------------------
    def template(self, value: object, loc: Loc) -> Template | None:
        if not isinstance(value, str) or not value:
            self.error(loc, "expected a template string", value)
            return None
        try:
            return compile_template(value, fields=self.fields.resolve, maps=self.maps)
        except TemplateError as exc:
            self.error(loc, f"bad template: {exc}", value)
            return None

    def _output_of(self, source: str) -> str | None:
        if source.startswith("~"):  # a sweep: {output} is the output of the hot folder it lists, if it lists one
            return self.sweep_outputs.get(source)
        if source.startswith("ftp:"):  # a group's uploads have the output of the folder they land in
            return self.ftp_outputs.get(source)
        return self.hotfolders[source].output

    def target(self, value: object, loc: Loc) -> Template | None:
        """A `to:` template naming a storage (literally or via {output}) and a path that stays inside it."""
        template = self.template(value, loc)
        if template is None:
            return None
        source = template.source
        if source.startswith("{output}"):
            missing = [h for h in self.rule_hotfolders if h.startswith("@") or not self._output_of(h)]
            if missing:
                what = (f"events stream '{missing[0][1:].partition('#')[0]}'" if missing[0].startswith("@")
                        else "this sweep (only over: {hotfolder: NAME} gives one)" if missing[0].startswith("~")
                        else f"FTP group '{missing[0][4:]}'" if missing[0].startswith("ftp:")
                        else f"hot folder '{missing[0]}'")
                self.error(loc, f"uses {{output}} but {what} has no output", source)
                return None
            rest = source[len("{output}"):]
            if rest and not rest.startswith("/"):
                self.error(loc, "write {output}/... : the output is a container, so a '/' must follow it", source)
                return None
        else:
            match = _STORAGE_PREFIX.match(template.literal_prefix())
            if not match:
                self.error(loc, "a target starts with a storage name and ':' (e.g. lake:assets/{name}) or with {output}",
                           source, ", ".join(sorted(self.storages)) or "(no storages configured)")
                return None
            storage = match.group(1)
            spec = self.storages.get(storage)
            if spec is None:
                self.error(loc, f"no storage named '{storage}'", source, ", ".join(sorted(self.storages)) or "(none)")
                return None
            if spec.tenants is not None and self.tenant not in spec.tenants:
                self.error(loc, f"storage '{storage}' is not open to tenant '{self.tenant}'", source,
                           ", ".join(spec.tenants))
                return None
            rest = source[match.end():]
            if rest.startswith("{output}"):
                self.error(loc, "{output} already names a storage; use it at the start of the target", source)
                return None
            if rest.startswith("/"):
                self.error(loc, "the path after the storage name must be relative (no leading '/')", source)
                return None
        # Static segments are checked now; rendered values are checked again at run time.
        if source.startswith("{output}"):
            rest = rest[1:]
        skeleton = re.sub(r"\{[^{}]*\}", "x", rest)
        try:
            clean_key(skeleton, allow_empty=True)
        except TargetError as exc:
            # Name the path as written ('{name}'), not the skeleton it was checked as ('x').
            self.error(loc, str(exc).replace(repr(skeleton), repr(rest)), source)
            return None
        return template
