"""Rule files: YAML -> checked, compiled, immutable rules. The same function serves `flowd check` and
the daemon, so what check accepts is exactly what runs."""

from __future__ import annotations

import glob
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from flowd.action import Action
from flowd.actions import ACTIONS
from flowd.condition import Condition
from flowd.config import Config
from flowd.errors import ConfigError, ConfigErrors
from flowd.hotfolder import ftp_source, sweep_source
from flowd.locate import yaml_line
from flowd.over import Over, parse_over
from flowd.parse import Loc, Parser
from flowd.schedule import Schedule, parse_schedule

if TYPE_CHECKING:
    from flowd.metadata.fields import FieldTable

RULE_KEYS = ("name", "on", "over", "if", "do", "stop", "once", "enabled", "description")
TRIGGER_KEYS = ("hotfolder", "storage_events", "ftp", "schedule")
EVENT_KINDS = ("created", "deleted")


def events_source(name: str, kind: str = "created") -> str:
    """The job source of an events stream: "@NAME" (blobs created), "@NAME#deleted". Hot folder names
    cannot start with '@', so the two never collide."""
    return f"@{name}" if kind == "created" else f"@{name}#{kind}"


def parse_source(source: str) -> tuple[str, str] | None:
    """("lake-events", "created") for "@lake-events"; None for a hot folder."""
    if not source.startswith("@"):
        return None
    name, _, kind = source[1:].partition("#")
    return name, kind or "created"


class RuleLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 booleans: `on:` is a key, not True, and `no`/`yes` stay strings (a Norway country code).
    libyaml's parser when PyYAML has it: a 300-rule import from Color Factory checks 8x faster."""


RuleLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RuleLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    tenant: str
    file: str
    line: int
    # Every source it runs on: hot folder names (from `on`, or all of the tenant's) and events streams
    # ("@NAME", "@NAME#deleted").
    hotfolders: frozenset[str]
    condition: Condition | None
    actions: tuple[Action, ...]
    kinds: tuple[str, ...]
    stop: bool
    once: str | None
    enabled: bool
    # A sweep rule: what it lists (`over:`), and when (`on: [{schedule: ...}]`; none: only `flowd sweep`).
    over: Over | None = None
    schedules: tuple[Schedule, ...] = ()

    @property
    def source(self) -> str:
        """A sweep rule's job source."""
        return sweep_source(self.tenant, self.name)

    def schedule_id(self, index: int | str) -> str:
        """"rule:TENANT/NAME#0" for its first schedule, "...#manual" for `flowd sweep`."""
        return f"rule:{self.tenant}/{self.name}#{index}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    digest: str
    files: tuple[str, ...]
    errors: tuple[ConfigError, ...] = ()
    fields: FieldTable | None = None  # the field table the rules were compiled against
    _by_folder: dict[str, tuple[Rule, ...]] = field(default_factory=dict, compare=False)

    def for_hotfolder(self, name: str, group: str | None = None) -> tuple[Rule, ...]:
        """The enabled rules of a source, in file order. `group`: the asset was uploaded by a user of this
        FTP group, so rules `on: [{ftp: GROUP}]` run too (each rule once)."""
        key = name if group is None else f"{name}\0{group}"
        cached = self._by_folder.get(key)
        if cached is None:
            also = ftp_source(group) if group is not None else name
            cached = tuple(r for r in self.rules if r.enabled and (name in r.hotfolders or also in r.hotfolders))
            self._by_folder[key] = cached
        return cached

    def sweep(self, tenant: str, name: str) -> Rule | None:
        """A sweep rule by name (enabled or not: `flowd sweep` may run a disabled one by hand)."""
        return next((r for r in self.rules if r.over is not None and r.tenant == tenant and r.name == name), None)

    def sweeps(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.over is not None)


def rule_files(config: Config) -> list[Path]:
    files: list[Path] = []
    for pattern in config.settings.flowd.rules:
        full = config.path(pattern)
        matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
        if not matches and not glob.has_magic(str(full)):
            matches = [full]  # a plain missing file name is reported by load_rules
        files.extend(matches)
    return files


def field_table(config: Config, errors: list[ConfigError]) -> FieldTable:
    """The default Fotoware/IPTC/XMP fields, plus the site's MetadataConfiguration.xml when configured."""
    from flowd.metadata.fields import DEFAULT_FIELDS, FieldTable

    xml = config.settings.metadata.configuration
    if not xml:
        return DEFAULT_FIELDS
    path = config.path(xml)
    try:
        return FieldTable.load(path)
    except ConfigError as exc:
        found = [exc]
    except ConfigErrors as exc:
        found = exc.errors
    for e in found:  # named as the rule files are: relative to the config file
        errors.append(ConfigError(_shown(path, config.base) if e.file == str(path) else e.file, e.line, e.path,
                                  e.message, e.got, e.allowed, has_got=e.has_got))
    return DEFAULT_FIELDS


