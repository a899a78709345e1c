"""`flowd migrate verify DIR SAMPLES/`: run a configuration's rules in simulate mode over sample files and
say, per file and per rule (one rule per Color Factory channel), what flowd would produce: each output's
place, format, pixel size and bytes, the renames, the metadata changes (field: before -> after), the
quarantines and the fate of the source. An admin holds that against Color Factory's own outputs.

Nothing is written to any storage or hot folder: metadata and pixel actions run on private copies in a
temporary folder (as `flowd simulate` does), and every output is probed there before the folder goes.

The engine is not changed for this: each rule's actions are wrapped (in a private copy of the rule set) so
the asset each step hands on is seen, and the files behind those assets are probed once the run is over.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

import yaml

from flowd.action import Action, Result, Step
from flowd.asset import Asset, read_head
from flowd.context import RunContext
from flowd.engine import Engine
from flowd.errors import FlowdError
from flowd.report import _condition
from flowd.rules import Rule, RuleLoader, RuleSet
from flowd.sniff import SNIFF_BYTES, sniff

OUTPUT_ACTIONS = ("store", "move")
METADATA_ACTIONS = ("set_metadata", "merge_metadata", "strip_metadata", "map_category")
CONFIG_NAME = "config.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `flowd migrate verify`."""
    p.add_argument("dir", help="the migrated configuration: the folder holding config.toml, or the file itself")
    p.add_argument("samples", help="sample files: a folder (searched recursively; first-level subfolders named "
                                   "like hot folders are simulated in that hot folder only) or one file")
    p.add_argument("--json", action="store_true", help="one JSON object per sample file and hot folder")
    p.add_argument("--hotfolder", metavar="NAME", help="simulate in this hot folder only")


def verify(config_dir: Path, samples: Path, *, as_json: bool = False, out: TextIO = sys.stdout,
           hotfolder: str | None = None) -> int:
    """Simulate every sample in its hot folder(s) and print what each rule would do. 0: every sample ran;
    1: a sample could not be simulated (missing, unreadable, no files at all). A bad configuration raises
    ConfigErrors (as load_runtime does); an unknown `hotfolder` raises FlowdError."""
    from flowd.runtime import load_runtime

    config_file = Path(config_dir)
    if config_file.is_dir():
        config_file = config_file / CONFIG_NAME
    rt = load_runtime(str(config_file), install_id="verify")
    named = [hf.name for hf in rt.config.settings.hotfolders]
    if hotfolder is not None and hotfolder not in named:
        raise FlowdError(f"no hot folder named {hotfolder!r}; hot folders: {', '.join(named) or '(none)'}")
    rules = _spied(rt.rules)
    descriptions = _descriptions(rt.config.base, rt.rules.files)
    view = _View(out, as_json)
    status = 0
    jobs, problems = _samples(Path(samples), named, [hf.name for hf in rt.config.settings.hotfolders if hf.enabled],
                              hotfolder)
    for problem in problems:
        view.problem(problem)
        status |= problem.status
    if not jobs and not any(p.status for p in problems):
        view.problem(_Problem(str(samples), "no sample files to simulate", 1))
        status = 1
    for job in jobs:
        try:
            report = _simulate(rt, rules, descriptions, job)
        except OSError as exc:  # the sample went away or cannot be read: one line, never a traceback
            view.problem(_Problem(str(job.path), f"cannot read: {exc.strerror or exc}", 1))
            status = 1
            continue
        if report.get("error_line"):
            status = 1
        view.report(report)
    view.sweeps(_sweeps(rt.rules.sweeps(), descriptions))
    return status


# -- samples ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    path: Path
    root: Path  # the folder the sample is relative to (its {relpath} is path relative to root)
    hotfolder: str
    routed: bool  # its first-level subfolder names the hot folder


@dataclasses.dataclass(frozen=True, slots=True)
class _Problem:
    path: str
    message: str
    status: int = 0  # 1: counts as a sample that could not be simulated


