"""Job Request Files (JRF), their Process Result Files (PRF), and the Windows paths they carry.

An editorial system asks for one picture to be processed by dropping a small INI file into a hot folder:

    [JRF]
    M_VERSION=2
    M_INPUT_FILE=\\\\cfserver\\images\\Hires\\Nice Image.jpg
    M_OUTPUT_FILE=

The file is recognised by its first bytes (`[JRF]`), never by its name. `M_INPUT_FILE` is the picture to process
(a drive or UNC path as the requester sees it), `M_OUTPUT_FILE` the result's path (empty: the hot folder's own
output) and `M_REMOVE_INPUT_FILE=1` asks for the input to be deleted afterwards. Every other key is kept in
`JobRequest.keys` for traces and templates. The request file itself is always removed; when asked to, the
daemon answers with a PRF next to it (same name, extension `.prf`):

    [PRF]
    M_VERSION=2
    M_INPUT_FILE=\\\\cfserver\\images\\Hires\\Nice Image.jpg
    M_OUTPUT_FILE=\\\\cfserver\\images\\Out\\Nice Image.jpg
    M_ERROR_CODE=0
    M_ERROR_TEXT=success

`M_INPUT_FILE` in the PRF is flowd's addition, so that a reader can match a result to its request.

`PathMap` turns the requester's Windows paths into local ones through the `[path_map]` config table, and refuses
anything that is not under a mapped root: a job request must not be a way to read arbitrary local files.

This module does no processing; it parses, maps and writes, and raises `JrfError` with the PRF code to report.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flowd.errors import PermanentError

MAGIC = b"[JRF]"
"""A job request file begins with these bytes (after an optional UTF-8 byte order mark)."""

MAX_BYTES = 64 * 1024
"""A larger file is refused before it is decoded: real requests are a few hundred bytes."""

SUPPORTED_VERSIONS = ("1", "2")
PRF_VERSION = "2"

_BOM = b"\xef\xbb\xbf"

# PRF error codes. 0 is the only success; a requester tests `M_ERROR_CODE != 0` and shows M_ERROR_TEXT.
SUCCESS = 0
MALFORMED = 1
INPUT_NOT_FOUND = 2
INPUT_NOT_MAPPED = 3
PROCESSING_FAILED = 4
OUTPUT_NOT_WRITTEN = 5
UNSUPPORTED_VERSION = 6

ERRORS: dict[int, str] = {
    # The input was processed and the output written and renamed into place; M_OUTPUT_FILE names it.
    SUCCESS: "success",
    # The request could not be read: it does not begin with [JRF], is too large, holds NUL bytes, has a line
    # that is not key=value / comment / section, lacks M_VERSION or M_INPUT_FILE, or has a bad key value.
    MALFORMED: "malformed job request",
    # M_INPUT_FILE maps to a local path, but no file is there (or it is not a regular file).
    INPUT_NOT_FOUND: "input file not found",
    # M_INPUT_FILE (or M_OUTPUT_FILE) is not under any [path_map] prefix, or tries to leave its mapped root.
    INPUT_NOT_MAPPED: "input path not mapped",
    # The rule's actions failed on the input (unreadable picture, conversion error, ...).
    PROCESSING_FAILED: "processing failed",
    # The output could not be written or renamed into place (a missing output folder is made, as for stores).
    OUTPUT_NOT_WRITTEN: "output could not be written",
    # M_VERSION names a version of the format this daemon does not speak (it speaks 1 and 2).
    UNSUPPORTED_VERSION: "unsupported job request version",
}

_KNOWN_KEYS = ("M_VERSION", "M_INPUT_FILE", "M_OUTPUT_FILE", "M_REMOVE_INPUT_FILE")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class JrfError(PermanentError):
    """A job request that cannot be honoured: `code` and `description` go into the PRF as they are."""

    def __init__(self, code: int, description: str) -> None:
        # args stay (code, description) so the error survives pickling between processes.
        super().__init__(code, description)
        self.code = code
        self.description = description

    def __str__(self) -> str:
        kind = ERRORS.get(self.code, "error")
        return f"job request: {self.description} (PRF code {self.code}, {kind})"


@dataclass(frozen=True, slots=True)
class JobRequest:
    version: str
    input_file: str  # as written: a Windows path (D:\..., \\server\share\...) or a POSIX one
    output_file: str | None  # None when M_OUTPUT_FILE is empty or absent: the hot folder's own output
    remove_input: bool | None  # M_REMOVE_INPUT_FILE when present
    # every [JRF] key, upper-cased, in the order first seen (a repeated key keeps the last value)
    keys: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def extra(self) -> dict[str, str]:
        """The keys this module does not interpret (crop, size, ...), for the rules to use or ignore."""
        return {k: v for k, v in self.keys.items() if k not in _KNOWN_KEYS}


def is_jrf(head: bytes) -> bool:
    """Whether a file whose first bytes are `head` is a job request: it must begin with `[JRF]` (compared
    case-insensitively, as `parse_jrf` reads the section name), optionally after a UTF-8 byte order mark.
    Leading blank lines or spaces are not allowed: Color Factory recognises the file by its beginning."""
    if head.startswith(_BOM):
        head = head[len(_BOM):]
    return head[: len(MAGIC)].upper() == MAGIC


def parse_jrf(data: bytes) -> JobRequest:
    """Parse a whole job request file, or raise `JrfError` with the PRF code and a sentence naming the problem.

    Text is UTF-8 (with or without BOM) when it decodes as such, else windows-1252. Lines end in CRLF, LF or
    CR. Blank lines and lines starting with `;` or `#` are ignored (there are no trailing comments: `;` and `#`
    are legal in file names). Keys are case-insensitive; whitespace around keys and values is trimmed and one
    pair of matching quotes around a value is removed, as Windows' own INI reader does. Only keys of the [JRF]
    section are kept; a repeated key keeps its last value.
    """
    if len(data) > MAX_BYTES:
        raise JrfError(MALFORMED, f"the file is {len(data)} bytes; a job request may be at most {MAX_BYTES} bytes")
    had_bom = data.startswith(_BOM)
    if had_bom:
        data = data[len(_BOM):]
    if not is_jrf(data):
        raise JrfError(MALFORMED, f"the file does not begin with [JRF] (it begins with {_decode(data[:20])!r})")
    if b"\x00" in data:
        offset = data.index(0) + (len(_BOM) if had_bom else 0)
        raise JrfError(MALFORMED, f"the file contains a NUL byte at offset {offset}; it is not a text file")

    lines = _LINE_BREAK.split(_decode(data))
    if lines[0].strip().upper() != "[JRF]":
        raise JrfError(MALFORMED, f"the first line must be [JRF] alone, got {_clip(lines[0].strip())!r}")
    keys: dict[str, str] = {}
    section = "JRF"
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().upper()
            continue
        key, sep, value = line.partition("=")
        key = key.strip().upper()
        if not sep or not key:
            what = "a key before '='" if sep else "key=value, a comment (; or #) or a [section]"
            raise JrfError(MALFORMED, f"line {number} is not {what}: {_clip(line)!r}")
        if section == "JRF":
            keys[key] = _unquote(value.strip())

    version = keys.get("M_VERSION")
    if version is None or version == "":
        raise JrfError(MALFORMED, "M_VERSION is missing; the request must say which format version it uses (2)")
    if version not in SUPPORTED_VERSIONS:
        raise JrfError(UNSUPPORTED_VERSION,
                       f"M_VERSION={_clip(version)!r} is not supported; supported versions: "
                       + ", ".join(SUPPORTED_VERSIONS))
    input_file = keys.get("M_INPUT_FILE")
    if input_file is None:
        raise JrfError(MALFORMED, "M_INPUT_FILE is missing; the request must name the file to process")
    if not input_file:
        raise JrfError(MALFORMED, "M_INPUT_FILE is empty; the request must name the file to process")
    return JobRequest(
        version=version,
        input_file=input_file,
        output_file=keys.get("M_OUTPUT_FILE") or None,
        remove_input=_flag(keys, "M_REMOVE_INPUT_FILE"),
        keys=keys,
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # windows-1252, with its five unassigned bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D) passed through as the
        # C1 controls Windows itself maps them to, so decoding never fails.
        return data.decode("latin-1").translate(_CP1252)


_CP1252: dict[int, str] = {}
for _byte in range(0x80, 0xA0):
    try:
        _CP1252[_byte] = bytes([_byte]).decode("cp1252")
    except UnicodeDecodeError:
        pass


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _flag(keys: Mapping[str, str], key: str) -> bool | None:
    value = keys.get(key)
    if value is None or value == "":
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise JrfError(MALFORMED, f"{key}={_clip(value)!r} is not a flag; use 1 (yes) or 0 (no)")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Windows paths -------------------------------------------------------------------------------------------


def _split_windows(path: str) -> tuple[tuple[str, ...], list[str]] | None:
    """A Windows absolute path as (anchor, components): anchor is ("\\\\", server, share) for UNC or ("x:",) for
    a drive, lower-cased for comparison; components are the rest as written. None when not a Windows absolute
    path (relative, drive-relative `C:x`, device `\\\\?\\` / `\\\\.\\`, or UNC without server and share)."""
    text = path.replace("/", "\\")
    if text.startswith("\\\\"):
        parts = text[2:].split("\\")
        if len(parts) < 2 or not parts[0] or not parts[1] or parts[0] in ("?", "."):
            return None
        return ("\\\\", parts[0].lower(), parts[1].lower()), [p for p in parts[2:] if p]
    if re.match(r"[A-Za-z]:\\", text):
        return (text[:2].lower(),), [p for p in text[3:].split("\\") if p]
    return None


def _is_dots(component: str) -> bool:
    """'.', '..' and names of only dots and spaces, which Windows reads as '.' or '..'."""
    return component.rstrip(". ") == ""


@dataclass(frozen=True, slots=True)
class _Entry:
    prefix: str  # as configured, for messages
    key: tuple[str, ...]  # anchor + lower-cased components
    root: Path


class PathMap:
    """Maps the Windows paths in job requests onto local folders, through the `[path_map]` config table:

        [path_map]
        '\\\\cfserver\\images' = "/srv/images"
        'D:\\CF' = "/srv/cf"

    The longest matching prefix wins, compared case-insensitively and component by component. Anything that
    is not inside a mapped root is refused (map() returns None): unknown prefixes, '.' or '..' components,
    NUL characters, relative paths, POSIX paths outside every root, and paths a symlink leads out of the roots.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        entries: dict[tuple[str, ...], _Entry] = {}
        for prefix, local in mapping.items():
            split = _split_windows(prefix) if "\x00" not in prefix else None
            if split is None:
                raise ValueError(f"[path_map] key {prefix!r} is not a Windows drive (D:\\...) or UNC "
                                 f"(\\\\server\\share) path")
            anchor, components = split
            if any(_is_dots(c) for c in components):
                raise ValueError(f"[path_map] key {prefix!r} has a '.' or '..' component")
            if not os.path.isabs(local) or "\x00" in local:
                raise ValueError(f"[path_map] {prefix!r} maps to {local!r}, which is not an absolute local path")
            key = anchor + tuple(c.lower() for c in components)
            if key in entries:
                raise ValueError(f"[path_map] keys {entries[key].prefix!r} and {prefix!r} name the same prefix")
            entries[key] = _Entry(prefix, key, Path(os.path.normpath(local)))
        # longest first, so the first match is the most specific one
        self._entries = sorted(entries.values(), key=lambda e: len(e.key), reverse=True)
        self._order = list(entries.values())

    def roots(self) -> list[Path]:
        """The local roots, in config order, without duplicates."""
        return list(dict.fromkeys(e.root for e in self._order))

    def map(self, path: str) -> Path | None:
        """The local path for a requester's path, or None when it is not (safely) under a mapped root."""
        return self._resolve(path)[0]

    def unmapped_reason(self, path: str) -> str:
        """Why map() refuses `path`, as a sentence for the PRF and the quarantine record."""
        local, reason = self._resolve(path)
        return reason if local is None else f"{path} maps to {local}"

    def _prefixes(self) -> str:
        if not self._order:
            return "none ([path_map] is empty)"
        return ", ".join(e.prefix for e in self._order)

    def _resolve(self, path: str) -> tuple[Path | None, str]:
        if "\x00" in path:
            return None, f"{path!r} contains a NUL character"
        if path.startswith("/") and not path.startswith("//"):
            return self._resolve_posix(path)
        split = _split_windows(path)
        if split is None:
            return None, (f"{path} is not an absolute path (expected D:\\..., \\\\server\\share\\... or a local "
                          f"path under a mapped root); mapped prefixes: {self._prefixes()}")
        anchor, components = split
        if any(_is_dots(c) for c in components):
            return None, f"{path} has a '.' or '..' component; a job request may not navigate between folders"
        key = anchor + tuple(c.lower() for c in components)
        for entry in self._entries:
            if key[: len(entry.key)] == entry.key:
                rest = components[len(entry.key) - len(anchor):]
                return self._contained(path, entry.root.joinpath(*rest))
        return None, f"no [path_map] entry maps {path}; mapped prefixes: {self._prefixes()}"

    def _resolve_posix(self, path: str) -> tuple[Path | None, str]:
        if any(c == ".." for c in path.split("/")):
            return None, f"{path} has a '..' component; a job request may not navigate between folders"
        local = Path(os.path.normpath(path))
        if not any(local == root or local.is_relative_to(root) for root in self.roots()):
            roots = ", ".join(str(r) for r in self.roots()) or "none ([path_map] is empty)"
            return None, f"{path} is a local path outside every mapped root ({roots})"
        return self._contained(path, local)

    def _contained(self, path: str, local: Path) -> tuple[Path | None, str]:
        """`local` unless a symlink on the way leads it out of every mapped root."""
        real = Path(os.path.realpath(local))
        for root in self.roots():
            real_root = Path(os.path.realpath(root))
            if real == real_root or real.is_relative_to(real_root):
                return local, ""
        return None, f"{path} maps to {local}, which a symlink leads out of the mapped roots (to {real})"


