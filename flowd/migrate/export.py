"""A Color Factory export as the importer reads it: channels (with their group's settings), purging channels
and global folders, each setting keeping the line it came from.

The vocabulary is FORMAT.md's (../shared/fixtures/colorfactory/): names match case-insensitively, booleans
are true/false, yes/no, on/off or 1/0, and a missing element means the console's default. Whatever is not in
the vocabulary is a warning with its line; a value of the wrong type is a warning saying which default is
used instead. Nothing here raises on a strange export except when no channel can be read at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from flowd.migrate.xmlsafe import Attr, Document, ExportError, Node

# Sections a channel (or, as defaults for its channels, a channel group) may hold.
SECTIONS: dict[str, frozenset[str]] = {
    "inputfolder": frozenset({"path", "includesubfolders", "mirrorsubfolders", "removeemptyfolders",
                              "waituntilfilestopsgrowingsec", "extractzip", "extractziptosubfolder",
                              "copyinputfileto", "copyfiledate"}),
    "outputfolder": frozenset({"path"}),
    "outputfileformat": frozenset({"format", "jpegquality", "usesameformatasinput"}),
    "runschedule": frozenset({"mode", "seconds", "minute", "hour", "weekday", "day"}),
    "inputfileformats": frozenset({"rgb", "cmyk", "grayscale", "raw", "pdf", "movies", "vector", "unknown"}),
    "errorhandling": frozenset({"errorfolder", "unknownfolder", "minfilesizebytes", "disableofflinedetection"}),
    "colormanagement": frozenset({"rgb", "cmyk", "grayscale", "inputprofile", "ignoreembeddedprofile",
                                  "outputprofile", "embedoutputprofile"}),
    "imagesize": frozenset({"mode", "width", "height", "percent", "resolution"}),
    "sharpening": frozenset({"filter", "amount", "radius", "threshold"}),
    "metadata": frozenset({"savemetadatawithoutputfile"}),
    "autorouting": frozenset(),
    "filenameoptions": frozenset({"maxlength", "cutfromleft", "overwriteexisting", "mapmaccharstounderscore",
                                  "copyfilenametofield", "copyfilenamefromfield", "prefix", "suffix", "extension",
                                  "counterdigits"}),
    "jobrequestfiles": frozenset({"enabled", "writeresultfile", "ignorecropandsize"}),
}
# Elements below the sections: (parent, tag) -> attributes, and which children each may hold.
NESTED: dict[tuple[str, str], frozenset[str]] = {
    ("metadata", "generalmetadatamacro"): frozenset(),
    ("generalmetadatamacro", "field"): frozenset({"id", "action", "content", "find"}),
    ("field", "condition"): frozenset({"field", "operator", "value"}),
    ("metadata", "mergetext"): frozenset({"mode", "extension", "template", "templatefolder", "waitseconds",
                                          "overwrite"}),
    ("metadata", "categorymapping"): frozenset(),
    ("categorymapping", "map"): frozenset({"from", "to"}),
    ("autorouting", "routing"): frozenset({"type", "name", "length", "separator", "stripprefix", "field",
                                           "addunlistedvalues", "missingfolder", "datesource", "longnames",
                                           "maxfiles", "levels"}),
    ("routing", "map"): frozenset({"value", "folder"}),
    ("routing", "field"): frozenset({"id"}),
    ("filenameoptions", "charactermap"): frozenset(),
    ("charactermap", "map"): frozenset({"code", "replacement"}),
    ("purgingchannel", "runschedule"): SECTIONS["runschedule"],
    ("purgingchannel", "namefilters"): frozenset({"patterns", "includeextensions", "excludeextensions"}),
}
TOP: dict[str, frozenset[str]] = {
    "globalfolders": frozenset({"baseimagefolder", "errorfolder", "unknownfolder", "tempfolder"}),
    "processenvironment": frozenset({"maxprocesses", "prioritysharehigh", "prioritysharemedium",
                                     "prioritysharelow", "colorengine"}),
    "processchannels": frozenset(),
    "purgingchannels": frozenset(),
}
# Every attribute a tag may have, wherever it stands (for what a translator left unread).
KNOWN: dict[str, frozenset[str]] = dict(SECTIONS)
for (_parent, _tag), _attrs in NESTED.items():
    KNOWN[_tag] = KNOWN.get(_tag, frozenset()) | _attrs
CHANNEL_ATTRS = frozenset({"id", "name", "enabled", "priority", "masterchannel"})
GROUP_ATTRS = frozenset({"name", "enabled"})
PURGE_ATTRS = frozenset({"name", "enabled", "folder", "includesubfolders", "deleteemptysubfolders", "maxagedays",
                         "maxageminutes", "maxfiles", "action", "moveto"})
KNOWN["purgingchannel"] = PURGE_ATTRS
ROOT_ATTRS = frozenset({"version", "source"})
ROOT = "colorfactoryconfiguration"

TRUE = ("true", "yes", "1", "on", "y")
FALSE = ("false", "no", "0", "off", "n", "")


@dataclass(frozen=True, slots=True)
class Setting:
    """One attribute of the export: `InputFolder includeSubfolders="true"` on line 8."""

    element: str
    attr: str
    value: str
    line: int
    group: str | None = None  # inherited from this channel group

    @property
    def label(self) -> str:
        return f'{self.element} {self.attr}="{self.value}"'


@dataclass
class Warnings:
    """What the reader tolerated, each with the line it is on; the report lists them all."""

    items: list[tuple[int, str]] = field(default_factory=list)
    unknown: set[int] = field(default_factory=set)  # id() of Attr and Node objects already warned about
    _seen: set[tuple[int, str]] = field(default_factory=set)

    def add(self, line: int, message: str) -> None:
        if (line, message) not in self._seen:  # a value read twice is one warning
            self._seen.add((line, message))
            self.items.append((line, message))


class Section:
    """A channel's section (`ImageSize` ...), looked up in the channel first, then in its group: a group's
    settings apply to all its channels, attribute by attribute. Every value read is remembered, so what the
    translator never looked at is reported rather than silently dropped."""

    def __init__(self, tag: str, nodes: Sequence[tuple[Node, str | None]], warnings: Warnings) -> None:
        self.tag = tag
        self.nodes = list(nodes)  # (node, group name if inherited), the channel's own first
        self.warnings = warnings
        self.used: set[str] = set()

    @property
    def name(self) -> str:
        return self.nodes[0][0].name if self.nodes else self.tag

    @property
    def line(self) -> int:
        return self.nodes[0][0].line if self.nodes else 0

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def get(self, attr: str) -> Setting | None:
        self.used.add(attr)
        for node, group in self.nodes:
            a = node.attrs.get(attr)
            if a is not None:
                return Setting(node.name, a.name, a.value, a.line, group)
        return None

    def text(self, attr: str, default: str | None = None) -> str | None:
        s = self.get(attr)
        return s.value if s is not None and s.value != "" else default

    def flag(self, attr: str, default: bool = False) -> bool:
        s = self.get(attr)
        return boolean(s, self.warnings, default)

    def number(self, attr: str, default: float | None = None, lo: float | None = None,
               hi: float | None = None, integer: bool = True) -> float | None:
        s = self.get(attr)
        return number(s, self.warnings, default, lo, hi, integer)

    def choice(self, attr: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        """One of `choices` (case-insensitive, returned as spelt there) or the default with a warning."""
        s = self.get(attr)
        if s is None or s.value == "":
            return default
        for c in choices:
            if c.lower() == s.value.lower():
                return c
        self.warnings.add(s.line, f"{s.label}: unknown value; allowed: {', '.join(choices)}; "
                                  f"{'the default ' + repr(default) + ' is used' if default else 'ignored'}")
        return default

    def children(self, tag: str) -> list[Node]:
        """Child elements of the channel's own section, else of the group's."""
        for node, _group in self.nodes:
            found = [c for c in node.children if c.tag == tag]
            if found:
                return found
        return []

    def unread(self) -> Iterator[Setting]:
        """Attributes present but never looked at by the translator."""
        seen: set[str] = set()
        for node, group in self.nodes:
            for key, a in node.attrs.items():
                if key not in self.used and key not in seen and key in KNOWN.get(self.tag, frozenset()):
                    seen.add(key)
                    yield Setting(node.name, a.name, a.value, a.line, group)


def boolean(s: Setting | None, warnings: Warnings, default: bool) -> bool:
    if s is None:
        return default
    v = s.value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False if v else default
    warnings.add(s.line, f"{s.label}: not a boolean (true/false, yes/no, 1/0); the default {str(default).lower()} "
                         "is used")
    return default


def number(s: Setting | None, warnings: Warnings, default: float | None, lo: float | None = None,
           hi: float | None = None, integer: bool = True) -> float | None:
    if s is None or s.value.strip() == "":
        return default
    text = s.value.strip().replace(",", ".") if not integer else s.value.strip()
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        warnings.add(s.line, f"{s.label}: not {'a whole number' if integer else 'a number'}; "
                             + (f"the default {_num(default)} is used" if default is not None else "ignored"))
        return default
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{_num(lo) if lo is not None else ''}..{_num(hi) if hi is not None else ''}"
        warnings.add(s.line, f"{s.label}: out of range ({bounds}); "
                             + (f"the default {_num(default)} is used" if default is not None else "ignored"))
        return default
    return value


def _num(v: float | None) -> str:
    return "none" if v is None else (str(int(v)) if v == int(v) else str(v))


@dataclass
class Channel:
    node: Node
    group: Node | None
    warnings: Warnings
    sections: dict[str, Section] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tag in SECTIONS:
            own = [(c, None) for c in self.node.children if c.tag == tag][:1]
            inherited = [(c, self.group_name) for c in (self.group.children if self.group else []) if c.tag == tag][:1]
            self.sections[tag] = Section(tag, [*own, *inherited], self.warnings)

    def __getitem__(self, tag: str) -> Section:
        return self.sections[tag]

    def attr(self, key: str) -> Setting | None:
        a = self.node.attrs.get(key)
        return Setting(self.node.name, a.name, a.value, a.line) if a else None

    @property
    def id(self) -> str:
        a = self.node.attrs.get("id")
        return a.value.strip() if a and a.value.strip() else f"line{self.node.line}"

    @property
    def name(self) -> str:
        a = self.node.attrs.get("name")
        return a.value.strip() if a and a.value.strip() else f"Channel {self.id}"

    @property
    def group_name(self) -> str | None:
        if self.group is None:
            return None
        a = self.group.attrs.get("name")
        return a.value.strip() if a and a.value.strip() else f"group on line {self.group.line}"

    @property
    def master(self) -> str | None:
        a = self.node.attrs.get("masterchannel")
        return a.value.strip() if a and a.value.strip() else None

    @property
    def line(self) -> int:
        return self.node.line

    @property
    def title(self) -> str:
        return f'Channel {self.id} "{self.name}"' + (f' (group "{self.group_name}")' if self.group else "")


@dataclass
class Purge:
    node: Node
    warnings: Warnings

    def __post_init__(self) -> None:
        self.main = Section("purgingchannel", [(self.node, None)], self.warnings)
        self.schedule = Section("runschedule", [(c, None) for c in self.node.children if c.tag == "runschedule"][:1],
                                self.warnings)
        self.filters = Section("namefilters", [(c, None) for c in self.node.children if c.tag == "namefilters"][:1],
                               self.warnings)

    @property
    def name(self) -> str:
        a = self.node.attrs.get("name")
        return a.value.strip() if a and a.value.strip() else f"Purging channel on line {self.node.line}"

    @property
    def title(self) -> str:
        return f'Purging channel "{self.name}"'


@dataclass
class Export:
    path: str
    document: Document
    version: str | None
    globals: Section
    environment: Section
    channels: list[Channel]
    purges: list[Purge]
    warnings: Warnings


def read(document: Document) -> Export:
    """The export's channels and settings; the warnings list every element or attribute that is not in the
    vocabulary, with its line."""
    root = document.root
    warnings = Warnings(list(document.warnings))
    if root.tag != ROOT:
        raise ExportError(f"{document.path}:{root.line}: the root element is <{root.name}>, not "
                          "<ColorFactoryConfiguration>: this is not a Color Factory configuration export")
    _check_attrs(root, ROOT_ATTRS, warnings)
    tops: dict[str, Node] = {}
    for child in root.children:
        if child.tag not in TOP:
            unknown_element(child, root.name, warnings)
            continue
        if child.tag in tops:
            warnings.add(child.line, f"a second <{child.name}> (the first is on line {tops[child.tag].line}): "
                                     "its contents are read too")
            tops[child.tag].children.extend(child.children)
            continue
        tops[child.tag] = child
        _check_attrs(child, TOP[child.tag], warnings)
    channels: list[Channel] = []
    for child in tops["processchannels"].children if "processchannels" in tops else []:
        if child.tag == "channel":
            channels.append(_channel(child, None, warnings))
        elif child.tag == "channelgroup":
            _check_attrs(child, GROUP_ATTRS, warnings)
            _check_enabled(child, warnings)
            for c in child.children:
                if c.tag == "channel":
                    channels.append(_channel(c, child, warnings))
                elif c.tag in SECTIONS:
                    _check_section(c, warnings)
                else:
                    unknown_element(c, "ChannelGroup", warnings)
        else:
            unknown_element(child, "ProcessChannels", warnings)
    purges: list[Purge] = []
    for child in tops["purgingchannels"].children if "purgingchannels" in tops else []:
        if child.tag != "purgingchannel":
            unknown_element(child, "PurgingChannels", warnings)
            continue
        _check_attrs(child, PURGE_ATTRS, warnings)
        for c in child.children:
            if ("purgingchannel", c.tag) in NESTED:
                _check_nested(c, "purgingchannel", warnings)
            else:
                unknown_element(c, "PurgingChannel", warnings)
        purges.append(Purge(child, warnings))
    if not channels and not purges:
        where = tops.get("processchannels", root)
        raise ExportError(f"{document.path}:{where.line}: the export holds no <Channel> and no <PurgingChannel>: "
                          "nothing to import")
    version = root.attrs["version"].value if "version" in root.attrs else None
    return Export(document.path, document, version,
                  Section("globalfolders", [(tops["globalfolders"], None)] if "globalfolders" in tops else [],
                          warnings),
                  Section("processenvironment",
                          [(tops["processenvironment"], None)] if "processenvironment" in tops else [], warnings),
                  channels, purges, warnings)


def _channel(node: Node, group: Node | None, warnings: Warnings) -> Channel:
    _check_attrs(node, CHANNEL_ATTRS, warnings)
    _check_enabled(node, warnings)
    seen: dict[str, int] = {}
    for c in node.children:
        if c.tag not in SECTIONS:
            unknown_element(c, "Channel", warnings)
            continue
        if c.tag in seen:
            unknown_element(c, node.name, warnings)
            warnings.items[-1] = (c.line, f"a second <{c.name}> in one channel (the first is on line {seen[c.tag]}): "
                                          "ignored")
            continue
        seen[c.tag] = c.line
        _check_section(c, warnings)
    return Channel(node, group, warnings)


def unknown_element(node: Node, where: str, warnings: Warnings) -> None:
    """An element outside the vocabulary: one warning; its attributes and children are not reported again."""
    warnings.add(node.line, f"unknown element <{node.name}> in <{where}>: ignored")
    stack = [node]
    while stack:
        n = stack.pop()
        warnings.unknown.add(id(n))
        warnings.unknown.update(id(a) for a in n.attrs.values())
        stack.extend(n.children)


def _check_enabled(node: Node, warnings: Warnings) -> None:
    a = node.attrs.get("enabled")
    if a is not None:
        boolean(Setting(node.name, a.name, a.value, a.line), warnings, True)


def _check_section(node: Node, warnings: Warnings) -> None:
    _check_attrs(node, SECTIONS[node.tag], warnings)
    for c in node.children:
        if (node.tag, c.tag) in NESTED:
            _check_nested(c, node.tag, warnings)
        else:
            unknown_element(c, node.name, warnings)


def _check_nested(node: Node, parent: str, warnings: Warnings) -> None:
    # Iterative: a hostile export may nest as deep as the XML parser allows.
    stack = [(node, parent)]
    while stack:
        n, p = stack.pop()
        _check_attrs(n, NESTED[(p, n.tag)], warnings)
        for c in n.children:
            if (n.tag, c.tag) in NESTED:
                stack.append((c, n.tag))
            else:
                unknown_element(c, n.name, warnings)


def _check_attrs(node: Node, known: frozenset[str], warnings: Warnings) -> None:
    for key, a in node.attrs.items():
        if key not in known:
            warnings.unknown.add(id(a))
            warnings.add(a.line, f'unknown attribute {a.name}="{_short(a.value)}" on <{node.name}>: ignored')


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["Attr", "Channel", "Export", "Purge", "Section", "Setting", "Warnings", "boolean", "number", "read"]