def _samples(samples: Path, named: list[str], enabled: list[str],
             only: str | None) -> tuple[list[_Job], list[_Problem]]:
    """Which file is simulated in which hot folder, and the lines about what is not simulated."""
    problems: list[_Problem] = []
    everywhere = [only] if only else enabled
    try:
        st = os.stat(samples)
    except OSError as exc:
        return [], [_Problem(str(samples), f"cannot read: {exc.strerror}", 1)]
    if not stat.S_ISDIR(st.st_mode):
        if not everywhere:
            return [], [_Problem(str(samples), "no enabled hot folder to simulate it in (use --hotfolder NAME)", 1)]
        root = samples.absolute().parent
        return [_Job(root / samples.name, root, hf, False) for hf in everywhere], problems
    root = samples.absolute()
    jobs: list[_Job] = []
    for path, problem in _walk(root, root, problems):
        rel = path.relative_to(root)
        first = rel.parts[0] if len(rel.parts) > 1 else None
        if problem is not None:
            problems.append(_Problem(str(path), problem, 1))
        elif first in named:
            if only and first != only:
                continue  # counted below, once per subfolder
            jobs.append(_Job(path, root / first, first, True))
        elif not everywhere:
            problems.append(_Problem(str(path), "no enabled hot folder to simulate it in (use --hotfolder NAME)", 1))
        else:
            jobs.extend(_Job(path, root, hf, False) for hf in everywhere)
    if only:
        for name in named:
            if name != only and (root / name).is_dir():
                problems.append(_Problem(str(root / name), f"not simulated: only hot folder {only!r} (--hotfolder)"))
    return jobs, problems


