"""Color Factory channels as flowd hot folders and rules.

One hot folder per input folder; each channel sharing it (a master and its slaves, or several masters) is a
rule on it, so one drop fans out to every rendition and leaves the folder only when all have succeeded. A
purging channel is a scheduled sweep rule. Inside a rule the steps follow Color Factory's fixed processing
order: keep the original, metadata, one `convert` (CMYK colour, resize, unsharp mask, RGB/gray colour,
output format), file naming, and the final `store` whose path is the AutoRouting stack.

Every setting read is recorded in the report with what it became, or why not (report.py).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowd.glob import GlobError, compile_glob
from flowd.metadata.codes import unknown_codes
from flowd.migrate.export import Channel, Export, Purge, Section, Setting, number
from flowd.migrate.paths import Local, MapError, Mapped, PathMapper, Stored
from flowd.migrate.report import Part, Report, Where
from flowd.migrate.xmlsafe import Node
from flowd.migrate.yamlout import Lines, flow, scalar

# Raster formats flowd's convert reads; the families Color Factory sorts the rest into, by extension.
RASTER = ["jpeg", "tiff", "png", "psd", "webp", "gif"]
FAMILY_EXTENSIONS = {
    "raw": ["cr2", "cr3", "crw", "nef", "nrw", "arw", "srf", "sr2", "orf", "raf", "rw2", "rwl", "pef", "dng", "3fr",
            "erf", "kdc", "mos", "mrw", "x3f", "iiq"],
    "movies": ["mov", "mp4", "m4v", "avi", "mxf", "mpg", "mpeg", "wmv", "mkv", "3gp", "mts", "m2ts"],
    "vector": ["eps", "ai", "svg", "wmf", "emf"],
}
MODES = ("Normal", "NoPixelProcessing", "Ignore", "Copy", "MoveToUnknown")
QUALITY = {"low": 30, "medium": 60, "high": 85, "maximum": 100}
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
PRIORITY_ORDER = {"High": 0, "Medium": 1, "Low": 2}
OUTPUT_FORMATS = ("JPEG", "JPEGProgressive", "JPEGWeb", "JPEGCopy", "TIFF", "TIFF16", "TIFFJPEG", "PNG", "PSD", "EPS")
# Characters Windows refuses in names: Color Factory's "map Mac characters to underscore" maps them.
DEFAULT_IGNORE = ["*.part", "*.tmp", "*.crdownload", "~$*", ".*"]


@dataclass
class Options:
    export: str
    out: str  # as given, for the report
    maps: list[str]
    storages: list[str]
    metadata_config: str | None = None  # copied next to config.toml by the caller
    timezone: str | None = None
    progress: Callable[[int, int], None] | None = None


@dataclass
class Folder:
    """A hot folder: one input folder and the channels reading it (the first is the master)."""

    name: str
    mapped: Mapped
    channels: list[Channel]
    master: Channel
    local: str


@dataclass
class Result:
    files: dict[str, str]  # relative path -> text
    report: Report


class Importer:
    def __init__(self, export: Export, options: Options, fields: Any = None) -> None:
        self.x = export
        self.o = options
        self.fields = fields  # a FieldTable to check field numbers against (None: not checked)
        self.mapper = PathMapper.parse(options.maps, options.storages)
        self.report = Report(export.path, options.out, Part("Site-wide settings", export.document.root.line))
        self.report.warnings = export.warnings.items
        self.storages: dict[str, dict[str, Any]] = {}  # name -> TOML table
        self.local_storage: dict[str, str] = {}  # mapping prefix key -> storage name
        self.rule_names: set[str] = set()
        self.folder_names: set[str] = set()
        self.path_map: dict[str, str] = {}
        self.maps: dict[str, dict[str, str]] = {}
        self.covered: set[int] = set()
        self.parts_by_node: dict[int, Part] = {}  # id() of a channel's or purging channel's node -> its part  # id() of attributes reported as part of a whole element

    def cover(self, node: Node) -> None:
        """A whole element (a macro entry, a routing method with its table) is reported as one row."""
        stack = [node]
        while stack:
            n = stack.pop()
            self.covered.update(id(a) for a in n.attrs.values())
            stack.extend(n.children)

    def _leftovers(self) -> None:
        """Every attribute of the export is in the report: what no row names yet gets one here, so a setting
        the importer does not know how to carry is listed, never silently dropped."""
        named: set[tuple[int, str]] = set()
        for p in [self.report.site, *self.report.parts]:
            for row in p.rows:
                head, _, rest = row.setting.partition(" ")
                named.add((row.line, rest.partition("=")[0].lower()))
        owner: dict[int, Part] = {}
        for ch in self.x.channels:
            part = self._part(ch)
            stack = [ch.node]
            while stack:
                n = stack.pop()
                owner[id(n)] = part
                stack.extend(n.children)
        for pg in self.x.purges:
            part = self.parts_by_node[id(pg.node)]
            stack = [pg.node]
            while stack:
                n = stack.pop()
                owner[id(n)] = part
                stack.extend(n.children)
        site = self.report.site
        unknown = self.x.warnings.unknown
        stack = [self.x.document.root]
        while stack:
            n = stack.pop()
            stack.extend(n.children)
            if id(n) in unknown:
                continue
            for key, a in n.attrs.items():
                if id(a) in unknown or id(a) in self.covered or (a.line, key) in named:
                    continue
                s = Setting(n.name, a.name, a.value, a.line)
                part = owner.get(id(n), site)
                if n.tag == "colorfactoryconfiguration":
                    site.add(s, "mapped", "noted in the report (not a setting)")
                elif n.tag == "channel" and key == "id":
                    part.add(s, "mapped", "in the rule's description; masterChannel references resolve through it")
                elif n.tag == "channelgroup" and key == "enabled":
                    site.add(s, "mapped", "its channels' rules are " + ("enabled" if _on_value(a.value) else
                                                                        "disabled (enabled: false)"))
                elif n.tag == "channelgroup" and key == "name":
                    site.add(s, "mapped", "the group's channels are in one rule file named after it")
                elif n.tag == "globalfolders":
                    site.add(s, "not carried", "not used: every hot folder has its own folder of this kind")
                else:
                    part.add(s, "not carried", "read but not used by the importer (please report this)")

    # -- paths ----------------------------------------------------------------------------------------
    def _paths(self) -> None:
        """Every Windows path the result needs, resolved at once: one error lists all that no --map covers."""
        missing: list[str] = []
        wrong: list[str] = []
        self.resolved: dict[tuple[int, str], Mapped] = {}

        def need(s: Setting | None, what: str, local: bool) -> None:
            if s is None or not s.value.strip():
                return
            m = self.mapper.resolve(s.value)
            if m is None:
                why = self.mapper.why_unmapped(s.value)
                if why == "has no --map":
                    missing.append(f"  {s.value}  ({what}, line {s.line})")
                else:
                    wrong.append(f"  {s.value}  ({what}, line {s.line}) {why}")
            elif local and not isinstance(m.mapping.to, Local):
                wrong.append(f"  {s.value}  ({what}, line {s.line}) maps to storage target "
                             f"{m.mapping.to.storage}:{m.mapping.to.prefix}, but input, Error and Unknown folders "
                             "must be local folders")
            else:
                self.resolved[(s.line, s.value)] = m

        for ch in self.x.channels:
            kind = f"{ch.title}"
            need(ch["inputfolder"].get("path"), f"input folder of {kind}", True)
            need(ch["outputfolder"].get("path"), f"output folder of {kind}", False)
            need(ch["inputfolder"].get("copyinputfileto"), f"copy-input-to folder of {kind}", False)
            need(ch["errorhandling"].get("errorfolder"), f"Error folder of {kind}", True)
            need(ch["errorhandling"].get("unknownfolder"), f"Unknown folder of {kind}", True)
        g = self.x.globals
        need(g.get("errorfolder"), "global Error folder", True)
        need(g.get("unknownfolder"), "global Unknown folder", True)
        for p in self.x.purges:
            need(p.main.get("folder"), f"folder of {p.title}", False)
            need(p.main.get("moveto"), f"move-to folder of {p.title}", False)
        problems = []
        if missing:
            prefixes = ", ".join(m.prefix for m in self.mapper.mappings) or "none"
            problems.append(f"{len(missing)} path(s) of {self.x.path} have no --map (mapped prefixes: {prefixes}):\n"
                            + "\n".join(missing)
                            + "\nmap each (or a common prefix), e.g. --map 'D:\\CF=/srv/cf' or --map 'D:\\CF\\Web=lake:web'")
        if wrong:
            problems.append("these paths of the export cannot be used:\n" + "\n".join(wrong))
        if problems:
            raise MapError("\n".join(problems))

    def mapped(self, s: Setting | None) -> Mapped | None:
        if s is None or not s.value.strip():
            return None
        return self.resolved.get((s.line, s.value))

    def target(self, m: Mapped) -> str:
        """A storage target for an output path: `lake:web/...` as mapped, or a local storage per --map prefix."""
        to = m.mapping.to
        if isinstance(to, Stored):
            if to.storage not in self.storages:
                kind = self.mapper.storage_kind(to.storage)
                self.storages[to.storage] = _storage_table(to.storage, kind)
            return f"{to.storage}:{to.join(m.rest)}".rstrip("/") if to.join(m.rest) else f"{to.storage}:"
        # One local storage per output folder: a storage whose root held a hot folder would be refused
        # (its outputs could land in the drop zone).
        local = m.local or ""
        name = self.local_storage.get(local)
        if name is None:
            windows = [c for c in m.path.replace("/", "\\").split("\\") if c]
            base = _slug("-".join(windows[-2:])) or "local"
            name = _unique(base, set(self.storages) | set(self.mapper.storage_kinds))
            self.local_storage[local] = name
            self.storages[name] = {"kind": "local", "root": local, "_comment": m.path}
        return f"{name}:"

    # -- the whole site ---------------------------------------------------------------------------------
    def run(self) -> Result:
        self._paths()
        folders, parts = self._folders()
        self._config(folders)
        files: dict[str, str] = {}
        by_file: dict[str, list[Folder]] = {}
        for f in folders:
            stem = _slug(f.master.group_name or f.master.name) or f"channel-{_slug(f.master.id)}"
            by_file.setdefault(stem, []).append(f)
        total = len(self.x.channels) + len(self.x.purges)
        done = 0
        taken: set[str] = set()
        for stem, group in by_file.items():
            name = _unique(stem, taken)
            taken.add(name)
            rel = f"rules/{name}.yaml"
            lines = Lines()
            lines.note(f"Imported from {self.x.path} by `flowd migrate colorfactory` (see MIGRATION.md).")
            lines.note("Each rule is one Color Factory channel; comments name the setting each line came from.")
            lines.add("")
            lines.add("rules:")
            self.maps = {}
            for f in group:
                self._folder_rules(lines, rel, f, parts)
                done += len(f.channels)
                if self.o.progress:
                    self.o.progress(done, total)
            if lines.lines[-1] == "rules:":
                lines.lines[-1] = "rules: []  # no channel of this file could be imported (see MIGRATION.md)"
            if self.maps:
                lines.add("")
                lines.note("AutoRouting tables: prefix or field value -> folder (\"*\": any other value)")
                lines.add("maps:")
                for mname, table in self.maps.items():
                    lines.add(f"  {mname}: {flow(table)}")
            files[rel] = lines.text()
        if self.x.purges:
            lines = Lines()
            lines.note(f"Imported from {self.x.path} by `flowd migrate colorfactory`: the purging channels, as "
                       "scheduled sweep rules.")
            lines.add("")
            lines.add("rules:")
            rel = f"rules/{_unique('purging', taken)}.yaml"
            for p in self.x.purges:
                part = Part(p.title, p.node.line)
                self.parts_by_node[id(p.node)] = part
                self.report.parts.append(part)
                self._purge(lines, rel, p, part)
                done += 1
                if self.o.progress:
                    self.o.progress(done, total)
            files[rel] = lines.text()
        self._collisions(folders)
        # Storages appear in the rules only once they are rendered: the config is written last.
        files["config.toml"] = self._config_text()
        self._leftovers()
        self.report.files = sorted(files)
        return Result(files, self.report)

    # -- hot folders ----------------------------------------------------------------------------------
    def _folders(self) -> tuple[list[Folder], dict[int, Part]]:
        parts: dict[int, Part] = {}
        by_id: dict[str, Channel] = {}
        for ch in self.x.channels:
            part = Part(ch.title, ch.line)
            parts[id(ch)] = part
            self.parts_by_node[id(ch.node)] = part
            self.report.parts.append(part)
            if ch.id in by_id:
                first = by_id[ch.id]
                self.x.warnings.add(ch.line, f"channel id {ch.id} is used again (first on line {first.line}); "
                                             f"slaves naming {ch.id} follow the first")
            else:
                by_id[ch.id] = ch
        folders: dict[tuple[str, ...], Folder] = {}
        order: list[Folder] = []
        slaves: list[Channel] = []
        for ch in self.x.channels:
            if ch.master is not None and ch.master != ch.id:
                slaves.append(ch)
                continue
            if ch.master == ch.id:
                self.x.warnings.add(ch.line, f"{ch.title} names itself as its master: read as a master")
            self._add_master(ch, parts[id(ch)], folders, order)
        for ch in slaves:
            part = parts[id(ch)]
            master, seen = by_id.get(ch.master or ""), {ch.id}
            while master is not None and master.master and master.master != master.id and master.id not in seen:
                seen.add(master.id)
                master = by_id.get(master.master)
            if master is not None and master.id in seen:
                master = None  # a cycle of slaves
            host = next((f for f in order if master is not None and master in f.channels), None)
            setting = ch.attr("masterchannel")
            assert setting is not None
            if host is None:
                if ch["inputfolder"].get("path") is not None:
                    part.add(setting, "approximated", f"no master channel with id {ch.master} (or a cycle): "
                                                      "this channel reads its own input folder")
                    self.x.warnings.add(ch.line, f"{ch.title}: its master {ch.master} is missing; it reads its own "
                                                 "input folder")
                    self._add_master(ch, part, folders, order)
                else:
                    part.add(setting, "not carried", f"no master channel with id {ch.master} and no input folder "
                                                     "of its own: the channel is not imported")
                    self.x.warnings.add(ch.line, f"{ch.title}: its master {ch.master} is missing and it has no "
                                                 "input folder: not imported")
                continue
            own = ch["inputfolder"].get("path")
            if own is not None:
                part.add(own, "not carried", f"a slave reads its master's input folder ({host.mapped.path})")
            host.channels.append(ch)
            part.add(setting, "mapped", f"a rule on the master's hot folder '{host.name}' (fan-out: the file leaves "
                                        "the folder once every channel's rule has succeeded)")
        return order, parts

    def _add_master(self, ch: Channel, part: Part, folders: dict[tuple[str, ...], Folder], order: list[Folder]) -> None:
        path = ch["inputfolder"].get("path")
        m = self.mapped(path)
        if m is None:
            part.add((f"{ch.node.name} (no InputFolder path)", ch.line), "not carried",
                     "a channel without an input folder cannot run: not imported")
            self.x.warnings.add(ch.line, f"{ch.title} has no <InputFolder path=...>: not imported")
            return
        local = m.local or ""
        key = m.mapping.key + tuple(c.lower() for c in m.rest)  # Windows paths: case does not matter
        if key in folders:
            host = folders[key]
            host.channels.append(ch)
            part.add(path, "mapped", f"shares hot folder '{host.name}' with {host.master.title}: both rules run on "
                                     "every file (fan-out)")
            return
        windows = [c for c in m.path.replace("/", "\\").split("\\") if c]
        name = _unique(_slug("-".join(windows[-2:])) or "in", self.folder_names)
        self.folder_names.add(name)
        folder = Folder(name, m, [ch], ch, local)
        folders[key] = folder
        order.append(folder)

    def _config(self, folders: list[Folder]) -> None:
        """Hot folder tables (written to config.toml by _config_text once storages are known)."""
        self.hot_tables: list[tuple[Folder, list[tuple[str, object, str, list[tuple[Part, Setting | tuple[str, int], str, str]]]]]] = []
        g = self.x.globals
        site = self.report.site
        for key in ("baseimagefolder", "tempfolder"):
            s = g.get(key)
            if s is not None:
                site.add(s, "not carried", "not needed: paths come from --map, and flowd writes every output "
                                           "under a temporary name beside its target, then renames it")
        env = self.x.environment
        mp = env.get("maxprocesses")
        self.workers = int(number(mp, self.x.warnings, 0, 1, 64) or 0) if mp else 0
        if mp is not None:
            if self.workers:
                site.add(mp, "mapped", f"[flowd] workers = {self.workers}")
            else:
                site.add(mp, "not carried", "not a number from 1 to 64: flowd's default of 4 workers is used")
        for key in ("prioritysharehigh", "prioritysharemedium", "prioritysharelow"):
            s = env.get(key)
            if s is not None:
                site.add(s, "not carried", "flowd has no per-priority throughput share: rules on one hot folder run "
                                           "in their order for every file, and workers take jobs oldest first")
        s = env.get("colorengine")
        if s is not None:
            site.add(s, "approximated", "flowd converts colour with libvips and LittleCMS (relative colorimetric by "
                                        "default; `intent:` in convert chooses)")
        for folder in folders:
            self.hot_tables.append((folder, self._hot_table(folder)))

    def _hot_table(self, f: Folder) -> list[tuple[str, object, str, list[tuple[Part, Setting | tuple[str, int], str, str]]]]:
        """The keys of one [[hotfolders]] table: (key, value, comment, [(part, setting, status, outcome)])."""
        ch = f.master
        part = self._part(ch)
        inp = ch["inputfolder"]
        rows: list[tuple[str, object, str, list[tuple[Part, Setting | tuple[str, int], str, str]]]] = []
        path = inp.get("path")
        assert path is not None
        unc = path.value.strip().startswith(("\\\\", "//"))
        rows.append(("path", f.local, path.value, [(part, path, "mapped", "the hot folder's path" + (
            " (a UNC share in Color Factory: if this folder is a network mount, set poll_seconds, since file "
            "system events do not cross SMB or NFS)" if unc else ""))]))
        if not any(_on(c) for c in f.channels):
            rows.append(("enabled", False, "every channel reading this folder is disabled: files stay where they are",
                         []))
        recursive = inp.flag("includesubfolders", False)
        s = inp.get("includesubfolders")
        rows.append(("recursive", recursive, f"InputFolder includeSubfolders={'yes' if recursive else 'no'}",
                     [(part, s, "mapped", f"recursive = {'true' if recursive else 'false'}")] if s else []))
        wait = inp.number("waituntilfilestopsgrowingsec", None, 0, 86400, integer=False)
        s = inp.get("waituntilfilestopsgrowingsec")
        if wait is not None and s is not None:
            rows.append(("stable_seconds", _int(wait), s.label, [(part, s, "mapped", f"stable_seconds = {_int(wait)}")]))
        run, comment, srows = self._schedule(ch["runschedule"], part, "hot folder `run`")
        if run is not None:
            rows.append(("run", run, comment, srows))
        elif srows:
            rows.append(("", None, "", srows))
        remove = inp.flag("removeemptyfolders", False)
        s = inp.get("removeemptyfolders")
        if s is not None:
            rows.append(("remove_empty_folders", remove, s.label, [(part, s, "mapped", f"remove_empty_folders = {str(remove).lower()}")]))
        z, zs = inp.flag("extractzip", False), inp.get("extractzip")
        sub, subs = inp.flag("extractziptosubfolder", False), inp.get("extractziptosubfolder")
        if z or sub:
            value: object = "subfolder" if sub else True
            zsetting = subs or zs
            rows.append(("extract_zip", value, zsetting.label if zsetting else "",
                         [(part, x, "mapped", f"extract_zip = {flow(value)}") for x in (zs, subs) if x]))
        else:
            rows.append(("", None, "", [(part, x, "mapped", "ZIP files are not extracted: they are unknown files "
                                                              "(see the Unknown folder)") for x in (zs, subs) if x]))
        # MergeText sidecars are taken with their picture, never processed on their own.
        ignore = []
        for c in f.channels:
            mt = c["metadata"].children("mergetext")
            if mt:
                ma = mt[0].attrs.get("mode")
                mode = (ma.value if ma else "").lower()
                ext = mt[0].attrs.get("extension")
                if mode in ("", "lookformatchingtextfile"):
                    for e in ([ext.value] if ext and ext.value.strip() else [".xmp", ".txt"]):
                        e = "." + e.strip().lstrip("*.")
                        ignore += [f"*{e.lower()}", f"*{e.upper()}"]
        if ignore:
            rows.append(("ignore", DEFAULT_IGNORE + list(dict.fromkeys(ignore)),
                         "sidecars merged by MergeText are not assets of their own", []))
        # Error and Unknown folders: the channel's own, else the site's.
        for key, attr, label in (("errors", "errorfolder", "Error"), ("unmatched", "unknownfolder", "Unknown")):
            own = ch["errorhandling"].get(attr)
            glob = self.x.globals.get(attr)
            s = own or glob
            m = self.mapped(s)
            if s is not None and m is not None and m.local is not None:
                rows.append((key, m.local, s.value, [(part, own, "mapped", f"{key} = the {label} folder")] if own else []))
                if not own and glob is not None:
                    self._global_used(glob, f"{key} of hot folder '{f.name}'")
            elif key == "errors":
                rows.append(("errors", f"var/error/{f.name}", "no Error folder in the export: one per hot folder",
                             [(part, (f"{ch.node.name} (no Error folder)", ch.line), "approximated",
                               f"no Error folder in the export: errors = var/error/{f.name}")]))
            else:
                part.add((f"{ch.node.name} (no Unknown folder)", ch.line), "approximated",
                         "no Unknown folder in the export: files no channel takes stay in the hot folder "
                         "(unmatched = \"leave\")")
        s = ch["errorhandling"].get("disableofflinedetection")
        if s is not None:
            part.add(s, "approximated", "flowd has no offline switch: an unreachable folder or storage is a transient "
                                        "error, retried with backoff, and the file stays where it is")
        jrf = ch["jobrequestfiles"]
        if jrf.flag("enabled", False):
            js, ws, cs = jrf.get("enabled"), jrf.get("writeresultfile"), jrf.get("ignorecropandsize")
            prf = jrf.flag("writeresultfile", False)
            rows.append(("jrf", True, js.label if js else "", [(part, js, "mapped", "jrf = true")] if js else []))
            rows.append(("jrf_output", "requested", "a request naming M_OUTPUT_FILE gets its output there only", []))
            if prf:
                rows.append(("prf", True, ws.label if ws else "", [(part, ws, "mapped", "prf = true")] if ws else []))
            elif ws:
                part.add(ws, "mapped", "no result file (prf = false)")
            if cs is not None:
                part.add(cs, "mapped", "flowd reads a request's crop and size keys but never acts on them")
            self._jrf_paths()
        else:
            for k in ("enabled", "writeresultfile", "ignorecropandsize"):
                s = jrf.get(k)
                if s is not None:
                    part.add(s, "mapped", "job requests are off for this channel")
        for c in f.channels[1:]:
            for sec in ("runschedule", "jobrequestfiles", "inputfolder", "errorhandling"):
                for s in c[sec].unread():
                    if s.attr.lower() in ("copyinputfileto", "copyfiledate", "mirrorsubfolders", "minfilesizebytes",
                                          "path"):
                        continue  # per channel (outputs), or reported with the hot folder's rules
                    self._part(c).add(s, "not carried", f"{c[sec].name} belongs to the input folder: the hot folder "
                                                        f"follows its first channel, {f.master.title}")
                    c[sec].used.add(s.attr.lower())
        return rows

    def _collisions(self, folders: list[Folder]) -> None:
        """Folders Color Factory tolerated but flowd refuses: an output, Error or Unknown folder inside an input
        folder (its files would be processed again) or input folders inside each other. One error lists all,
        each with its export line, before anything is written."""
        def where(p: str) -> tuple[str, ...]:
            return tuple(os.path.abspath(os.path.join(self.o.out, p)).split("/"))

        def lines_of(windows: str) -> str:
            found = sorted({line for (line, value) in self.resolved if value.strip().lower() == windows.strip().lower()})
            return ", ".join(str(n) for n in found) or "?"

        def inside(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
            return len(a) > len(b) and a[:len(b)] == b

        roots = [(t, where(str(t["root"]))) for t in self.storages.values() if t.get("kind") == "local"]
        problems = []
        for i, f in enumerate(folders):
            h = where(f.local)
            recursive = f.master["inputfolder"].flag("includesubfolders", False)
            for t, r in roots:
                if r == h or inside(r, h) or inside(h, r):
                    problems.append(f"  output folder {t['_comment']} (line {lines_of(t['_comment'])}) and input "
                                    f"folder {f.mapped.path} (line {lines_of(f.mapped.path)}) overlap")
            for g in folders[i + 1:]:
                o = where(g.local)
                if (recursive and inside(o, h)) or (g.master["inputfolder"].flag("includesubfolders", False)
                                                     and inside(h, o)):
                    problems.append(f"  input folders {f.mapped.path} and {g.mapped.path} (lines "
                                    f"{lines_of(f.mapped.path)}, {lines_of(g.mapped.path)}) lie inside each other")
            for attr in ("errorfolder", "unknownfolder"):
                sx = f.master["errorhandling"].get(attr) or self.x.globals.get(attr)
                mx = self.mapped(sx)
                if sx is None or mx is None or mx.local is None:
                    continue
                e = where(mx.local)
                if e == h or (recursive and inside(e, h)):
                    problems.append(f"  {'Error' if attr == 'errorfolder' else 'Unknown'} folder {sx.value} "
                                    f"(line {sx.line}) lies inside input folder {f.mapped.path}")
        if problems:
            raise MapError("these folders of the export overlap, which flowd refuses (files would be processed "
                           "again):\n" + "\n".join(dict.fromkeys(problems)) + "\ngive one of each pair its own "
                           "local folder with a --map for that path (the longest prefix wins), e.g. "
                           "--map 'D:\\CF\\In\\Out=/srv/cf/out'")

    def _jrf_paths(self) -> None:
        """Job requests name Windows paths: [path_map] maps them as --map does (local mappings only)."""
        for m in self.mapper.mappings:
            if isinstance(m.to, Local):
                self.path_map.setdefault(m.prefix, m.to.folder)

    def _global_used(self, s: Setting, what: str) -> None:
        seen: set[tuple[int, str]] = getattr(self, "_globals_seen", set())
        if (s.line, s.attr) not in seen:
            self.report.site.add(s, "mapped", f"the {what} (and of every hot folder without its own)")
            seen.add((s.line, s.attr))
        self._globals_seen = seen

    def _config_text(self) -> str:
        L = Lines()
        rows_out: list[tuple[Part, Setting | tuple[str, int], str, str, int]] = []
        L.note(f"Imported from {self.x.path} by `flowd migrate colorfactory` (see MIGRATION.md).")
        L.note("Paths are relative to this file. Check it with: flowd check -c config.toml")
        L.add("")
        L.add("[flowd]")
        L.add('data_dir = "var"')
        L.add('database_url = "sqlite:///var/flowd.db"')
        L.add('rules = ["rules/*.yaml"]')
        if self.workers:
            mp = self.x.environment.get("maxprocesses")
            L.add(f"workers = {self.workers}", mp.label if mp else None)
        if self.o.metadata_config:
            L.add("")
            L.add("[metadata]")
            L.add(f"configuration = {_toml(self.o.metadata_config)}", "--metadata-config: the site's field numbers")
        for name, table in self.storages.items():
            L.add("")
            L.add(f"[storage.{name}]", table.get("_comment"))
            for k, v in table.items():
                if not k.startswith("_"):
                    L.add(f"{k} = {_toml(v)}")
        for folder, rows in self.hot_tables:
            L.add("")
            L.add("[[hotfolders]]", f"{folder.master.title}"
                  + (f" and {len(folder.channels) - 1} more channel(s)" if len(folder.channels) > 1 else ""))
            L.add(f"name = {_toml(folder.name)}")
            for key, value, comment, srows in rows:
                line = L.add(f"{key} = {_toml(value)}", comment) if key else 0
                for part, s, status, outcome in srows:
                    rows_out.append((part, s, status, outcome, line))
        if self.path_map:
            L.add("")
            L.add("[path_map]", "Windows paths in job requests, mapped as --map maps the export's")
            for prefix, local in self.path_map.items():
                L.add(f"{_toml(prefix)} = {_toml(local)}")
        for part, s, status, outcome, line in rows_out:
            if s is not None:
                part.add(s, status, outcome, Where("config.toml", line) if line else None)
        return L.text()

    def _output_of(self, ch: Channel) -> str | None:
        m = self.mapped(ch["outputfolder"].get("path"))
        return self.target(m) if m is not None else None

    def _part(self, ch: Channel) -> Part:
        return self.parts_by_node[id(ch.node)]

    # -- schedules --------------------------------------------------------------------------------------
    def _schedule(self, sec: Section, part: Part, what: str) -> tuple[object | None, str, list[tuple[Part, Setting | tuple[str, int], str, str]]]:
        """RunSchedule as a flowd schedule: (value or None for "always", comment, report rows)."""
        rows: list[tuple[Part, Setting | tuple[str, int], str, str]] = []
        if not sec:
            return None, "", rows
        mode = sec.choice("mode", ("RunAlways", "RunOnce", "RunWithDelay", "Hourly", "Daily", "Weekly", "Monthly"),
                          "RunAlways")
        ms = sec.get("mode")
        minute = int(sec.number("minute", 0, 0, 59) or 0)
        hour = int(sec.number("hour", 0, 0, 23) or 0)
        tz = {"timezone": self.o.timezone} if self.o.timezone else {}
        value: object | None
        used = ["mode"]
        if mode == "RunAlways":
            value, text = None, "on arrival (run = \"always\", the default)"
        elif mode == "RunOnce":
            value, text = "once", "run = \"once\": what is there at the next start, then the folder is disabled"
        elif mode == "RunWithDelay":
            seconds = sec.number("seconds", 60, 1, 86400 * 7)
            used.append("seconds")
            value, text = {"every": f"{_int(seconds or 60)}s"}, f"every {_int(seconds or 60)} s"
        elif mode == "Hourly":
            used.append("minute")
            value, text = {"cron": f"{minute} * * * *", **tz}, f"hourly at minute {minute}"
        elif mode == "Daily":
            used += ["minute", "hour"]
            value, text = {"cron": f"{minute} {hour} * * *", **tz}, f"daily at {hour:02d}:{minute:02d}"
        elif mode == "Weekly":
            day = sec.choice("weekday", WEEKDAYS, "Monday") or "Monday"
            used += ["minute", "hour", "weekday"]
            value = {"cron": f"{minute} {hour} * * {WEEKDAYS.index(day)}", **tz}
            text = f"weekly on {day} at {hour:02d}:{minute:02d}"
        else:
            dom = int(sec.number("day", 1, 1, 31) or 1)
            used += ["minute", "hour", "day"]
            value = {"cron": f"{minute} {hour} {dom} * *", **tz}
            text = f"monthly on day {dom} at {hour:02d}:{minute:02d}" + (
                " (skipped in shorter months, as Color Factory does)" if dom > 28 else "")
        zone = f" ({self.o.timezone})" if self.o.timezone and isinstance(value, dict) and "cron" in value else (
            " (the machine's time zone; --timezone sets one)" if isinstance(value, dict) and "cron" in value else "")
        for key in used:
            s = sec.get(key)
            if s is not None:
                rows.append((part, s, "mapped", f"{what}: {text}{zone}"))
        for s in sec.unread():
            rows.append((part, s, "not carried", f"not used by mode {mode}"))
            sec.used.add(s.attr.lower())
        if ms is None and sec:
            rows.append((part, (f"{sec.name} (no mode)", sec.line), "mapped", "RunAlways, the console's default"))
        return value, f"RunSchedule {mode}", rows

    # -- channel rules ----------------------------------------------------------------------------------
    def _folder_rules(self, L: Lines, rel: str, f: Folder, parts: dict[int, Part]) -> None:
        channels = sorted(f.channels[1:], key=lambda c: PRIORITY_ORDER.get(_priority(c) or "Medium", 1))
        channels = [f.channels[0], *channels]
        # minimum size: one quarantine rule first, from the master's setting.
        ms = f.master["errorhandling"].get("minfilesizebytes")
        minimum = number(ms, self.x.warnings, None, 0, 2**40) if ms else None
        if ms is not None and minimum:
            name = self._rule_name(f"{f.name}-too-small")
            L.add("")
            L.note(f"{f.master.title}: files smaller than {_int(minimum)} bytes go straight to the Error folder.", "  ")
            L.add(f"  - name: {name}")
            L.add(f"    description: {scalar('Color Factory minimum file size of ' + f.master.title)}")
            L.add(f"    on: [{{hotfolder: {f.name}}}]")
            line = L.add(f"    if: {{size: {{lt: {_int(minimum)}}}}}", ms.label)
            L.add("    do:")
            L.add(f"      - quarantine: {{reason: {scalar(f'smaller than {_int(minimum)} bytes (the channel minimum file size)')}}}")
            L.add("    stop: true", "the other channels do not see it")
            parts[id(f.master)].add(ms, "mapped", f"a first rule `{name}` quarantining smaller files into the "
                                                  "hot folder's errors folder", Where(rel, line))
            parts[id(f.master)].rule_names.append(name)
        elif ms is not None:
            parts[id(f.master)].add(ms, "mapped", "no minimum (0)")
        for c in f.channels[1:]:
            s = c["errorhandling"].get("minfilesizebytes")
            if s is not None and (ms is None or s.value != ms.value):
                parts[id(c)].add(s, "not carried", "the minimum file size belongs to the input folder: the master's "
                                                   "applies")
        for ch in channels:
            ChannelRules(self, ch, f, L, rel, parts[id(ch)]).write()
        return

    def _rule_name(self, base: str) -> str:
        name = _unique(_slug(base)[:64].strip("-") or "channel", self.rule_names)
        self.rule_names.add(name)
        return name

    # -- purging channels -------------------------------------------------------------------------------
    def _purge(self, L: Lines, rel: str, p: Purge, part: Part) -> None:
        main = p.main
        name = self._rule_name(p.name)
        part.rule_names.append(name)
        folder = main.get("folder")
        m = self.mapped(folder)
        L.add("")
        L.note(f"{p.title} (export line {p.node.line})", "  ")
        L.add(f"  - name: {name}")
        L.add(f"    description: {scalar(p.title)}")
        enabled = main.flag("enabled", True)
        es = main.get("enabled")
        no_target = main.choice("action", ("Delete", "Move"), "Delete") == "Move" and self.mapped(main.get("moveto")) is None
        off = "it names no folder" if m is None else "action Move names no moveTo folder" if no_target else ""
        if es is not None:
            if not enabled:
                part.add(es, "mapped", "enabled: false", Where(rel, L.add("    enabled: false", es.label)))
            else:
                part.add(es, "mapped", f"enabled, but the rule is off: {off}" if off else "the rule is enabled")
        if off:
            self.x.warnings.add(p.node.line, f"{p.title}: {off}: its rule is written switched off (enabled: false)")
            if enabled:
                L.add("    enabled: false", f"{off}: nothing to purge safely")
        run, comment, rows = self._schedule(p.schedule, part, "the sweep's schedule")
        if isinstance(run, dict):
            line = L.add(f"    on: [{{schedule: {flow(run)}}}]", comment)
        elif run == "once" or run is None:
            # A purge has no "on arrival": RunAlways/RunOnce sweep once a minute / by hand.
            run = {"every": "60s"} if run is None else None
            line = L.add(f"    on: [{{schedule: {flow(run)}}}]", "RunAlways: a sweep every minute") if run else \
                L.note("RunOnce: no schedule; run it with `flowd sweep " + name + "`", "    ")
        else:
            line = 0
        once = p.schedule and p.schedule.text("mode", "").lower() == "runonce"  # type: ignore[union-attr]
        for prt, src, status, outcome in rows:
            if run == {"every": "60s"}:
                outcome = "a sweep every minute (purging has no 'on arrival')"
            elif once:
                outcome = f"no schedule: run it once by hand, `flowd sweep {name}`"
            prt.add(src, status, outcome, Where(rel, line) if line else None)
        if not p.schedule:
            part.add((f"{p.node.name} (no RunSchedule)", p.node.line), "approximated",
                     "RunAlways assumed: a sweep every minute", Where(rel, line))
        over: dict[str, object] = {}
        if m is None:
            L.add(f"    over: {{folder: {scalar('var/purge-without-folder')}}}", "the purging channel names no folder")
            part.add((f"{p.node.name} (no folder)", p.node.line), "not carried",
                     "no folder: the rule is written switched off, over a placeholder folder")
        elif m.local is not None:
            over["folder"] = m.local
        else:
            over["storage"] = self.target(m)
        recursive = main.flag("includesubfolders", False)
        over["recursive"] = recursive
        keep = main.number("maxfiles", None, 1, 10**9)
        if keep:
            over["keep_newest"] = int(keep)
        prune = main.flag("deleteemptysubfolders", False)
        if prune and m is not None and m.local is not None:
            over["remove_empty_folders"] = True
        line = L.add(f"    over: {flow(over)}", folder.label if folder else None) if m is not None else line
        if folder is not None and m is not None:
            part.add(folder, "mapped", "the sweep's folder", Where(rel, line))
        for key, outcome in (("includesubfolders", f"recursive: {str(recursive).lower()}"),
                             ("maxfiles", f"keep_newest: {int(keep) if keep else '-'} (what lies beyond the newest "
                                          "files is purged)" if keep else "no count limit")):
            s = main.get(key)
            if s is not None:
                part.add(s, "mapped", outcome, Where(rel, line))
        s = main.get("deleteemptysubfolders")
        if s is not None:
            if prune and m is not None and m.local is None:
                part.add(s, "not carried", "storage prefixes have no folders to remove", Where(rel, line))
            else:
                part.add(s, "mapped", f"remove_empty_folders: {str(prune).lower()}", Where(rel, line))
        conds: list[tuple[str, str | None, Setting | None, str]] = []
        days = main.number("maxagedays", None, 0, 100000)
        minutes = main.number("maxageminutes", None, 0, 10**8)
        if days:
            conds.append((f"age: {{gt: {_int(days)}d}}", None, main.get("maxagedays"), f"age > {_int(days)} days"))
        if minutes:
            conds.append((f"age: {{gt: {_int(minutes)}m}}", None, main.get("maxageminutes"),
                          f"age > {_int(minutes)} minutes" + (" (both ages must hold)" if days else "")))
        if keep and (days or minutes):
            part.add((f"{p.node.name} maxFiles with an age", p.node.line), "approximated",
                     f"a file is purged when it lies beyond the newest {int(keep)} and is older than the age (both "
                     "must hold); a second rule would purge by age alone")
        for key, val in (("maxagedays", days), ("maxageminutes", minutes)):
            s = main.get(key)
            if s is not None and not val:
                part.add(s, "mapped", "no age limit")
        f = p.filters
        patterns = []
        for pat in (f.text("patterns") or "").split():
            try:
                compile_glob(pat)
                patterns.append(pat)
            except GlobError as err:
                self.x.warnings.add(f.line, f"{p.title}: name pattern {pat!r} cannot be used ({err}): left out")
        if patterns:
            conds.append((f"name: {flow(patterns)}", None, f.get("patterns"), "name patterns"))
        inc = _extensions(f.text("includeextensions"))
        if inc:
            conds.append((f"extension: {flow(inc)}", None, f.get("includeextensions"), "only these extensions"))
        exc = _extensions(f.text("excludeextensions"))
        if exc:
            conds.append((f"not: {{extension: {flow(exc)}}}", None, f.get("excludeextensions"), "never these extensions"))
        if not conds and not keep:
            L.note("no age, count or name limit in Color Factory: everything in the folder is purged", "    ")
        if conds:
            L.add("    if:")
            for text, _c, s, outcome in conds:
                line = L.add(f"      - {text}", s.label if s else None)
                if s is not None:
                    part.add(s, "mapped", outcome, Where(rel, line))
        action = main.choice("action", ("Delete", "Move"), "Delete")
        acts = main.get("action")
        L.add("    do:")
        moveto = main.get("moveto")
        if action == "Move":
            mm = self.mapped(moveto)
            if mm is None:
                line = L.add("      - delete: {}", "a placeholder: the rule is off until a move target is set")
                if acts:
                    part.add(acts, "not carried", "action Move without a moveTo folder: the rule is disabled "
                                                  "(enabled: false) until you give it a move target",
                             Where(rel, line))
            else:
                target = self.target(mm)
                sub = "{relpath}" if recursive else "{name}"
                line = L.add(f"      - move: {flow({'to': _join(target, sub), 'conflict': 'increment'})}",
                             moveto.label if moveto else None)
                if acts:
                    part.add(acts, "mapped", "move", Where(rel, line))
                if moveto:
                    part.add(moveto, "mapped", "the move's target (keeping subfolders)", Where(rel, line))
        else:
            line = L.add("      - delete: {}", acts.label if acts else "action Delete (the default)")
            if acts:
                part.add(acts, "mapped", "delete", Where(rel, line))
            if moveto:
                part.add(moveto, "not carried", "action is Delete: nothing is moved")
        for sec in (main, p.schedule, f):
            for s in sec.unread():
                if s.attr.lower() != "name":
                    part.add(s, "not carried", "not used by the importer")
        ns = main.get("name")
        if ns is not None:
            part.add(ns, "mapped", f"rule name `{name}` and its description")


@dataclass
class ChannelRules:
    """One channel: its rule (or rules: required-fields routing makes two) on its hot folder."""

    imp: Importer
    ch: Channel
    folder: Folder
    L: Lines
    rel: str
    part: Part
    pending: list[tuple[Setting | tuple[str, int], str, str]] = field(default_factory=list)
    nothing: bool = False  # every input format goes to Unknown: the rule matches nothing

    def write(self) -> None:
        ch, part = self.ch, self.part
        output = ch["outputfolder"].get("path")
        om = self.imp.mapped(output)
        if om is None:
            part.add((f"{ch.node.name} (no OutputFolder path)", ch.line), "not carried",
                     "no output folder: the channel is not imported")
            self.imp.x.warnings.add(ch.line, f"{ch.title} has no <OutputFolder path=...>: not imported")
            self._mark(*ch.sections.values(), why="the channel is not imported (no output folder)")
            return
        out = self.imp.target(om)
        name = self.imp._rule_name(ch.name)
        part.rule_names.append(name)
        route, required = self._routing()
        conds = self._conditions()
        steps = self._steps(out)
        if required is not None:  # files missing a required field: a rule of their own, first
            missing = self.imp._rule_name(f"{name}-missing-text")
            part.rule_names.append(missing)
            self._rule(missing, "missing", out, steps, route, required, conds)
        self._rule(name, "main", out, steps, route, required, conds)
        ns = ch.attr("name")
        if ns is not None:
            part.add(ns, "mapped", f"rule name `{name}` and its description")
        for sec in ch.sections.values():
            for s in sec.unread():
                part.add(s, "not carried", "read but not used by the importer (please report this)")
                sec.used.add(s.attr.lower())

    # .. the parts of a rule ..............................................................................
    def _rule(self, name: str, kind: str, out: str, steps: list[Any], route: list[tuple[str, Setting | tuple[str, int] | None, str]],
              required: Any, conds: list[tuple[str, Setting | tuple[str, int] | None, str]]) -> None:
        L, ch, part, rel = self.L, self.ch, self.part, self.rel
        main = kind == "main"
        L.add("")
        L.note(f"{ch.title}, export line {ch.line}" + ("" if main else ": files missing a required field"), "  ")
        L.add(f"  - name: {name}")
        L.add(f"    description: {scalar(ch.title)}")
        L.add(f"    on: [{{hotfolder: {self.folder.name}}}]",
              None if ch is self.folder.master else f"masterChannel={ch.master}" if ch.master else
              "shares the input folder")
        es = ch.attr("enabled")
        if not _on(ch) or self.nothing:
            why = es.label if es and not _on_value(es.value) else "its channel group is disabled" if not _on(ch) else \
                "every input format is MoveToUnknown: the channel processes nothing"
            line = L.add("    enabled: false", why)
            if main and es is not None:
                part.add(es, "mapped", "enabled: false (the rule is kept, switched off)" if not _on_value(es.value)
                         else "enabled, but the rule is off: " + why, Where(rel, line))
        elif main and es is not None:
            part.add(es, "mapped", "the rule is enabled")
        pr = ch.attr("priority")
        if main and pr is not None:
            part.add(pr, "approximated", "flowd has no priority share: the channel's rule is ordered by priority "
                                         "among the rules of its hot folder, and every rule runs on every file")
        all_conds = list(conds)
        if required is not None:
            fields, _pre, _miss, rs = required
            all_conds.append((f"required_fields: {flow(fields)}" if main else
                              f"not: {{required_fields: {flow(fields)}}}", rs, "required fields"))
        if all_conds:
            L.add("    if:")
            for text, s, outcome in all_conds:
                line = L.add(f"      - {text}", s.label if isinstance(s, Setting) else (s[0] if s else None))
                if main and s is not None:
                    part.add(s, "mapped", outcome, Where(rel, line))
        L.add("    do:")
        for step in steps:
            text, rows = step
            if isinstance(text, list):
                first = True
                keys = {t for t, _c in text}
                for t, comment in text:
                    line = L.add(f"      {'- ' if first else '  '}{t}", comment)
                    first = False
                    for s, status, outcome, key in rows:
                        if key == t and main:
                            part.add(s, status, outcome, Where(rel, line))
                if main:  # settings that became no line of their own (a JPEG quality a TIFF has no use for)
                    for s, status, outcome, key in rows:
                        if key not in keys:
                            part.add(s, status, outcome)
            else:
                line = L.add(f"      - {text}", rows[0][0].label if rows and isinstance(rows[0][0], Setting) else None)
                if main:
                    for s, status, outcome, _k in rows:
                        part.add(s, status, outcome, Where(rel, line))
        # The final store: the output folder + the routing stack.
        segments = [seg for seg, _s, _o in route]
        if required is not None and not main:
            _f, pre, miss, rs = required
            segments = [seg for seg, _s, _o in route[:pre]] + [_seg(miss)]
        mirror = ch["inputfolder"].flag("mirrorsubfolders", False) if ch is self.folder.master else \
            self.folder.master["inputfolder"].flag("mirrorsubfolders", False)
        if mirror:
            segments.append("{reldir}")
        to = _join(out, *segments, "{name}")
        fn = ch["filenameoptions"]
        overwrite = fn.flag("overwriteexisting", False)
        spec: dict[str, object] = {"to": to, "conflict": "overwrite" if overwrite else "increment"}
        digits = fn.number("counterdigits", None, 1, 9)
        if digits and not overwrite:
            spec["digits"] = int(digits)
        keep_mtime = ch["inputfolder"].flag("copyfiledate", False)
        if keep_mtime:
            spec["keep_mtime"] = True
        line = L.add(f"      - store: {flow(spec)}", "OutputFolder path + AutoRouting + FileNameOptions")
        if not main:
            return
        where = Where(rel, line)
        if om_s := ch["outputfolder"].get("path"):
            part.add(om_s, "mapped", f"the final store's target {out}", where)
        for _, s, outcome in route:
            if s is not None:
                part.add(s, "mapped", outcome, where)
        ms = (ch if ch is self.folder.master else self.folder.master)["inputfolder"].get("mirrorsubfolders")
        if ms is not None and ch is self.folder.master:
            part.add(ms, "mapped", "{reldir} in the target: subfolders are mirrored" if mirror else "not mirrored",
                     where)
        s = fn.get("overwriteexisting")
        if s is not None:
            part.add(s, "mapped", f"conflict: {spec['conflict']}", where)
        s = fn.get("counterdigits")
        if s is not None:
            part.add(s, "mapped" if digits and not overwrite else "not carried",
                     f"conflict: increment with digits: {int(digits)} (name_001.jpg)" if digits and not overwrite
                     else "counters apply when existing files are not overwritten", where)
        s = ch["inputfolder"].get("copyfiledate")
        if s is not None:
            part.add(s, "mapped", "keep_mtime: true (the output keeps the input's modification time)" if keep_mtime
                     else "outputs get the time they are written", where)

    def _conditions(self) -> list[tuple[str, Setting | tuple[str, int] | None, str]]:
        """The files this channel processes: its input file formats as conditions."""
        ch = self.ch
        ff = ch["inputfileformats"]
        out: list[tuple[str, Setting | tuple[str, int] | None, str]] = []
        self.modes: dict[str, str] = {}
        self.copy_families: list[str] = []
        defaults = {"rgb": "Normal", "cmyk": "Normal", "grayscale": "Normal", "raw": "MoveToUnknown",
                    "pdf": "MoveToUnknown", "movies": "MoveToUnknown", "vector": "MoveToUnknown",
                    "unknown": "MoveToUnknown"}
        chosen = {k: ff.choice(k, MODES, v) or v for k, v in defaults.items()}
        colors = []
        for key, mode in (("rgb", "rgb"), ("cmyk", "cmyk"), ("grayscale", "gray")):
            c = chosen[key]
            s = ff.get(key)
            if c == "MoveToUnknown":
                if s is not None:
                    self.pending.append((s, "mapped", f"{mode} files do not match the rule: the hot folder's "
                                                     "unmatched folder (Unknown) takes them"))
                continue
            colors.append(mode)
            self.modes[mode] = {"Normal": "process", "NoPixelProcessing": "metadata_only", "Copy": "copy",
                                "Ignore": "skip"}[c]
            if s is not None:
                self.pending.append((s, "mapped" if c != "Ignore" else "approximated",
                                     {"Normal": "convert modes: process",
                                      "NoPixelProcessing": "convert modes: metadata_only (metadata and routing only)",
                                      "Copy": "convert modes: copy (passed on untouched)",
                                      "Ignore": "convert modes: skip (the rule stops for these files, leaving them "
                                                "to other channels; with none, the hot folder's unmatched setting "
                                                "applies)"}[c]))
        formats = list(RASTER)
        families = []
        for fam in ("raw", "pdf", "movies", "vector", "unknown"):
            c = chosen[fam]
            s = ff.get(fam)
            if c in ("Copy", "Normal", "NoPixelProcessing"):
                families.append(fam)
                if s is not None:
                    self.pending.append((s, "mapped" if c == "Copy" else "approximated",
                                         f"{fam} files are copied unprocessed (the rule matches them; convert passes "
                                         "them on untouched)" + ("" if c == "Copy" else
                                                                 f": flowd does not render {fam} files")))
            elif s is not None:
                self.pending.append((s, "mapped" if c == "MoveToUnknown" else "approximated",
                                     f"{fam} files do not match the rule: the hot folder's unmatched folder takes them"
                                     if c == "MoveToUnknown" else f"{fam} files do not match this rule (ignored)"))
        self.copy_families = families
        if not colors and not families:
            self.nothing = True
            out.append(("size: {lt: 0}", ("InputFileFormats (every mode MoveToUnknown)", ff.line or ch.line),
                        "nothing is processed: the rule matches no file and is disabled"))
            return out
        exts = [e for fam in ("raw", "movies", "vector") for e in FAMILY_EXTENSIONS[fam]]
        if families:
            alts = []
            if colors:
                alts.append({"format": formats} if len(colors) == 3 else
                            {"all": [{"format": formats}, {"image": {"color": colors}}]})
            for fam in families:
                if fam == "pdf":
                    alts.append({"format": ["pdf"]})
                elif fam == "unknown":
                    alts.append({"all": [{"format": ["unknown", "xml", "text", "zip"]},
                                         {"not": {"extension": exts}}]})
                else:
                    alts.append({"extension": FAMILY_EXTENSIONS[fam]})
            out.append((f"any: {flow(alts)}", ("InputFileFormats", ff.line or ch.line),
                        "the files this channel takes (colour modes and families)"))
        else:
            out.append((f"format: {flow(formats)}", ("InputFileFormats", ff.line or ch.line) if ff else None,
                        "raster images; other families go to Unknown"))
            if len(colors) < 3:
                out.append((f"image: {{color: {flow(colors)}}}", None, ""))
            out.append((f"not: {{extension: {flow(FAMILY_EXTENSIONS['raw'])}}}", None, ""))
        return out

    def _routing(self) -> tuple[list[tuple[str, Setting | tuple[str, int] | None, str]], Any]:
        """The AutoRouting stack as path segments; required fields as (fields, index, missing folder, setting)."""
        ch, part = self.ch, self.part
        routes = ch["autorouting"].children("routing")
        segs: list[tuple[str, Setting | tuple[str, int] | None, str]] = []
        required = None
        for node in routes:
            sec = Section("routing", [(node, None)], self.imp.x.warnings)
            kind = sec.choice("type", ("FileNamePrefix", "Metadata", "RequiredFields", "YearMonthDay", "DayOfWeek",
                                       "DayOfMonth", "FolderSize"), None)
            ts = sec.get("type")
            label = f'Routing type="{ts.value if ts else "?"}"' + (f' name="{sec.text("name")}"' if sec.text("name") else "")
            here = (label, node.line)
            self.imp.cover(node)
            sec.get("name")
            if kind == "FileNamePrefix":
                length = sec.number("length", None, 1, 64)
                sep = sec.text("separator")
                strip = sec.flag("stripprefix", False)
                table = {m.attrs["value"].value: m.attrs["folder"].value for m in node.children
                         if m.tag == "map" and "value" in m.attrs and "folder" in m.attrs}
                by = str(int(length)) if length else (sep or "_")
                if length and sep:
                    s_ = sec.get("separator")
                    if s_ is not None:
                        part.add(s_, "not carried", "a fixed length is given: the separator is not used")
                mapname = self._map(table, "", f"prefix-{self._slugname()}") if table else ""
                segs.append((f"{{source_prefix:{by}|map:{mapname}}}" if table else f"{{source_prefix:{by}}}", here,
                             f"prefix {'of ' + by + ' characters' if length else 'up to ' + repr(by)} -> folder "
                             f"(map `{mapname}`; an unlisted prefix adds no folder)" if table else
                             "the prefix itself as a folder"))
                if strip:
                    self.strip_prefix = by
            elif kind == "Metadata":
                fld = sec.text("field")
                unlisted = sec.flag("addunlistedvalues", False)
                table = {m.attrs["value"].value: m.attrs["folder"].value for m in node.children
                         if m.tag == "map" and "value" in m.attrs and "folder" in m.attrs}
                if not fld or not self._field_ok(fld, node.line, "routing field"):
                    part.add(here, "not carried", f"no usable field ({fld!r})")
                    continue
                if not table:
                    if unlisted:
                        segs.append((f"{{meta.{fld}}}", here, f"field {fld} -> a folder per value"))
                    else:
                        part.add(here, "not carried", "no value table and no unlisted values: adds no folder")
                        continue
                else:
                    mapname = self._map(table, "{value}" if unlisted else "", f"meta-{self._slugname()}")
                    segs.append((f"{{meta.{fld}|map:{mapname}}}", here,
                                 f"field {fld} -> folder (map `{mapname}`"
                                 + ("; unlisted values as their own folder)" if unlisted
                                    else "; unlisted values add no folder)")))
            elif kind == "RequiredFields":
                fields = [m.attrs["id"].value.strip() for m in node.children if m.tag == "field" and "id" in m.attrs]
                fields = [f for f in fields if self._field_ok(f, node.line, "required field")]
                miss = sec.text("missingfolder", "Required text missing") or "Required text missing"
                if fields:
                    required = ([int(f) if f.isdigit() else f for f in fields], len(segs), miss, here)
                else:
                    part.add(here, "not carried", "no required fields listed")
            elif kind == "YearMonthDay":
                source = sec.choice("datesource", ("System", "File", "Metadata"), "System") or "System"
                long = sec.flag("longnames", False)
                fmt = "%Y/%B/%d" if long else "%Y/%m/%d"
                fld = sec.text("field")
                if source == "Metadata" and fld and fld not in ("55",) and self._field_ok(fld, node.line, "date field"):
                    segs.append((f"{{meta.{fld}:{fmt}}}", here, f"year/month/day of field {fld}"))
                else:
                    segs.append((f"{{date:{source.lower()}:{fmt}}}", here,
                                 f"year/month/day from the {source.lower()} date, {'long' if long else 'short'} month "
                                 "names" if long else f"year/month/day from the {source.lower()} date"))
            elif kind == "DayOfWeek":
                source = sec.choice("datesource", ("System", "File", "Metadata"), "System") or "System"
                segs.append((f"{{weekday:{source.lower()}}}", here, "the weekday as a folder"))
            elif kind == "DayOfMonth":
                source = sec.choice("datesource", ("System", "File", "Metadata"), "System") or "System"
                segs.append((f"{{day:{source.lower()}}}", here, "the day of the month as a folder"))
            elif kind == "FolderSize":
                part.add(here, "not carried", "folder-size buckets (a new folder every N files) are not supported: "
                                              "the files go to the folder the rest of the stack builds")
                sec.get("maxfiles")
                sec.get("levels")
                continue
            else:
                part.add(here, "not carried", "unknown routing type")
                continue
            for s in sec.unread():
                part.add(s, "not carried", f"not used by routing type {kind}")
        return segs, required

    def _slugname(self) -> str:
        return _slug(self.ch.name)[:40] or _slug(self.ch.id)

    def _map(self, table: dict[str, str], default: str, base: str) -> str:
        """A `maps:` table of the rule file: prefix or field value -> folder. A map entry may only hold the
        placeholder {value}: braces in a folder name become '_'."""
        maps = self.imp.maps
        name = _unique(base, set(maps))
        clean = {}
        for k, v in table.items():
            folder = _seg(v).replace("{{", "_").replace("}}", "_")
            if folder != _seg(v):
                self.imp.x.warnings.add(self.ch.line, f"{self.ch.title}: routing folder {v!r} holds braces: "
                                                      f"written as {folder!r}")
            clean[k] = folder
        maps[name] = {**clean, "*": default}
        self.maps_used = [*getattr(self, "maps_used", []), name]
        return name

    def _field_ok(self, fld: str, line: int, what: str) -> bool:
        table = self.imp.fields
        if table is None:
            return True
        try:
            table.resolve(int(fld) if fld.strip().isdigit() else fld.strip())
            return True
        except (KeyError, ValueError):
            self.imp.x.warnings.add(line, f"{self.ch.title}: {what} {fld!r} is not in the field table"
                                          + (" (give --metadata-config MetadataConfiguration.xml)"
                                             if not self.imp.o.metadata_config else ""))
            return False

    def _steps(self, out: str) -> list[Any]:
        """The actions before the final store, in Color Factory's order."""
        ch, imp = self.ch, self.imp
        steps: list[Any] = []
        inp = ch["inputfolder"]
        cs = inp.get("copyinputfileto")
        if cs is not None:
            cm = imp.mapped(cs)
            if cm is not None:
                steps.append((f"store: {flow({'to': _join(imp.target(cm), '{name}'), 'conflict': 'increment'})}",
                              [(cs, "mapped", "a first store of the untouched input", "")]))
        md = ch["metadata"]
        # Merge templates, macro, category map.
        for node in md.children("mergetext")[:1]:
            sec = Section("mergetext", [(node, None)], imp.x.warnings)
            mode = sec.choice("mode", ("LookForMatchingTextFile", "FixedTemplate", "MatchingTemplateInFolder"),
                              "LookForMatchingTextFile")
            wait = sec.number("waitseconds", 0, 0, 3600, integer=False) or 0
            overwrite = sec.flag("overwrite", False)
            here = (f'MergeText mode="{mode}"', node.line)
            imp.cover(node)
            rows = [(x, "mapped", "", "") for x in (sec.get("waitseconds"), sec.get("overwrite")) if x]
            if mode == "LookForMatchingTextFile":
                ext = sec.text("extension")
                suffixes = ["." + ext.strip().lstrip("*.")] if ext else [".xmp", ".txt"]
                spec: dict[str, object] = {"from": "sidecar", "suffixes": suffixes}
                if wait:
                    spec["wait"] = f"{_int(wait)}s"
                spec["overwrite"] = overwrite
                steps.append((f"merge_metadata: {flow(spec)}", [(here, "mapped", "merge_metadata from the sidecar "
                              "with the same base name (taken with its file)", ""), *rows,
                              *[(x, "mapped", "", "") for x in [sec.get("extension")] if x]]))
            elif mode == "FixedTemplate":
                tpl = sec.text("template")
                if tpl:
                    local = self._template_path(tpl, node.line)
                    if local:
                        steps.append((f"merge_metadata: {flow({'from': local, 'overwrite': overwrite})}",
                                      [(here, "mapped", "merge_metadata from the fixed template", ""),
                                       *[(x, "mapped", "", "") for x in [sec.get("template")] if x], *rows]))
                    else:
                        self.part.add(here, "not carried", f"the template {tpl} is not under a local --map")
                else:
                    self.part.add(here, "not carried", "no template named")
            else:
                folder = sec.text("templatefolder")
                local = self._template_path(folder, node.line) if folder else None
                if local:
                    steps.append((f"merge_metadata: {flow({'from': local.rstrip('/') + '/{stem}.xmp', 'overwrite': overwrite})}",
                                  [(here, "approximated", "merge_metadata from the template named after the file "
                                                          "(NAME.xmp in the folder)", ""),
                                   *[(x, "mapped", "", "") for x in [sec.get("templatefolder")] if x], *rows]))
                else:
                    self.part.add(here, "not carried", "the template folder is missing or not under a local --map")
            for s in sec.unread():
                self.part.add(s, "not carried", f"not used by mode {mode}")
        entries: list[tuple[str, str | None]] = []
        erows: list[tuple[Any, str, str, str]] = []
        for node in md.children("generalmetadatamacro")[:1]:
            for f in node.children:
                if f.tag != "field":
                    continue
                entry, row = self._entry(f)
                if entry is not None:
                    text = flow(entry)
                    entries.append((text, f'Field id="{f.attrs["id"].value if "id" in f.attrs else "?"}"'))
                    erows.append((row[0], row[1], row[2], text))
                else:
                    self.part.add(*row)
        fn = ch["filenameoptions"]
        to_field = fn.text("copyfilenametofield")
        if to_field and self._field_ok(to_field, fn.line, "copy-file-name-to field"):
            text = flow({"field": _num_or(to_field), "action": "replace", "value": "%%INSFILENAME"})
            entries.append((text, "FileNameOptions copyFileNameToField"))
            name_field = fn.get("copyfilenametofield")
            erows.append((name_field, "mapped", "set_metadata: the original file name into the field", text))
        if entries:
            steps.append(([("set_metadata:", None)] + [(f"  - {t}", c) for t, c in entries],
                          [(s, st, o, f"  - {k}") for s, st, o, k in erows]))
        for node in md.children("categorymapping")[:1]:
            imp.cover(node)
            table = {m.attrs["from"].value: m.attrs["to"].value for m in node.children
                     if m.tag == "map" and "from" in m.attrs and "to" in m.attrs}
            if table:
                steps.append((f"map_category: {flow({'map': table})}",
                              [((f"CategoryMapping ({len(table)} codes)", node.line), "mapped",
                                "map_category on field 15", "")]))
        conv = self._convert()
        if conv is not None:
            steps.append(conv)
        save = md.get("savemetadatawithoutputfile")
        if save is not None and not _bool(save.value):
            steps.append(("strip_metadata: {}", [(save, "mapped", "strip_metadata: the output carries no metadata", "")]))
        elif save is not None:
            self.part.add(save, "mapped", "metadata is written with the output (flowd's default)")
        ren = self._rename()
        if ren is not None:
            steps.append(ren)
        for r in self.pending:
            self.part.add(*r)
        self.pending = []
        return steps

    def _template_path(self, path: str, line: int) -> str | None:
        m = self.imp.mapper.resolve(path)
        return m.local if m is not None else None

    def _entry(self, f: Any) -> tuple[dict[str, object] | None, tuple[Any, str, str]]:
        """A macro entry as a set_metadata entry (with its condition)."""
        sec = Section("field", [(f, None)], self.imp.x.warnings)
        fid = sec.text("id")
        here = (f'Field id="{fid}" action="{sec.text("action") or "Replace"}"', f.line)
        self.imp.cover(f)
        if not fid or not self._field_ok(fid, f.line, "macro field"):
            return None, (here, "not carried", f"field {fid!r} is not known (see the warnings)")
        action = sec.choice("action", ("Clear", "Append", "Replace", "AddSubstring", "ReplaceSubstring"), "Replace")
        entry: dict[str, object] = {"field": _num_or(fid), "action": _snake(action or "Replace")}
        cs_ = sec.get("content")
        content = cs_.value if cs_ is not None else ""
        bad = unknown_codes(content)
        if bad:
            self.imp.x.warnings.add(f.line, f"{self.ch.title}: macro field {fid}: unknown dynamic code(s) "
                                            f"{', '.join(bad)}: the entry is left out")
            return None, (here, "not carried", f"unknown dynamic code(s) {', '.join(bad)}")
        if action != "Clear":
            # The content is a template for flowd: a literal brace is doubled, %%INS codes stay as they are.
            entry["value"] = content.replace("{", "{{").replace("}", "}}")
        find = sec.text("find")
        if action == "ReplaceSubstring":
            if not find:
                return None, (here, "not carried", "ReplaceSubstring without find=: nothing to replace")
            entry["find"] = find
        for c in f.children:
            if c.tag != "condition":
                continue
            cs = Section("condition", [(c, None)], self.imp.x.warnings)
            cf = cs.text("field") or fid
            op = cs.choice("operator", ("IsEmpty", "IsNotEmpty", "Contains", "Equals"), None)
            val = cs.text("value", "") or ""
            if op is None or not self._field_ok(cf, c.line, "condition field"):
                return None, (here, "not carried", "its condition cannot be read (see the warnings): the entry "
                                                   "is left out rather than applied unconditionally")
            test = {"IsEmpty": {"is_empty": True}, "IsNotEmpty": {"is_empty": False},
                    "Contains": {"contains": val}, "Equals": {"equals": val}}[op]
            entry["if"] = {"field": {_num_or(cf): test}}
        codes = re.findall(r"%%INS[A-Z]+", content)
        return entry, (here, "mapped", "set_metadata entry" + (f" ({', '.join(sorted(set(codes)))})" if codes else ""))

    def _convert(self) -> Any:
        """ColorManagement, ImageSize, Sharpening, OutputFileFormat and the colour modes as one convert."""
        ch, part = self.ch, self.part
        rows: list[tuple[Any, str, str, str]] = []
        lines: list[tuple[str, str | None]] = [("convert:", None)]
        of = ch["outputfileformat"]
        fmt = of.choice("format", OUTPUT_FORMATS, None)
        same = of.flag("usesameformatasinput", False)
        fs = of.get("format")
        qs = of.get("jpegquality")
        quality = self._quality(of)
        cm = ch["colormanagement"]
        color: dict[str, object] = {}
        targets = {k: cm.choice(k, ("ConvertToRGB", "ConvertToCMYK", "ConvertToGray", "None"), "None")
                   for k in ("rgb", "cmyk", "grayscale")}
        wanted = {v for v in targets.values() if v and v != "None"}
        outp = cm.text("outputprofile")
        if wanted:
            to = _profile(outp, wanted)
            if len(wanted) > 1:
                part.add(("ColorManagement (several targets)", cm.line), "approximated",
                         f"flowd converts every mode to one output profile: {to}")
            color["to"] = to
            space = {"srgb": "rgb", "p3": "rgb", "cmyk": "cmyk", "gray": "gray"}.get(to)
            processed = getattr(self, "modes", {})
            left = [k for k, v in targets.items() if v == "None" and {"grayscale": "gray"}.get(k, k) != space
                    and processed.get({"grayscale": "gray"}.get(k, k)) == "process"]
            if left:
                part.add((f"ColorManagement {' '.join(k + '=None' for k in left)}", cm.line), "approximated",
                         f"flowd converts every colour mode to {to}: {', '.join(left)} inputs, which Color Factory "
                         "leaves in their colour space, are converted too (InputFileFormats Copy or "
                         "NoPixelProcessing keeps them as they are)")
        inp = cm.text("inputprofile")
        if inp:
            color["assume"] = _profile(inp, set())
        if cm.flag("ignoreembeddedprofile", False):
            color["ignore_embedded"] = True
        emb = cm.get("embedoutputprofile")
        if emb is not None:
            color["embed"] = _bool(emb.value)
        size = ch["imagesize"]
        mode = size.choice("mode", ("None", "MaxPixels", "Fixed", "Percent"), "None")
        resize: dict[str, object] | None = None
        if mode == "MaxPixels" or mode == "Fixed":
            w, h = size.number("width", None, 1, 100000), size.number("height", None, 1, 100000)
            if w and h:
                resize = {"fit": [int(w), int(h)]} if mode == "MaxPixels" else \
                    {"exact": [int(w), int(h)], "upscale": True}  # a fixed size is that size, small inputs too
            elif w or h:
                resize = {"fit": [int(w or 100000), int(h or 100000)]}
        elif mode == "Percent":
            pct = size.number("percent", None, 1, 1000, integer=False)
            if pct:
                resize = {"percent": _int(pct)}
        sharpen: dict[str, object] | None = None
        sh = ch["sharpening"]
        if sh:
            flt = sh.choice("filter", ("UnsharpMask", "None"), "UnsharpMask")
            if flt == "UnsharpMask":
                sharpen = {"amount": _int(sh.number("amount", 80, 1, 500, integer=False) or 80),
                           "radius": _int(sh.number("radius", 0.8, 0.1, 100, integer=False) or 0.8),
                           "threshold": _int(sh.number("threshold", 2, 0, 255, integer=False) or 2)}
        format_spec: dict[str, object] | None
        note = ""
        if same or fmt is None:
            format_spec = {"type": "same", **({"quality": quality} if quality else {})}
            fmt_status, fmt_out = "mapped", "format: same (each file keeps its format)"
            if fmt is not None and same:
                note = f"format={fmt} applies only to inputs flowd cannot write as they are"
        else:
            format_spec, fmt_status, fmt_out = _format(fmt, quality)
        pixel = bool(color or resize or sharpen)
        copy_mode = fmt == "JPEGCopy" and not same
        modes = {k: v for k, v in getattr(self, "modes", {}).items() if v != "process"}
        if self.copy_families:
            modes["other"] = "copy"
        if copy_mode:
            rows.append((fs, "mapped", "JPEG Copy: no convert; the file is stored as it came (metadata edits "
                                       "still apply)", ""))
            if qs is not None:
                rows.append((qs, "not carried", "JPEG Copy does not re-encode", ""))
            self._mark(cm, size, sh, why="JPEG Copy does no pixel edits, in Color Factory as in flowd")
            for r in rows:
                part.add(r[0], r[1], r[2]) if r[0] is not None else None
            return None
        if not pixel and (format_spec is None or format_spec.get("type") == "same") and not modes:
            # Nothing to do to the pixels: the file goes on as it is (no re-encoding).
            for s in (fs, of.get("usesameformatasinput")):
                if s is not None:
                    part.add(s, "mapped", "no convert: the file keeps its format and bytes"
                             + (f" ({note})" if note else ""))
            if qs is not None:
                part.add(qs, "not carried", "no re-encoding, so no JPEG quality")
            self._mark(cm, size, sh)
            return None
        if color:
            lines.append((f"  color: {flow(color)}", "ColorManagement"))
            for k in ("rgb", "cmyk", "grayscale", "outputprofile", "inputprofile", "ignoreembeddedprofile",
                      "embedoutputprofile"):
                s = cm.get(k)
                if s is not None and k in ("outputprofile", "inputprofile") and not _builtin(s.value):
                    rows.append((s, "approximated", f"{s.value!r} is read as flowd's built-in "
                                 f"{_profile(s.value, wanted)} profile; for the site's own, copy its .icc file to "
                                 "this machine and name its absolute path in color", f"  color: {flow(color)}"))
                elif s is not None:
                    rows.append((s, "mapped", f"color: {flow(color)}", f"  color: {flow(color)}"))
        else:
            for k in ("rgb", "cmyk", "grayscale", "outputprofile", "inputprofile", "ignoreembeddedprofile",
                      "embedoutputprofile"):
                s = cm.get(k)
                if s is not None:
                    part.add(s, "mapped", "no colour conversion")
        if resize:
            lines.append((f"  resize: {flow(resize)}", f"ImageSize mode={mode}"))
            for k in ("mode", "width", "height", "percent"):
                s = size.get(k)
                if s is not None:
                    rows.append((s, "mapped", f"resize: {flow(resize)}", f"  resize: {flow(resize)}"))
        else:
            for k in ("mode", "width", "height", "percent"):
                s = size.get(k)
                if s is not None:
                    part.add(s, "mapped", "no resize" if mode == "None" else "incomplete size: no resize")
        s = size.get("resolution")
        if s is not None:
            part.add(s, "not carried", "flowd keeps the input's resolution (dpi) tag; it changes pixels, not dpi")
        if sharpen:
            lines.append((f"  sharpen: {flow(sharpen)}", "Sharpening UnsharpMask"))
            for k in ("filter", "amount", "radius", "threshold"):
                s = sh.get(k)
                if s is not None:
                    rows.append((s, "mapped", f"sharpen: {flow(sharpen)}", f"  sharpen: {flow(sharpen)}"))
        if format_spec is not None:
            lines.append((f"  format: {flow(format_spec)}", f"OutputFileFormat {fmt or 'same'}"))
            for s in (fs, qs, of.get("usesameformatasinput")):
                if s is not None and s is qs and "quality" not in format_spec:
                    rows.append((s, "not carried", f"no JPEG quality for format {fmt or 'same'}", ""))
                elif s is not None:
                    status = fmt_status if s is fs else "mapped"
                    rows.append((s, status, fmt_out + (f" ({note})" if note and s is fs else ""),
                                 f"  format: {flow(format_spec)}"))
        if modes:
            lines.append((f"  modes: {flow(modes)}", "InputFileFormats"))
        for p in self.pending:
            rows.append((p[0], p[1], p[2], f"  modes: {flow(modes)}" if modes else ""))
        self.pending = []
        return (lines, rows)

    def _mark(self, *secs: Section, why: str = "no pixel processing in this channel") -> None:
        """Every attribute of these sections, read or not, as not carried."""
        for sec in secs:
            seen: set[str] = set()
            for node, group in sec.nodes:
                for key, a in node.attrs.items():
                    if key not in seen and id(a) not in self.imp.x.warnings.unknown:
                        seen.add(key)
                        self.part.add(Setting(node.name, a.name, a.value, a.line, group), "not carried", why)
                        sec.used.add(key)

    def _quality(self, of: Section) -> int | None:
        s = of.get("jpegquality")
        if s is None or not s.value.strip():
            return None
        v = s.value.strip().lower()
        if v in QUALITY:
            return QUALITY[v]
        q = number(s, self.imp.x.warnings, None, 1, 100)
        return int(q) if q else None

    def _rename(self) -> Any:
        """FileNameOptions as one rename (prefix/suffix/extension, copy the name from a field, character map,
        Windows-safe characters, maximum length)."""
        ch, fn, part = self.ch, self.ch["filenameoptions"], self.part
        strip = getattr(self, "strip_prefix", None)
        spec: dict[str, object] = {}
        rows: list[tuple[Any, str, str, str]] = []
        prefix, suffix, ext = fn.text("prefix", "") or "", fn.text("suffix", "") or "", fn.text("extension")
        from_field = fn.text("copyfilenamefromfield")
        if from_field and not self._field_ok(from_field, fn.line, "copy-file-name-from field"):
            from_field = None
        extension = "." + ext.strip().lstrip(".") if ext else "{ext}"
        if from_field:
            to = f"{_tpl(prefix)}{{meta.{from_field}}}{_tpl(suffix)}{extension}"
        elif strip:
            # {unprefixed:SEP} is the name without its prefix, extension included.
            to = f"{_tpl(prefix)}{{unprefixed:{strip}}}"
            if suffix or ext:
                part.add(("FileNameOptions suffix/extension with stripPrefix", fn.line or ch.line), "not carried",
                         "a suffix or new extension after a stripped prefix is not supported: left out")
        else:
            to = f"{_tpl(prefix)}{{stem}}{_tpl(suffix)}{extension}"
        if to != "{stem}{ext}":
            spec["to"] = to
        for k, outcome in (("prefix", "rename: the prefix"), ("suffix", "rename: the suffix"),
                           ("extension", "rename: the extension"),
                           ("copyfilenamefromfield", "rename: the name from the field")):
            s = fn.get(k)
            if s is not None and s.value.strip():
                rows.append((s, "mapped", outcome, ""))
        if strip:
            rows.append((("Routing FileNamePrefix stripPrefix", fn.line or ch.line), "mapped",
                         "the name without its prefix ({unprefixed})", ""))
        chars: dict[str, str] = {}
        for cmap in fn.children("charactermap")[:1]:
            self.imp.cover(cmap)
            for m in cmap.children:
                if m.tag != "map" or "code" not in m.attrs:
                    continue
                code = m.attrs["code"].value.strip()
                rep = m.attrs["replacement"].value if "replacement" in m.attrs else ""
                try:
                    char = chr(int(code))
                except (ValueError, OverflowError):
                    self.imp.x.warnings.add(m.line, f'CharacterMap code="{code}": not a character code: ignored')
                    continue
                if char in ("/", "\x00") or (0xD800 <= ord(char) <= 0xDFFF):
                    self.imp.x.warnings.add(m.line, f'CharacterMap code="{code}": not a file-name character: ignored')
                    continue
                if any(c in rep for c in "/\\\x00"):
                    self.imp.x.warnings.add(m.line, f'CharacterMap code="{code}": the replacement {rep!r} holds a '
                                                    "path separator: '_' is used instead")
                    rep = "_"
                chars[char] = rep
            if chars:
                rows.append(((f"CharacterMap ({len(chars)} codes)", cmap.line), "mapped", "rename chars:", ""))
        if chars:
            spec["chars"] = chars
        if fn.flag("mapmaccharstounderscore", False):
            spec["windows_safe"] = True
        s = fn.get("mapmaccharstounderscore")
        if s is not None:
            rows.append((s, "mapped", f"windows_safe: {str(fn.flag('mapmaccharstounderscore')).lower()}", ""))
        given = fn.get("maxlength")
        # Color Factory's default is 31 characters, extension included; 0 reads as no limit.
        ml = None if given is not None and given.value.strip() == "0" else fn.number("maxlength", 31, 1, 255)
        if given is not None and ml is None:
            self.imp.x.warnings.add(given.line, f"{given.label}: read as no length limit")
        if ml:
            spec["max_length"] = int(ml)
            if fn.flag("cutfromleft", False):
                spec["cut"] = "left"
        if given is None:
            rows.append(((f"{fn.name} (no maxLength)" if fn else f"{ch.node.name} (no FileNameOptions)", fn.line or ch.line),
                         "mapped", "max_length: 31, Color Factory's default (the name with its extension)", ""))
        for k in ("maxlength", "cutfromleft"):
            s = fn.get(k)
            if s is not None:
                rows.append((s, "mapped", f"max_length: {int(ml)}" + (", cut: left" if spec.get("cut") else "")
                             if ml else "no length limit", ""))
        if not spec:
            for r in rows:
                part.add(r[0], r[1], r[2])
            return None
        return (f"rename: {flow(spec)}", rows)


