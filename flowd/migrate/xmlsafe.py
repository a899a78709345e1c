"""Read a Color Factory configuration export into a small, plain tree, defensively.

Color Factory exports come from Windows consoles, were often edited by hand, mailed around and re-saved by
other tools: they arrive in UTF-8, UTF-16 or windows-1252, with or without a byte order mark, sometimes
with an encoding declaration that lies. They are also files from another system, so they are never
trusted: a DOCTYPE with entity declarations or an external DTD is refused before the parser sees it (no
billion laughs, no XXE, no network), nesting depth and size are bounded, and every failure is one
`ExportError` line `FILE:LINE:COL: what is wrong` instead of a traceback.

The reader only reads: it does not check element names (the importer does, case-insensitively). It
returns `Node`s with lower-cased local names for matching, the names as written for messages, and the
line of every element.
"""

from __future__ import annotations

import bisect
import codecs
import os
import re
import stat
from dataclasses import dataclass, field

from lxml import etree

from flowd.errors import FlowdError

__all__ = ["Attr", "Document", "ExportError", "Node", "read_export", "read_export_bytes"]


class ExportError(FlowdError):
    """The export cannot be read at all. str(exc) is one line: 'FILE:LINE:COL: what is wrong'
    (LINE:COL when known, else 'FILE: what')."""

    def __init__(self, path: str, message: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        if message is None:  # ExportError("already a whole sentence")
            self.path, self.message, self.line, self.column = "", path, None, None
            super().__init__(_one_line(path))
            return
        self.path, self.message, self.line, self.column = path, message, line, column
        where = path
        if line is not None:
            where += f":{line}:{column}" if column is not None else f":{line}"
        super().__init__(f"{where}: {_one_line(message)}")


@dataclass(frozen=True, slots=True)
class Attr:
    name: str  # as written, without a namespace prefix, e.g. "includeSubfolders"
    value: str  # whitespace-stripped
    line: int  # the line of its element (lxml knows no attribute lines)


@dataclass(slots=True)
class Node:
    tag: str  # local name lower-cased: "channel"
    name: str  # local name as written: "Channel"
    line: int
    attrs: dict[str, Attr] = field(default_factory=dict)  # keyed by lower-cased local name, document order
    children: list[Node] = field(default_factory=list)  # elements only
    text: str = ""  # the element's own text (all its direct text segments), stripped


@dataclass(slots=True)
class Document:
    path: str
    root: Node
    encoding: str  # what was used: "utf-8", "utf-16", "windows-1252", ...
    warnings: list[tuple[int, str]] = field(default_factory=list)  # (line, message): what was tolerated


DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def read_export(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read and parse an export file. Raises ExportError for anything that is not a readable export."""
    name = os.fspath(path)
    try:
        info = os.stat(name)
        if stat.S_ISDIR(info.st_mode):
            raise ExportError(name, "cannot read the export: it is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ExportError(name, "cannot read the export: it is not a regular file")
        if info.st_size > max_bytes:
            raise ExportError(name, f"the file is {_size(info.st_size)}, more than the limit of {_size(max_bytes)}")
        with open(name, "rb") as handle:
            data = handle.read(max_bytes + 1)  # it may have grown since the stat
    except OSError as exc:
        raise ExportError(name, f"cannot read the export: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ExportError(name, f"the file is larger than the limit of {_size(max_bytes)}")
    return read_export_bytes(data, name)


def read_export_bytes(data: bytes, path: str) -> Document:
    """Parse an export held in memory; `path` is only used in messages."""
    if not data:
        raise ExportError(path, "the file is empty")
    _refuse_binary(data, path)
    warnings: list[tuple[int, str]] = []
    text, encoding = _decode(data, path, warnings)
    text = _blank_declaration(text, warnings)
    if not text.strip():
        raise ExportError(path, "the file is empty (only whitespace)")
    nul = text.find("\0")
    if nul >= 0:
        line, column = _where(text, nul)
        raise ExportError(path, "a NUL character: this is not a text file (or it is damaged)", line, column)
    _refuse_dtd(text, path)
    root = _parse(text.encode("utf-8"), path)
    return Document(path, _convert(root, text, path, warnings), encoding, warnings)


# --- encodings -------------------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF8, "utf-8", "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)

# windows-1252 as Windows itself decodes it: the five unassigned bytes become the C1 code points.
_CP1252 = "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256))

_C1_BYTES = re.compile(rb"[\x80-\x9f]")
_DECL = re.compile(r"\A(\s*)<\?xml(?=\s)([^<>]*?)\?>")
_DECL_ENCODING = re.compile(r"""\bencoding\s*=\s*(["'])([^"'<>]*)\1""")


# Python codecs that no XML file is written in, and that would rewrite backslashes or punycode on decoding.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode", "utf-7"})


def _family(codec_name: str) -> str:
    return "utf-16" if codec_name.startswith("utf-16") else "utf-32" if codec_name.startswith("utf-32") else codec_name


def _declared(head: str) -> tuple[str, int] | None:
    """The declared encoding name and its offset in `head`, if there is an XML declaration that has one."""
    decl = _DECL.match(head)
    if decl is None:
        return None
    found = _DECL_ENCODING.search(decl.group(2))
    if found is None:
        return None
    return found.group(2).strip(), decl.start(2) + found.start(2)


def _decode(data: bytes, path: str, warnings: list[tuple[int, str]]) -> tuple[str, str]:
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            text = _strict(data[len(bom) :], codec, path, label)
            declared = _declared(text)
            if declared is not None and _lookup(declared[0]) != _family(codec):
                warnings.append((1, f"the byte order mark says {label} but the declaration says "
                                    f"{declared[0]!r}: read as {label}"))
            return text, label
    if data[:4] in (b"<\0?\0", b"\0<\0?"):  # UTF-16 without a byte order mark (XML 1.0 appendix F)
        codec = "utf-16-le" if data[0] else "utf-16-be"
        return _strict(data, codec, path, "utf-16"), "utf-16"
    declared = _declared(data[:1024].decode("latin-1"))
    if declared is None:
        return _utf8_or_cp1252(data, warnings, "not UTF-8 and no encoding declared")
    name, offset = declared
    known = _lookup(name)
    if known is None:
        line, column = _where(data[:1024].decode("latin-1"), offset)
        raise ExportError(path, f"unknown encoding {name!r} in the XML declaration", line, column)
    if known in ("utf-8", "ascii"):
        return _utf8_or_cp1252(data, warnings, f"declared {name!r} but not valid {name}")
    if known in ("utf-16", "utf-32"):  # 8-bit bytes (else the declaration could not be read like this)
        text, used = _utf8_or_cp1252(data, warnings, f"declared {name!r} but not {known} nor UTF-8")
        if used == "utf-8":
            warnings.append((1, f"declared {name!r} but the bytes are UTF-8: read as utf-8"))
        return text, used
    if known in ("cp1252", "iso8859-1"):
        text = codecs.charmap_decode(data, "strict", _CP1252)[0]
        if known == "cp1252":
            return text, "windows-1252"
        if _C1_BYTES.search(data) is None:
            return text, "iso-8859-1"
        warnings.append((1, f"declared {name!r} but has windows-1252 characters: read as windows-1252"))
        return text, "windows-1252"
    return _strict(data, known, path, known), known


def _lookup(name: str) -> str | None:
    """Python's codec name for an encoding label, utf-16/32 variants folded; None if unknown."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None  # "base64", "rot13" and the like are codecs but not text encodings
    return _family(info.name)


def _utf8_or_cp1252(data: bytes, warnings: list[tuple[int, str]], why: str) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        warnings.append((line, f"{why}: read as windows-1252 (first non-UTF-8 byte on line {line})"))
        return codecs.charmap_decode(data, "strict", _CP1252)[0], "windows-1252"


def _strict(data: bytes, codec: str, path: str, label: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode(codec, errors="replace")
        line, column = _where(good, len(good))
        raise ExportError(path, f"bytes that are not valid {label}", line, column) from None


def _blank_declaration(text: str, warnings: list[tuple[int, str]]) -> str:
    """Replace the XML declaration with spaces: the text is handed to lxml as UTF-8 whatever it was, and
    lines and columns stay where they were. A declaration after blank lines is tolerated this way too."""
    decl = _DECL.match(text)
    if decl is None:
        return text
    if decl.group(1):
        warnings.append((1, "blank space before the XML declaration: ignored"))
    blank = re.sub(r"[^\n]", " ", text[decl.start(0) : decl.end(0)])
    return blank + text[decl.end(0) :]


# --- the DOCTYPE, checked before any parser sees it ------------------------------------------------------

_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)
_PLAIN_DOCTYPE = re.compile(r"<!DOCTYPE\s+[^\s\[\]<>\"']+\s*>", re.IGNORECASE)
_EXTERNAL = re.compile(r"""<!DOCTYPE\s+[^\s\[\]<>"']+\s+(SYSTEM|PUBLIC)\b(?:\s*("[^"]*"|'[^']*'))?""", re.IGNORECASE)
_ENTITY = re.compile(r"<!ENTITY\s+(%\s+)?([^\s<>\"']*)(\s+(?:SYSTEM|PUBLIC)\b)?|%[^\s%;\"'<>]+;",
                     re.IGNORECASE)
_SUBSET_END = re.compile(r"\]\s*>")


def _refuse_dtd(text: str, path: str) -> None:
    """Walk the prolog (blank space, comments, processing instructions) to the first DOCTYPE and refuse it
    unless it is a plain `<!DOCTYPE Name>`. Whatever else is in the prolog is left to lxml to report."""
    at, end = 0, len(text)
    while at < end:
        if text[at].isspace():
            at += 1
        elif text.startswith("<!--", at):
            close = text.find("-->", at + 4)
            if close < 0:
                return
            at = close + 3
        elif text.startswith("<?", at):
            close = text.find("?>", at + 2)
            if close < 0:
                return
            at = close + 2
        elif _DOCTYPE.match(text, at):
            break
        else:
            return  # the root element (or junk lxml will report)
    else:
        return
    if _PLAIN_DOCTYPE.match(text, at):
        return
    external = _EXTERNAL.match(text, at)
    subset = text.find("[", at)
    close = text.find(">", at)
    if external is not None:
        what = f"an external DTD: {external.group(1).upper()} {external.group(2) or ''}".rstrip()
        where = at
    elif subset >= 0 and (close < 0 or subset < close):
        stop = _SUBSET_END.search(text, subset)
        entity = _ENTITY.search(text, subset, stop.end() if stop else end)
        if entity is not None and entity.group(0).startswith("%"):
            what, where = f"a parameter entity reference {entity.group(0)}", entity.start()
        elif entity is not None:
            kind = "parameter entity" if entity.group(1) else "entity"
            what = f"{'external ' if entity.group(3) else ''}{kind} declaration {entity.group(2)!r}"
            where = entity.start()
        else:
            what, where = "a DOCTYPE with an internal subset", subset
    else:
        what, where = "a DOCTYPE that is not a plain <!DOCTYPE Name>", at
    line, column = _where(text, where)
    raise ExportError(path, f"entity declarations / external DTDs are refused ({_clip(what)})", line, column)


# --- parsing and conversion ------------------------------------------------------------------------------

_POSITION_SUFFIX = re.compile(r",\s*line \d+, column \d+\s*$")
_NICER = (
    (re.compile(r"^Excessive depth in document: (\d+).*"), r"elements are nested deeper than \1 levels"),
    (re.compile(r"^Document is empty$"), "the file contains no XML"),
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           dtd_validation=False, attribute_defaults=False, remove_comments=True,
                           remove_pis=True, strip_cdata=True, recover=False, collect_ids=False)


def _parse(data: bytes, path: str) -> etree._Element:
    parser = _parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        first = next((e for e in parser.error_log if e.level >= etree.ErrorLevels.ERROR), None)
        if first is not None:
            message, line, column = first.message, first.line, first.column
        else:
            message = exc.msg or str(exc)
            line, column = exc.position if exc.position else (exc.lineno, None)
        message = _POSITION_SUFFIX.sub("", message.strip())
        for pattern, nicer in _NICER:
            message = pattern.sub(nicer, message)
        raise ExportError(path, f"malformed XML: {message}", line or None, column if line else None) from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and (dtd.system_url or dtd.external_id or any(True for _ in dtd.iterentities())):
        # _refuse_dtd lets none through, and entities were not expanded; never trust that alone
        raise ExportError(path, "entity declarations / external DTDs are refused (a DTD)", 1, 1)
    return root


def _convert(root: etree._Element, text: str, path: str, warnings: list[tuple[int, str]]) -> Node:
    """Iterative (lxml's iterwalk and an explicit stack), so the depth of a document never meets Python's
    recursion limit. Lines are those of the start tags' `<` (libxml2 gives the line of their `>`), and an
    attribute written on a later line of a long start tag gets that line."""
    starts = _start_tags(text, root)
    newlines = [found.start() for found in _NEWLINE.finditer(text)] if starts is not None else []
    stack: list[tuple[Node, list[str]]] = []
    top: Node | None = None
    index = 0
    for event, el in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            node, parts = stack.pop()
            node.text = "".join(parts).strip() if len(parts) > 1 else parts[0].strip()
            if stack:
                stack[-1][0].children.append(node)
                stack[-1][1].append(el.tail or "")
            else:
                top = node
            continue
        tag = el.tag
        if not isinstance(tag, str):  # an entity reference left in the tree: never with our parser
            raise ExportError(path, f"an entity reference that was not resolved: {_clip(str(el))}",
                              el.sourceline or None)
        last = el.sourceline or 0
        if starts is not None:
            tag_at = starts[index]
            line = bisect.bisect_left(newlines, tag_at) + 1
            index += 1
        else:
            tag_at, line = -1, last
        name = tag.rpartition("}")[2]
        attrs: dict[str, Attr] = {}
        lines = _attr_lines(el, text, tag_at, line, newlines) if line != last and tag_at >= 0 else None
        for raw, value in zip(el.keys(), el.values(), strict=True):  # twice as fast as items()
            local = raw.rpartition("}")[2]
            key = local.lower()
            at = lines.get(raw, last) if lines is not None else line
            if key in attrs:
                warnings.append((at, f"{attrs[key].name!r} and {local!r} on line {at}: the first is used"))
            else:
                attrs[key] = Attr(local, value.strip(), at)
        stack.append((Node(name.lower(), name, line, attrs, [], ""), [el.text or ""]))
    warnings.sort(key=lambda item: item[0])
    assert top is not None
    return top


# Markup that can hold a "<Name" that is no start tag, and the start tags themselves, in document order.
_NEWLINE = re.compile("\n")
_MARKUP = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<![^>]*>|</|<([^\s/>]+)", re.DOTALL)
_ATTRIBUTE = re.compile(r"""([^\s=<>/"']+)\s*=\s*(?:"[^"]*"|'[^']*')""")


def _start_tags(text: str, root: etree._Element) -> list[int] | None:
    """The offset of every element's start tag in document order, or None if the text and the tree do
    not pair up exactly (then libxml2's lines are used)."""
    starts: list[int] = []
    names = iter(root.iter())
    for found in _MARKUP.finditer(text):
        written = found.group(1)
        if written is None:
            continue
        el = next(names, None)
        if el is None or not isinstance(el.tag, str):
            return None
        local = el.tag.rpartition("}")[2]
        if written != local and written != f"{el.prefix}:{local}":
            return None
        starts.append(found.start())
    return starts if next(names, None) is None else None


def _attr_lines(el: etree._Element, text: str, tag_at: int, line: int, newlines: list[int]) -> dict[str, int]:
    """{attribute name as lxml keys it: line} for a start tag written over several lines."""
    end = newlines[(el.sourceline or line) - 1] if (el.sourceline or line) <= len(newlines) else len(text)
    prefixes = {prefix: uri for prefix, uri in el.nsmap.items() if prefix}
    lines: dict[str, int] = {}
    for found in _ATTRIBUTE.finditer(text, tag_at, end):
        written = found.group(1)
        prefix, _, local = written.rpartition(":")
        key = f"{{{prefixes[prefix]}}}{local}" if prefix in prefixes else written
        lines.setdefault(key, bisect.bisect_left(newlines, found.start()) + 1)
    return lines


# --- small helpers ---------------------------------------------------------------------------------------


def _where(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of an offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip file"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a program"),
)


def _refuse_binary(data: bytes, path: str) -> None:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise ExportError(path, f"this is {what}, not an XML export", 1, 1)


def _size(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n} bytes"
    return f"{n / (1024 * 1024):.1f} MB ({n} bytes)"


def _clip(text: str, width: int = 100) -> str:
    text = _one_line(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