def _walk(folder: Path, root: Path, problems: list[_Problem]) -> Iterator[tuple[Path, str | None]]:
    """The sample files below `folder` in name order: hidden files and folders are skipped, as are links."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append(_Problem(str(folder), f"cannot list this folder: {exc.strerror}", 1))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            problems.append(_Problem(str(path), "a symbolic link: skipped"))
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(path, root, problems)
        elif entry.is_file(follow_symlinks=False):
            yield path, None
        else:
            problems.append(_Problem(str(path), "not a regular file: skipped"))


# -- spying on the actions ----------------------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class _Seen:
    """One step that ran: the asset it was given and the one it handed on."""

    rule: str
    index: int
    kind: str
    before: Asset
    after: Asset
    record: dict[str, Any]


class _Spy:
    """An action as the engine sees it (kind, effectful, consumes, run), recording what it did."""

    def __init__(self, inner: Action, log: list[_Seen]) -> None:
        self.inner = inner
        self.log = log
        self.kind = inner.kind
        self.effectful = inner.effectful
        self.consumes = bool(getattr(inner, "consumes", False))

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        result = self.inner.run(asset, ctx, step)
        self.log.append(_Seen(step.rule, step.index, self.kind, asset, result.asset, dict(result.record)))
        return result


@dataclasses.dataclass(slots=True)
class _Spied:
    engine: Engine
    log: list[_Seen]


def _spied(rules: RuleSet) -> _Spied:
    """A private copy of the rule set whose actions record the assets they see (one log for every run)."""
    log: list[_Seen] = []
    wrapped = tuple(dataclasses.replace(r, actions=cast("tuple[Action, ...]", tuple(_Spy(a, log) for a in r.actions)))
                    for r in rules.rules)
    return _Spied(Engine(RuleSet(wrapped, rules.digest, rules.files, rules.errors, rules.fields), "verify"), log)


# -- one simulation -----------------------------------------------------------------------------------------
def _simulate(rt: Any, spied: _Spied, descriptions: dict[tuple[str, str], str], job: _Job) -> dict[str, Any]:
    from flowd.actions.webhook import post_json
    from flowd.trace import RunTrace

    folder = rt.folders[job.hotfolder]
    rel = job.path.relative_to(job.root).as_posix()
    st = os.lstat(job.path)
    with open(job.path, "rb") as fh:  # unreadable: OSError, reported by the caller
        fh.read(1)
    table = rt.rules.fields
    sample = _facts(job.path, table)
    report: dict[str, Any] = {"file": str(job.path), "relpath": rel, "hotfolder": job.hotfolder,
                              "routed": job.routed, "sample": _public(sample), "notes": [], "rules": []}
    notes: list[str] = report["notes"]
    if not folder.spec.enabled:
        notes.append(f"hot folder {job.hotfolder} is disabled in the configuration (simulated all the same)")
    if "/" in rel and not folder.spec.recursive:
        notes.append(f"hot folder {job.hotfolder} is not recursive: the daemon would not pick up a file in a "
                     "subfolder (simulated all the same)")
    if folder.ignored(job.path.name):
        notes.append(f"ignored by hot folder {job.hotfolder} (its ignore patterns): not a job, no rule runs")
        report["status"] = "ignored"
        return report
    if sample["format"] == "zip" and getattr(folder.spec, "extract_zip", False):
        notes.append("the hot folder extracts ZIP files (extract_zip): the daemon runs the rules on its entries, "
                     "not on the ZIP itself (simulated as one file here)")
    now = datetime.now()
    asset = Asset(0, folder.spec.tenant, folder.name, job.root, rel, st.st_size, st.st_mtime_ns, now,
                  folder.spec.output, job.path.name)
    spied.log.clear()
    with tempfile.TemporaryDirectory(prefix="flowd-verify-") as work:
        ctx = RunContext(now=now, storages=rt.storages, simulate=True, post_json=post_json,
                         seen_content=lambda _rule, _sha: None, workdir=Path(work), fields=table)
        trace = RunTrace(0, 0, rt.digest)
        outcome = spied.engine.run(asset, ctx, trace)
        # Probed while the work folder still holds the rewritten files.
        rules = _rules(rt, job.hotfolder, trace, list(spied.log), sample, table, descriptions)
    spied.log.clear()
    fate = folder.fate(outcome.matched, outcome.consumes, outcome.status == "quarantined") \
        if not outcome.transient else "retry later"
    report["rules"] = rules
    report["status"] = outcome.status
    report["fate"] = fate
    report["source"] = _fate(fate, folder)
    if trace.error:
        report["error"] = trace.error
        if str(trace.error.get("reason", "")).startswith("internal error"):
            report["error_line"] = True
    return report


def _rules(rt: Any, hotfolder: str, trace: Any, log: list[_Seen], sample: dict[str, Any], table: Any,
           descriptions: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    traced = {r.rule: r for r in trace.rules}
    stopped_by: str | None = None
    out: list[dict[str, Any]] = []
    for rule in rt.rules.rules:
        if rule.over is not None or hotfolder not in rule.hotfolders:
            continue
        entry: dict[str, Any] = {"rule": rule.name, "description": _description(rule, descriptions),
                                 "file": f"{rule.file}:{rule.line}", "enabled": rule.enabled}
        out.append(entry)
        if not rule.enabled:
            entry["note"] = "disabled in the configuration (not run)"
            continue
        rt_rule = traced.get(rule.name)
        if rt_rule is None:
            entry["note"] = (f"not run: {stopped_by}" if stopped_by else "not run")
            continue
        entry["matched"] = bool(rt_rule.matched)
        if not rt_rule.matched:
            entry["why_not"] = [line for c in rt_rule.conditions for line in _why(c)]
            continue
        if rt_rule.skipped:
            entry["skipped"] = rt_rule.skipped
        seen = {s.index: s for s in log if s.rule == rule.name}
        steps: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        last: Asset | None = None
        for record in rt_rule.actions:
            index, kind = record["step"], record["action"]
            step = {k: v for k, v in record.items() if k not in ("step", "ms")}
            steps.append(step)
            s = seen.get(index)
            if s is not None:
                last = s.after
            if record.get("outcome") == "error":
                if kind == "quarantine":
                    entry["quarantine"] = record.get("error")
                else:
                    entry["error"] = f"{kind}: {record.get('error')}"
                continue
            if kind == "rename":
                entry.setdefault("renames", []).append(record.get("name"))
            if kind in OUTPUT_ACTIONS and s is not None:
                outputs.append(_output(kind, record, s.before, sample, table))
        entry["steps"] = steps
        entry["outputs"] = outputs
        if last is not None and not outputs and last.content is not None and "error" not in entry:
            entry["result"] = _output("result", {}, last, sample, table)  # made, but no step stores it
        if rule.stop and "quarantine" not in entry and "error" not in entry:
            stopped_by = f"rule {rule.name} matched and stops (stop: true)"
        if "quarantine" in entry:
            stopped_by = f"rule {rule.name} quarantined the file"
        elif "error" in entry:
            stopped_by = f"rule {rule.name} failed, which quarantines the file"
    return out


def _output(kind: str, record: dict[str, Any], asset: Asset, sample: dict[str, Any], table: Any) -> dict[str, Any]:
    """One output: where it goes, and what the file handed to the storage is (probed in the work folder)."""
    out: dict[str, Any] = {"action": kind}
    if "target" in record:
        out["target"] = record["target"]
        out["outcome"] = record.get("outcome")
    if record.get("sidecar"):
        out["sidecar"] = record["sidecar"]
    if asset.name != sample.get("name"):
        out["name"] = asset.name
    facts = _facts(asset.path, table) if asset.content is not None else sample
    out.update({k: v for k, v in _public(facts).items() if k != "name"})
    changes = _changes(sample.get("fields", {}), facts.get("fields", {}))
    if asset.sidecar is not None:  # what the sidecar says beyond the file (readers take the sidecar's word)
        held = facts.get("fields", {})
        side = {k: v for k, v in _facts(asset.sidecar, table, image=False).get("fields", {}).items()
                if held.get(k, (None, []))[1] != v[1]}
        changes += [dict(c, where="sidecar") for c in _changes(sample.get("fields", {}), side) if c["after"]]
    out["metadata"] = changes
    return out


def _facts(path: Path, table: Any, image: bool = True) -> dict[str, Any]:
    """Bytes, format (sniffed), pixel size, colour mode and metadata fields of a file; what cannot be read
    is said, never raised."""
    facts: dict[str, Any] = {"name": path.name}
    try:
        facts["bytes"] = path.stat().st_size
        facts["format"] = sniff(read_head(path, SNIFF_BYTES))
    except (OSError, FlowdError) as exc:
        facts["format"] = "unreadable"
        facts["unreadable"] = getattr(exc, "strerror", None) or str(exc)
        facts["fields"] = {}
        return facts
    if image:
        try:
            from flowd.imaging.probe import probe

            im = probe(path)
            facts.update(format=im.format if facts["format"] in ("unknown", "text") else facts["format"],
                         width=im.width, height=im.height, color=im.color, bits=im.bits, icc=im.has_icc)
            if im.pages > 1:
                facts["pages"] = im.pages
        except Exception as exc:  # not an image, or one libvips cannot read: said, not raised
            facts["not_image"] = str(exc).removeprefix("cannot read image: ") or type(exc).__name__
    facts["fields"] = _fields(path, table)
    return facts


def _fields(path: Path, table: Any) -> dict[str, tuple[int | None, list[str]]]:
    from flowd.metadata.fields import DEFAULT_FIELDS
    from flowd.metadata.model import Metadata

    table = table or DEFAULT_FIELDS
    try:
        with Metadata.read(path, table) as meta:
            return {d.name: (d.id, values) for d in table.defs() if (values := meta.get(d))}
    except Exception:  # no readable metadata (a text file, a damaged header): no fields
        return {}


def _changes(before: dict[str, tuple[int | None, list[str]]],
             after: dict[str, tuple[int | None, list[str]]]) -> list[dict[str, Any]]:
    out = []
    for name in [*before, *(n for n in after if n not in before)]:
        was = before.get(name, (None, []))
        now = after.get(name, (None, []))
        if was[1] != now[1]:
            out.append({"field": was[0] if was[0] is not None else now[0], "name": name,
                        "before": ", ".join(was[1]), "after": ", ".join(now[1])})
    return sorted(out, key=lambda c: (c["field"] is None, c["field"] or 0))  # in field number order


def _public(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if k != "fields"}


def _why(cond: dict[str, Any]) -> list[str]:
    """The conditions that failed, as the trace recorded them (an `all` stops at its first failure)."""
    if cond.get("result"):
        return []
    if cond.get("if") == "all" and "of" in cond:
        return [line for inner in cond["of"] for line in _why(inner)]
    lines = _condition(cond, 0)
    return [lines[0].removeprefix("no ").strip(), *lines[1:]]


def _fate(fate: str, folder: Any) -> str:
    if fate == "keep":
        return "kept in the hot folder"
    if fate == "delete":
        return "deleted from the hot folder"
    if fate == "unmatched":
        return f"moved to the unmatched folder {folder.unmatched}"
    if fate == "quarantine":
        return f"moved to the errors folder {folder.errors}" if folder.errors else "left in place (quarantined)"
    if fate.startswith("move:"):
        return f"moved to {folder.after_move or fate[5:]}"
    return fate


# -- descriptions and sweeps --------------------------------------------------------------------------------
def _descriptions(base: Path, files: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """(tenant, rule name) -> the rule's `description:` (the Color Factory channel it came from)."""
    out: dict[tuple[str, str], str] = {}
    for shown in files:
        try:
            data = yaml.load((base / shown).read_text(encoding="utf-8"), Loader=RuleLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            continue
        tenant = data.get("tenant", "default")
        for item in data["rules"]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out[(str(tenant), item["name"])] = _raw(item)
    return out


def _raw(item: dict[str, Any]) -> str:
    """The rule's description, then (after a NUL) its `if` and `do` as compact YAML, for sweep lines."""
    def flow(value: object) -> str:
        return str(yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)).strip()

    def action(step: object) -> str:
        if isinstance(step, dict) and len(step) == 1:
            (kind, arg), = step.items()
            return f"{kind} {flow(arg)}" if arg else str(kind)
        return flow(step)

    desc = item.get("description")
    do = item.get("do")
    return "\0".join([str(desc).strip() if desc is not None else "", flow(item["if"]) if "if" in item else "",
                      ", ".join(action(a) for a in do) if isinstance(do, list) else flow(do)])