def _join(target: str, *parts: str) -> str:
    """`lake:web` + `Sport`, `{name}` -> `lake:web/Sport/{name}`; `ap-web:` + `{name}` -> `ap-web:{name}`."""
    rest = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    return f"{target}{rest}" if target.endswith(":") else f"{target.rstrip('/')}/{rest}"


def _storage_table(name: str, kind: str) -> dict[str, Any]:
    if kind == "adls":
        env = f"FLOWD_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_CONNECTION_STRING"
        return {"kind": "adls", "connection_string_env": env,
                "_comment": f"--storage {name}=adls: set {env} (or use account_url with a credential option)"}
    return {"kind": "local", "root": f"var/storage/{name}", "_comment": f"--storage {name}=local"}


def _format(fmt: str, quality: int | None) -> tuple[dict[str, object], str, str]:
    q = {"quality": quality} if quality else {}
    match fmt:
        case "JPEG":
            return {"type": "jpeg", **q}, "mapped", "format: jpeg"
        case "JPEGProgressive":
            return {"type": "jpeg", **q, "progressive": True}, "mapped", "format: progressive jpeg"
        case "JPEGWeb":
            return {"type": "jpeg_web", **q}, "mapped", "format: jpeg_web (sRGB; drops EXIF, ICC and thumbnail, " \
                                                         "keeps IPTC/XMP)"
        case "TIFF":
            return {"type": "tiff"}, "mapped", "format: tiff (LZW)"
        case "TIFF16":
            return {"type": "tiff", "bits": 16}, "mapped", "format: 16-bit tiff"
        case "TIFFJPEG":
            return {"type": "tiff", "compression": "jpeg"}, "mapped", "format: tiff with JPEG compression"
        case "PNG":
            return {"type": "png"}, "mapped", "format: png"
        case "PSD":
            return {"type": "tiff"}, "approximated", "flowd writes no PSD: a flattened TIFF instead (layers are lost)"
        case _:
            return {"type": "tiff"}, "approximated", "flowd writes no EPS/DCS: a TIFF instead"