def load_rules(config: Config) -> RuleSet:
    """Parse every rule file. Errors are collected in `RuleSet.errors`, never raised."""
    hotfolders = {hf.name: hf for hf in config.settings.hotfolders}
    groups = config.settings.ftp.groups if config.settings.ftp else []
    ftp_groups = {g.name: g.tenant for g in groups}
    ftp_outputs = {ftp_source(g.name): (hotfolders[g.hotfolder].output if g.hotfolder in hotfolders else None)
                   if g.hotfolder else g.output for g in groups}
    storages = config.settings.storage
    rules: list[Rule] = []
    positions: list[int] = []
    errors: list[ConfigError] = []
    fields = field_table(config, errors)
    digest = hashlib.sha256()
    if config.settings.metadata.configuration:
        try:  # a changed field table changes what the rules mean
            digest.update(config.path(config.settings.metadata.configuration).read_bytes())
        except OSError:
            pass
    shown_files = []
    for path in rule_files(config):
        shown = _shown(path, config.base)
        shown_files.append(shown)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            errors.append(ConfigError(shown, None, "", f"cannot read rule file: {exc.strerror}"))
            continue
        digest.update(shown.encode() + b"\0" + raw + b"\0")
        parsed = parse_rule_file(raw, shown, hotfolders, storages, errors, fields, config.base,
                                 config.settings.events, ftp_groups, ftp_outputs)
        # A file with any error yields no rules, so a rule's position is its index under `rules:`.
        positions.extend(range(len(parsed)))
        rules.extend(parsed)
    seen: dict[tuple[str, str], Rule] = {}
    for rule, position in zip(rules, positions, strict=True):
        key = (rule.tenant, rule.name)
        if key in seen:
            first = seen[key]
            errors.append(ConfigError(rule.file, rule.line, f"rules.{position}.name",
                                      f"rule name '{rule.name}' is already used by {first.file}:{first.line} "
                                      f"(tenant '{rule.tenant}'); names must be unique", rule.name))
        seen.setdefault(key, rule)
    return RuleSet(tuple(rules), digest.hexdigest(), tuple(shown_files), tuple(errors), fields)


def parse_rule_file(raw: bytes, shown: str, hotfolders: Mapping[str, object], storages: Mapping[str, object],
                    errors: list[ConfigError], fields: FieldTable | None = None,
                    base: Path | None = None, events: Mapping[str, object] | None = None,
                    ftp_groups: Mapping[str, str] | None = None,
                    ftp_outputs: Mapping[str, str | None] | None = None) -> list[Rule]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(ConfigError(shown, None, "", "rule file is not UTF-8 text"))
        return []
    try:
        loader = RuleLoader(text)  # parsed once: the node tree (for lines) and the data built from it
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(ConfigError(shown, mark.line + 1 if mark else None, "", f"not valid YAML: {problem}"))
        return []
    dup = _duplicate_key(root)
    if dup:
        errors.append(ConfigError(shown, dup[1], "", f"key '{dup[0]}' appears twice in one mapping", dup[0]))
        return []
    if data is None:
        return []
    p = Parser(shown, root, "default", hotfolders, storages, fields)  # type: ignore[arg-type]
    p.base = base
    p.events = events or {}
    p.ftp_groups = ftp_groups or {}
    p.ftp_outputs = ftp_outputs or {}
    if not isinstance(data, dict):
        p.error([], "a rule file is a mapping with a 'rules:' list", data)
        errors.extend(p.errors)
        return []
    for key in data:
        if key not in ("rules", "tenant", "maps"):
            p.error([key], f"unknown top-level key '{key}'", key, "rules, tenant, maps")
    if "maps" in data:
        p.maps.update(_parse_maps(data["maps"], p))
    tenant = data.get("tenant", "default")
    if not isinstance(tenant, str) or not tenant:
        p.error(["tenant"], "expected a tenant name", tenant)
        tenant = "default"
    p.tenant = tenant
    items = data.get("rules")
    if not isinstance(items, list):
        p.error(["rules"], "expected a list of rules", items)
        errors.extend(p.errors)
        return []
    out = []
    for i, item in enumerate(items):
        rule = _parse_rule(item, ["rules", i], p)
        if rule is not None:
            out.append(rule)
    errors.extend(p.errors)
    return out if not p.errors else []