# --- Process result files -------------------------------------------------------------------------------------


def prf_path(jrf: Path) -> Path:
    """The result file for a request: same folder and name, extension `.prf` (replacing the last one)."""
    return jrf.with_suffix(".prf") if jrf.suffix else jrf.with_name(jrf.name + ".prf")


def render_prf(request: JobRequest | None, output: str, code: int, description: str) -> bytes:
    """The PRF's bytes: INI with CRLF line ends, windows-1252 (unencodable characters become '?')."""
    values = {
        "M_VERSION": request.version if request is not None else PRF_VERSION,
        "M_INPUT_FILE": request.input_file if request is not None else "",
        "M_OUTPUT_FILE": output,
        "M_ERROR_CODE": str(code),
        "M_ERROR_TEXT": description or ERRORS.get(code, ""),
    }
    lines = ["[PRF]"] + [f"{key}={_one_line(value)}" for key, value in values.items()]
    return "".join(line + "\r\n" for line in lines).encode("cp1252", errors="replace")


def _one_line(value: str) -> str:
    # a line break would end the value and start a bogus key; a NUL would end the string for C readers
    return re.sub(r"[\r\n\x00\x85\u2028\u2029]+", " ", value).strip()


def write_prf(jrf: Path, request: JobRequest | None, output: str, code: int, description: str) -> Path:
    """Write the PRF for `jrf` atomically (hidden temp file in the same folder, fsync, rename over any older
    PRF), so a polling reader never sees half a result. `request` is None when the JRF could not be parsed;
    `output` is the output path as the requester should see it. Returns the PRF's path."""
    target = prf_path(jrf)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    data = render_prf(request, output, code, description)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