def _description(rule: Rule, descriptions: dict[tuple[str, str], str]) -> str | None:
    own = getattr(rule, "description", None)
    if isinstance(own, str) and own:
        return own
    text = descriptions.get((rule.tenant, rule.name), "").split("\0")[0]
    return text or None


def _sweeps(rules: tuple[Rule, ...], descriptions: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        _, cond, do = (descriptions.get((rule.tenant, rule.name), "") + "\0\0").split("\0")[:3]
        assert rule.over is not None
        out.append({"rule": rule.name, "description": _description(rule, descriptions), "enabled": rule.enabled,
                    "schedule": [s.describe() for s in rule.schedules] or ["none (only `flowd sweep NAME`)"],
                    "over": rule.over.describe(), "if": cond or None, "do": do or ", ".join(rule.kinds)})
    return out


# -- printing -------------------------------------------------------------------------------------------------
class _View:
    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json

    def emit(self, obj: dict[str, Any]) -> None:
        print(json.dumps(obj, ensure_ascii=False, default=str), file=self.out)

    def problem(self, problem: _Problem) -> None:
        if self.as_json:
            self.emit({"file": problem.path, "problem": problem.message, "simulated": False})
        else:
            print(f"{problem.path}: {problem.message}", file=self.out)

    def report(self, r: dict[str, Any]) -> None:
        if self.as_json:
            self.emit({k: v for k, v in r.items() if k != "error_line"})
            return
        w = self.out
        print(f"\n== {r['file']} in hot folder {r['hotfolder']}"
              f"{' (its subfolder)' if r['routed'] else ''}", file=w)
        print(f"  sample: {_shape(r['sample'])}", file=w)
        for note in r["notes"]:
            print(f"  note: {note}", file=w)
        if r.get("status") == "ignored":
            return
        if not r["rules"]:
            print("  no rule applies to this hot folder", file=w)
        for rule in r["rules"]:
            self._rule(rule)
        error = r.get("error") or {}
        line = f"  result: {r['status']}; source: {r['source']}"
        if r["status"] == "quarantined" and error.get("reason"):
            line += f" (reason: {error['reason']})"
        print(line, file=w)

    def _rule(self, rule: dict[str, Any]) -> None:
        w = self.out
        title = f"  rule {rule['rule']}" + (f" — {rule['description']}" if rule.get("description") else "")
        title += f" ({rule['file']})"
        if "note" in rule:
            print(f"{title}: {rule['note']}", file=w)
            return
        if not rule["matched"]:
            print(f"{title}: not matched", file=w)
            for line in rule.get("why_not", []):
                print(f"      failed: {line}", file=w)
            return
        print(f"{title}: matched", file=w)
        if rule.get("skipped"):
            print(f"    skipped: {rule['skipped']}", file=w)
        outputs = iter(rule.get("outputs", []))
        for step in rule.get("steps", []):  # in the order they ran, each output where its step is
            if step["action"] in OUTPUT_ACTIONS and step.get("outcome") != "error":
                output = next(outputs, None)
                if output is not None:
                    self._output(output)
                continue
            shown = _step(step)
            if shown:
                print(f"    {shown}", file=w)
        if "result" in rule:
            self._output(rule["result"])
        if rule.get("quarantine"):
            print(f"    QUARANTINE: {rule['quarantine']}", file=w)
        if rule.get("error"):
            print(f"    ERROR: {rule['error']}", file=w)

    def _output(self, o: dict[str, Any]) -> None:
        w = self.out
        if o["action"] == "result":
            print(f"    result (not stored by this rule): {o.get('name', '')} {_shape(o)}", file=w)
        else:
            outcome = f", {o['outcome']}" if o.get("outcome") not in (None, "written") else ""
            print(f"    output {o.get('target')} ({o['action']}{outcome}): {_shape(o)}", file=w)
        if o.get("sidecar"):
            print(f"      sidecar {o['sidecar']}", file=w)
        if not o["metadata"]:
            print("      metadata unchanged", file=w)
        for c in o["metadata"]:
            field = f"field {c['field']} ({c['name']})" if c["field"] is not None else f"field {c['name']}"
            where = " [in the sidecar]" if c.get("where") == "sidecar" else ""
            print(f"      {field}: {c['before']!r} -> {c['after']!r}{where}", file=w)

    def sweeps(self, sweeps: list[dict[str, Any]]) -> None:
        if self.as_json:
            self.emit({"sweep_rules": sweeps})
            return
        if not sweeps:
            print("\nsweep rules: none", file=self.out)
            return
        print("\nsweep rules (not run per file; they purge on their schedule):", file=self.out)
        for s in sweeps:
            what = f"{s['over']}: {s['do']}" + (f" where {s['if']}" if s["if"] else " (every file)")
            desc = f" ({s['description']})" if s.get("description") else ""
            off = " [disabled in the configuration]" if not s["enabled"] else ""
            print(f"  {s['rule']}{desc} — {'; '.join(s['schedule'])} — {what}{off}", file=self.out)


def _shape(f: dict[str, Any]) -> str:
    """"jpeg, 200 x 150 px, rgb, 12,345 bytes" (what is known of it)."""
    parts = [str(f.get("format", "?"))]
    if "width" in f:
        parts.append(f"{f['width']} x {f['height']} px")
        parts.append(str(f.get("color")) + (f" {f['bits']}-bit" if f.get("bits", 8) != 8 else ""))
        if f.get("pages"):
            parts.append(f"{f['pages']} pages")
    elif f.get("not_image"):
        parts.append(f"no pixel size ({f['not_image']})")
    if f.get("unreadable"):
        parts.append(f"unreadable ({f['unreadable']})")
    if f.get("bytes") is not None:
        parts.append(f"{f['bytes']:,} bytes")
    return ", ".join(parts)


def _step(step: dict[str, Any]) -> str | None:
    """One line per step worth saying in a human listing (outputs and quarantines have their own lines)."""
    kind = step["action"]
    if kind in OUTPUT_ACTIONS or kind == "quarantine":
        return None
    if step.get("outcome") == "error":
        return None  # the rule's ERROR line says why
    if kind == "rename":
        return f"renamed to {step.get('name')}"
    if kind == "convert":
        output = step.get("output")
        if isinstance(output, dict):
            return (f"convert -> {output.get('type')}: {output.get('width')} x {output.get('height')} px, "
                    f"{output.get('color')}, {output.get('bytes', 0):,} bytes")
        return f"convert: {step.get('note') or step.get('mode')}"
    if kind in METADATA_ACTIONS:
        if step.get("outcome") == "unchanged":
            return f"{kind}: nothing changed"
        where = step.get("written")
        return f"{kind}: written to the {where}" if where else f"{kind}: {step.get('outcome')}"
    detail = " ".join(f"{k}={v}" for k, v in step.items() if k not in ("action", "outcome"))
    return f"{kind} [{step.get('outcome', '')}] {detail}".rstrip()