def _parse_rule(item: object, loc: Loc, p: Parser) -> Rule | None:
    before = len(p.errors)
    if not isinstance(item, dict):
        p.error(loc, "a rule is a mapping with name, if, do", item)
        return None
    for key in item:
        if key not in RULE_KEYS:
            p.error([*loc, key], f"unknown key '{key}' in rule", key, ", ".join(RULE_KEYS))
    name = item.get("name")
    if "name" not in item:
        p.error(loc, "every rule needs a name")
    elif not isinstance(name, str) or not name.strip():
        p.error([*loc, "name"], "every rule needs a name", name)
    if not isinstance(name, str) or not name.strip():
        name = f"#{loc[-1]}"
    schedules: list[Schedule] = []
    over = parse_over(item["over"], [*loc, "over"], p) if "over" in item else None
    if "over" in item:
        hotfolders = {sweep_source(p.tenant, str(name))}
        swept = p.hotfolders.get(over.hotfolder) if over is not None and over.hotfolder else None
        p.sweep_outputs[sweep_source(p.tenant, str(name))] = swept.output if swept is not None else None
        if len(str(name)) > 190:  # its jobs' source, "~TENANT/NAME", fits the 255 characters a source has
            p.error([*loc, "name"], "a sweep rule's name is at most 190 characters", name)
        if "on" in item:
            schedules = _parse_schedules(item["on"], [*loc, "on"], p)
    else:
        hotfolders = _parse_triggers(item.get("on"), [*loc, "on"], p, "on" in item)
    p.rule_hotfolders = sorted(hotfolders)
    condition = p.condition(item["if"], [*loc, "if"]) if "if" in item else None
    actions, kinds = [], []
    steps = item.get("do")
    if "do" not in item:
        p.error(loc, "every rule needs a non-empty 'do:' list of actions")
        steps = []
    elif not isinstance(steps, list) or not steps:
        p.error([*loc, "do"], "every rule needs a non-empty 'do:' list of actions", steps)
        steps = []
    for j, step in enumerate(steps):
        where = [*loc, "do", j]
        if not isinstance(step, dict) or len(step) != 1:
            p.error(where, "an action is a mapping with one key, e.g. {store: {to: ...}}", step, ", ".join(ACTIONS))
            continue
        (kind, arg), = step.items()
        builder = ACTIONS.get(kind)
        if builder is None:
            p.error([*where, kind], f"unknown action '{kind}'", kind, ", ".join(ACTIONS))
            continue
        action = builder(arg, [*where, kind], p)
        if action is not None:
            actions.append(action)
            kinds.append(kind)
    stop = item.get("stop", False)
    if not isinstance(stop, bool):
        p.error([*loc, "stop"], "expected true or false", stop)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        p.error([*loc, "enabled"], "expected true or false", enabled)
    once = item.get("once")
    if once not in (None, "content"):
        p.error([*loc, "once"], "not a once policy", once, "content")
    if len(p.errors) > before:
        return None
    return Rule(str(name), p.tenant, p.file, yaml_line(p.root, loc) or 0, frozenset(hotfolders), condition,
                tuple(actions), tuple(kinds), bool(stop), once, bool(enabled), over, tuple(schedules))


def _parse_schedules(value: object, loc: Loc, p: Parser) -> list[Schedule]:
    """A sweep rule's triggers: schedules only (the files it works on come from `over`, not from arrivals)."""
    if not isinstance(value, list) or not value:
        p.error(loc, "expected a list of schedules, e.g. [{schedule: {cron: \"0 3 * * *\"}}]", value)
        return []
    out = []
    for i, trig in enumerate(value):
        if not isinstance(trig, dict) or list(trig) != ["schedule"]:
            p.error([*loc, i], "a rule with over: is a sweep; its triggers are schedules", trig,
                    "{schedule: {every: 1h}}, {schedule: {cron: \"0 3 * * *\", timezone: \"Europe/Oslo\"}}")
            continue
        try:
            out.append(parse_schedule(trig["schedule"]))
        except ValueError as exc:
            p.error([*loc, i, "schedule"], str(exc), trig["schedule"])
    return out