def _profile(value: str | None, wanted: set[str]) -> str:
    """An ICC profile name of Color Factory as flowd's built-in space or an absolute .icc path."""
    if value:
        v = value.strip()
        low = v.lower()
        if v.startswith("/") and low.endswith((".icc", ".icm")):
            return v
        if "srgb" in low or "iec61966" in low:
            return "srgb"
        if "display p3" in low or low == "p3":
            return "p3"
        if "gray" in low or "grey" in low or "dot gain" in low:
            return "gray"
        if "cmyk" in low or "fogra" in low or "coated" in low or "swop" in low or "gracol" in low:
            return "cmyk"
    if "ConvertToCMYK" in wanted:
        return "cmyk"
    if "ConvertToGray" in wanted:
        return "gray"
    return "srgb"


def _builtin(name: str) -> bool:
    """A profile name that is one of flowd's built-in spaces as it stands (or an .icc path)."""
    low = name.strip().lower()
    return low in ("srgb", "srgb iec61966-2.1", "srgb iec61966-2-1", "cmyk", "gray", "grey", "p3", "display p3") \
        or (low.startswith("/") and low.endswith((".icc", ".icm")))


def _extensions(text: str | None) -> list[str]:
    if not text:
        return []
    return list(dict.fromkeys(e.strip().lstrip("*.").lower() for e in re.split(r"[\s,;]+", text) if e.strip("*. ")))