def _parse_maps(value: object, p: Parser) -> dict[str, dict[str, str]]:
    """`maps: {desks: {SPO: Sport, "*": "{value}"}}`: routing tables for `{meta.15|map:desks}`."""
    if not isinstance(value, dict):
        p.error(["maps"], "expected a mapping of named tables, e.g. {desks: {SPO: Sport, '*': '{value}'}}", value)
        return {}
    out: dict[str, dict[str, str]] = {}
    for name, table in value.items():
        loc = ["maps", name]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            p.error(loc, "a map name is letters, digits, '_' or '-'", name)
            continue
        if not isinstance(table, dict) or not table:
            p.error(loc, "expected a non-empty mapping of value: folder", table)
            continue
        entries: dict[str, str] = {}
        for key, folder in table.items():
            if isinstance(folder, dict | list) or folder is None or isinstance(key, dict | list) or key is None:
                p.error([*loc, str(key)], "expected value: replacement (text)", folder)
                continue
            text = str(folder)
            if re.search(r"\{(?!value\})[^{}]*\}", text):
                p.error([*loc, str(key)], "a map entry may only use the placeholder {value}", text)
                continue
            entries[str(key)] = text
        out[name] = entries
    return out


def _parse_triggers(value: object, loc: Loc, p: Parser, given: bool) -> set[str]:
    own = p.hotfolders_of_tenant()
    if not given:
        return own
    if not isinstance(value, list) or not value:
        p.error(loc, "expected a list of triggers, e.g. [{hotfolder: inbox}]", value)
        return set()
    out: set[str] = set()
    for i, trig in enumerate(value):
        kinds = [k for k in trig if k in TRIGGER_KEYS] if isinstance(trig, dict) else []
        if isinstance(trig, dict) and len(trig) == 1 and not kinds:
            (unknown,) = trig
            p.error([*loc, i, str(unknown)], f"unknown trigger '{unknown}'", unknown, ", ".join(TRIGGER_KEYS))
            continue
        if not isinstance(trig, dict) or len(kinds) != 1:
            p.error([*loc, i], "a trigger is a mapping with one of these keys", trig, ", ".join(TRIGGER_KEYS))
            continue
        kind = kinds[0]
        arg = trig[kind]
        if kind == "schedule":
            p.error([*loc, i, kind], "a scheduled rule sweeps what over: names; add over: {folder: PATH}, "
                    "{hotfolder: NAME} or {storage: \"STORAGE:container/prefix\"}", arg)
            continue
        if kind == "storage_events":
            out.update(_events_trigger(trig, [*loc, i], p))
            continue
        if len(trig) != 1:
            extra = next(k for k in trig if k != kind)
            p.error([*loc, i, extra], f"unknown key '{extra}' in a {kind} trigger", extra, kind)
            continue
        if kind == "ftp":
            groups = sorted(n for n, tenant in p.ftp_groups.items() if tenant == p.tenant)
            if not isinstance(arg, str) or arg not in groups:
                p.error([*loc, i, kind], f"no [[ftp.groups]] group of tenant '{p.tenant}' has this name", arg,
                        ", ".join(groups) or "(no [[ftp.groups]] in the config)")
                continue
            out.add(ftp_source(arg))
            continue
        if not isinstance(arg, str) or arg not in own:  # a list here would be unhashable in `in own`
            p.error([*loc, i, kind], f"no hot folder of tenant '{p.tenant}' has this name", arg,
                    ", ".join(sorted(own)) or "(none)")
            continue
        out.add(str(arg))
    return out


def _events_trigger(trig: dict[object, object], loc: Loc, p: Parser) -> set[str]:
    """`{storage_events: lake-events}` (blobs created) or `{storage_events: lake-events, events: [created,
    deleted]}`: a deleted blob has no bytes, so only rules that ask for deletions see them."""
    name = trig["storage_events"]
    own = sorted(n for n, ev in p.events.items() if getattr(ev, "tenant", "default") == p.tenant)
    ok = True
    if not isinstance(name, str) or name not in own:
        p.error([*loc, "storage_events"], f"no [events.NAME] stream of tenant '{p.tenant}' has this name", name,
                ", ".join(own) or "(no [events.NAME] tables in the config)")
        ok = False
    kinds: object = trig.get("events", ["created"])
    for key in trig:
        if key not in ("storage_events", "events"):
            p.error([*loc, str(key)], f"unknown key '{key}' in a storage_events trigger", key, "storage_events, events")
            ok = False
    if not isinstance(kinds, list) or not kinds or any(k not in EVENT_KINDS for k in kinds):
        p.error([*loc, "events"], "expected a list of event kinds", kinds, ", ".join(EVENT_KINDS))
        ok = False
    if not ok:
        return set()
    assert isinstance(kinds, list)
    return {events_source(str(name), str(k)) for k in kinds}


def _duplicate_key(node: yaml.Node | None) -> tuple[str, int] | None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    return key.value, key.start_mark.line + 1
                seen.add(key.value)
            found = _duplicate_key(value)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            found = _duplicate_key(child)
            if found:
                return found
    return None


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