def _on(ch: Channel) -> bool:
    """Enabled in Color Factory: the channel and its group. A value that is no boolean counts as the
    console's default, enabled (the reader warned about it)."""
    own = ch.node.attrs.get("enabled")
    group = ch.group.attrs.get("enabled") if ch.group is not None else None
    return all(a is None or a.value.strip().lower() not in ("false", "no", "0", "off", "n") for a in (own, group))


def _on_value(text: str) -> bool:
    return text.strip().lower() not in ("false", "no", "0", "off", "n")


def _priority(ch: Channel) -> str | None:
    a = ch.node.attrs.get("priority")
    return a.value.strip().capitalize() if a else None


def _bool(value: str) -> bool:
    return value.strip().lower() in ("true", "yes", "1", "on", "y")


def _int(v: float | None) -> int | float:
    if v is None:
        return 0
    return int(v) if float(v).is_integer() else v


def _num_or(text: str) -> int | str:
    t = text.strip()
    return int(t) if t.isdigit() else t


def _snake(text: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", text).lower()


def _seg(text: str) -> str:
    """A folder name from the export as one path segment of a template (braces and separators escaped)."""
    clean = text.replace("/", "_").replace("\\", "_").strip()
    clean = "_" if clean in ("", ".", "..") else clean
    return clean.replace("{", "{{").replace("}", "}}")


def _tpl(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}").replace("/", "_").replace("\\", "_")


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:56]


def _unique(base: str, taken: set[str]) -> str:
    base = base or "x"
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _toml(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


__all__ = ["Importer", "Options", "Result", "MapError"]
