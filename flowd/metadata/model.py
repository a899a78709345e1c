"""A file's metadata as field values: read once with exiv2 (pyexiv2, in memory), edited, written into a new file.

What pyexiv2 2.16 (exiv2 0.28.8) does, checked by hand and by tests/test_metadata_model.py:
- Formats: JPEG, TIFF, PNG and PSD read and write EXIF, IPTC and XMP; WebP writes EXIF and XMP but has no
  IPTC (exiv2 reports no IPTC access and ignores IPTC writes). An .xmp sidecar parses as a format of its own
  (application/rdf+xml): exiv2 derives IPTC from its XMP when reading and copies IPTC back into XMP when
  writing, resurrecting deleted properties, so sidecar writes clear that derived IPTC first.
- IPTC text is bytes. pyexiv2 encodes with `encoding=` (UTF-8 by default) but never sets 1:90
  CodedCharacterSet, and without it exiftool and most readers take the bytes as Latin-1 ("Ã†rÃ¸"), so every
  IPTC write sets 1:90 to ESC % G. Reading a record without 1:90 that is not valid UTF-8 falls back to
  cp1252 (then Latin-1); writing into such a record re-encodes its other non-ASCII datasets as UTF-8.
- Repeatable IPTC datasets (Keywords, Byline, ...) read as lists and are written from lists, one dataset per
  value. exiv2 silently accepts bad dates and times ("0000-00-00"), so values are checked before writing.
- XMP: lang-alt properties (dc:title, dc:rights, dc:description) read as {'lang="x-default"': text} and are
  written the same way. pyexiv2 writes every list as rdf:Seq: right for dc:creator, wrong for dc:subject (a
  Bag), so bags are written in exiv2's item syntax (`Xmp.dc.subject: type="Bag"`, `Xmp.dc.subject[1]`),
  which leaves that in-memory image unusable for a second edit; an image is therefore edited once and the
  checked result is parsed afresh. Struct members are keyed `Xmp.iptc.CreatorContactInfo/Iptc4xmpCore:CiAdrCity`.
  Namespaces exiv2 does not know must be registered (process-wide) before parsing; exiv2 appends "/" to a
  URI that ends in neither "/" nor "#".
- exiv2 reports warnings on stdout and keeps errors in one process-wide log that the next call raises:
  the log level is set to errors only. pybind11 keeps the GIL during each call, so worker threads never
  interleave inside exiv2.
- Cost: pyexiv2 copies the whole file into exiv2 for a parse (0.1-1.3 ms for 1 MB, depending on how warm
  the allocator is) and every edit call re-serializes the whole file (about 1 ms for 1 MB). A JPEG's
  metadata all precedes its first scan and exiv2 copies the rest verbatim, so for a JPEG exiv2 only ever
  sees the head (the bytes up to the first scan header, closed with an EOI marker) and the image data is
  appended once after the edits: byte for byte what exiv2 writes from the whole file (checked), at about
  half the CPU of a bare read-modify-write pyexiv2 loop. `read` parses once and keeps the parsed image for
  a `save` of the same, unchanged file; `save` makes one IPTC and one XMP call, checks the result with one
  parse of the new metadata plus a structural check of the container (JPEG markers, PNG IHDR/IEND, RIFF
  size, PSD sections, TIFF strip bounds and libvips' header read) instead of a pixel decode, and keeps that
  parse as the metadata of the new file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyexiv2

from flowd.errors import PermanentError, TransientError
from flowd.metadata.container import container_problem, decode, join_head, jpeg_head, jpeg_scan, reason, tiff_problem
from flowd.metadata.fields import (
    DEFAULT_FIELDS,
    FieldDef,
    FieldTable,
    iso_date,
    iso_time,
    normalise,
    parse_datetime,
    parse_time,
)

Raw = dict[str, Any]
_UTF8 = "\x1b%G"
_CHARSET = "Iptc.Envelope.CharacterSet"
_X_DEFAULT = 'lang="x-default"'
_TIME_OF = {55: 60, 30: 35}  # a date field -> the field holding its time of day
_FORMATS = {"image/jpeg": "JPEG", "image/tiff": "TIFF", "image/png": "PNG", "image/webp": "WebP",
            "image/x-photoshop": "PSD", "application/rdf+xml": "XMP", "image/x-ms-bmp": "BMP"}
_registered: set[tuple[str, str]] = set()
_quiet = False


@dataclass(eq=False)
class _Origin:
    """The file this metadata was read from (or last saved to), for a save without a second read."""

    path: Path
    identity: tuple[int, int, int, int]
    data: bytes
    scan: tuple[int, int] | None  # a JPEG's first scan header: exiv2 sees only the bytes before its end
    mime: str
    image: Any = None  # the parsed pyexiv2.ImageData, until a save edits it
    exif: Raw | None = None

    def reopen(self) -> Any:
        return _parse(jpeg_head(self.data, self.scan), self.path.name)


@dataclass(eq=False)
class _Live:
    """Open exiv2 images, closed when the Metadata is collected (ImageData frees its buffer only on close)."""

    images: list[Any] = field(default_factory=list)

    def close(self) -> None:
        while self.images:
            _close(self.images.pop())


class Metadata:
    """Field values of one file. `get` reads XMP, else IPTC, else the EXIF fallback; `set` edits both
    XMP and IPTC; `save` writes the edits into a new file and checks them there."""

    def __init__(self, table: FieldTable, origin: _Origin | None, xmp: Raw, iptc: Raw) -> None:
        self.table = table
        self._origin = origin
        self._xmp, self._iptc = xmp, iptc
        self._values: dict[FieldDef, list[str]] = {}    # XMP/IPTC values as read (cached) or set
        self._dirty: dict[FieldDef, None] = {}          # fields set since read, in order
        self._strip: dict[str, str] | None = None       # strip requested: the EXIF entries to keep
        self.notes: list[str] = []                      # what a write changed on the way (IPTC cut to length)
        self._live = _Live()
        if origin is not None and origin.image is not None:
            self._live.images.append(origin.image)
        weakref.finalize(self, self._live.close)

    # -- reading ------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: Path, table: FieldTable = DEFAULT_FIELDS) -> Metadata:
        """JPEG, TIFF, PNG, PSD, WebP (anything exiv2 reads), or an .xmp sidecar itself. The bytes are read
        once (never through a symlink) and parsed in memory; PermanentError carries exiv2's reason."""
        _prepare(table)
        data, st = _read_bytes(path)
        scan = jpeg_scan(data)
        image = _parse(jpeg_head(data, scan), path.name)
        try:
            xmp, iptc, mime = _read_xmp(image), _read_iptc(image)[0], image.get_mime_type()
        except (RuntimeError, ValueError) as exc:
            _close(image)
            raise PermanentError(f"{path.name}: exiv2 cannot read its metadata ({reason(exc)})") from exc
        return cls(table, _Origin(path, _identity(st), data, scan, mime, image), xmp, iptc)

    @classmethod
    def empty(cls, table: FieldTable = DEFAULT_FIELDS) -> Metadata:
        """No values: for a text template, or a file whose metadata cannot be read."""
        return cls(table, None, {}, {})

    def close(self) -> None:
        """Free the parsed image now; values stay readable (EXIF is parsed again from the bytes if needed)."""
        if self._origin is not None:
            self._origin.image = None
        self._live.close()

    def __enter__(self) -> Metadata:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, field: FieldDef) -> list[str]:
        """The field's values ([] when empty): XMP, else IPTC, else (read-only) EXIF. Dates read as ISO 8601
        (2025-11-28 or 2025-11-28T10:00:00[+01:00]) whatever the source's format."""
        held = self._held(field)
        if held or not field.exif or field in self._dirty:
            return list(held)
        return _from_exif(field, self._exif())

    def text(self, field: FieldDef) -> str:
        return ", ".join(self.get(field))

    def date(self, field: FieldDef) -> datetime | None:
        """The first value as a datetime (aware when it has an offset); a date field without a time takes
        its companion time field (55 with 60, 30 with 35). None when empty or not a date."""
        values = self.get(field)
        when = parse_datetime(values[0]) if values else None
        if when is None or field.id not in _TIME_OF or len(values[0]) != 10:
            return when
        companion = self.table.by_id().get(_TIME_OF[field.id])
        clock = parse_time(self.text(companion)) if companion is not None else None
        return datetime.combine(when.date(), clock) if clock is not None else when

    def fields(self) -> dict[str, list[str]]:
        """Every non-empty field of the table by name (for traces and simulation)."""
        return {d.name: v for d in self.table.defs() if (v := self.get(d))}

    @property
    def changed(self) -> bool:
        return bool(self._dirty) or self._strip is not None

    # -- editing ------------------------------------------------------------------------------------------
    def set(self, field: FieldDef, values: list[str]) -> None:
        """Replace the field's values ([] clears). A single-valued field joins several values with ", ".
        Dates are stored as ISO 8601 and times as HH:MM:SS+HH:MM (+00:00 when none is given); a value
        that is not one raises PermanentError naming the field. Clearing a field also deletes its EXIF
        fallback (else the old value would read again); setting one leaves EXIF alone, as XMP reads first."""
        if not field.writable:
            raise PermanentError(f"field {field} is read-only: it comes from EXIF")
        try:
            new = normalise(field, values)
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        if new == self._held(field) and new == self.get(field):
            return
        self._values[field] = new
        self._dirty[field] = None

    def merge(self, other: Metadata, overwrite: bool) -> list[str]:
        """Copy every non-empty writable field of `other` (EXIF fallbacks excluded) into empty fields, or
        into every field when `overwrite`. Returns the names of the fields that changed."""
        changed = []
        for theirs, values in other._embedded().items():
            mine = self._counterpart(theirs)
            if not mine.writable or (not overwrite and self.get(mine)):
                continue
            before = self.get(mine)
            self.set(mine, values)
            if self.get(mine) != before:
                changed.append(mine.name)
        return changed

    def strip(self, keep: Iterable[FieldDef] = ()) -> None:
        """Remove EXIF, IPTC, XMP, the comment and the thumbnail on save, except the kept fields' values.
        The ICC profile and the EXIF orientation stay: they change how the pixels look, not what they say.
        PNG text chunks exiv2 does not map (a tEXt "Comment") are left as they are."""
        kept = {self._counterpart(f): self.get(f) for f in keep}
        exif = self._exif()
        # "1" is the default: keeping it would only add an EXIF block that was not needed
        entries = {k: exif[k] for k in ("Exif.Image.Orientation",) if exif.get(k, "1") != "1"}
        for f in kept:
            if f.exif and not f.writable and f.exif in exif:  # EXIF-only fields are kept in EXIF
                ref = f.exif + "Ref" if f.exif.startswith("Exif.GPSInfo.GPSL") else ""
                entries.update((k, exif[k]) for k in (f.exif, ref) if k in exif)
        self._strip = entries
        self._xmp, self._iptc, self._values, self._dirty = {}, {}, {}, {}
        if self._origin is not None:
            self._origin.exif = dict(entries)
        for f, values in kept.items():
            if f.writable:
                self._values[f] = values  # as read: already clean
                self._dirty[f] = None

    # -- writing ------------------------------------------------------------------------------------------
    def save(self, src: Path, dst: Path) -> None:
        """Write `src`'s bytes with this metadata into the new file `dst` (never touching `src`). When `src`
        is the file this was read from, only the edits are applied; otherwise every field this holds is.
        The new bytes are parsed and checked (every edited field reads back as intended, the container is
        intact) before `dst` is created, so a failed save leaves no file. PermanentError on failure.

        A JPEG's metadata all precedes its first scan, and exiv2 copies everything from there on verbatim,
        so exiv2 edits only the head (up to that scan header, closed with an EOI marker) and the image data
        is appended once: byte for byte what exiv2 writes from the whole file, without copying the image
        data on every edit call."""
        _prepare(self.table)
        origin = self._origin
        same = origin is not None and _same_file(origin, src)
        if origin is not None and same:
            data, scan, mime, image = origin.data, origin.scan, origin.mime, origin.image
            origin.image = None  # an edited image cannot be edited again (see the module docstring)
            if image is None:
                image = origin.reopen()
            else:
                self._live.images.remove(image)
        else:
            data = _read_bytes(src)[0]
            scan = jpeg_scan(data)
            image = _parse(jpeg_head(data, scan), src.name)
            mime = image.get_mime_type()
        try:
            # exiv2 rewrites a TIFF from its directory and pads strips that run past the end: look first
            problem = tiff_problem(image, data) if mime == "image/tiff" else None
            if problem is not None:
                raise PermanentError(f"{src.name}: refusing to copy a damaged file: {problem}")
            head, writes, notes = self._apply(image, mime, src.name, edits_only=same)
        finally:
            _close(image)
        new = join_head(head, data, scan)
        if new is None:  # exiv2 changed the scan header: edit the whole file instead
            image, scan = _parse(data, src.name), None
            try:
                head, writes, notes = self._apply(image, mime, src.name, edits_only=same)
            finally:
                _close(image)
            new = head
        check = _parse(head, dst.name)
        try:
            xmp, iptc = self._check(check, mime, new, writes, dst.name)
            _write_new(dst, new)
        except BaseException:
            _close(check)
            raise
        # Now this describes dst, and the check's parse serves the next save or EXIF read.
        self._origin = _Origin(dst, _identity(os.stat(dst, follow_symlinks=False)), new, jpeg_scan(new), mime,
                               check)
        self._live.images.append(check)
        self._xmp, self._iptc = xmp, iptc
        self._values, self._dirty, self._strip = {}, {}, None
        self.notes.extend(notes)

    def save_sidecar(self, dst: Path) -> None:
        """Write every field that has an XMP property into the XMP sidecar `dst`, merging into the sidecar
        already there (replaced atomically) or creating it."""
        _prepare(self.table)
        existing = dst.exists() or dst.is_symlink()
        data = _read_bytes(dst)[0] if existing else _EMPTY_PACKET
        image = _parse(data, dst.name)
        writes = {f: v for f, v in self._writes(edits_only=False).items() if f.xmp is not None}
        try:
            if image.get_mime_type() != "application/rdf+xml":
                raise PermanentError(f"{dst.name} exists and is not an XMP sidecar")
            xmp: Raw = {}
            for f, values in writes.items():
                xmp.update(_xmp_entries(f.xmp_key or "", f, values))
            image.clear_iptc()  # else exiv2 copies the IPTC it derived from the old XMP back over the edits
            image.modify_xmp(xmp)
            new = image.get_bytes()
        except (RuntimeError, ValueError) as exc:
            raise PermanentError(f"{dst.name}: cannot write the XMP sidecar ({reason(exc)})") from exc
        finally:
            _close(image)
        check = _parse(new, dst.name)
        try:
            got = _read_xmp(check)
        finally:
            _close(check)
        bad = [f for f, values in writes.items() if _from_xmp(f, got) != _expected_xmp(f, values)]
        if bad:
            raise PermanentError(f"{dst.name}: the sidecar did not keep field {bad[0]}")
        if not existing:
            _write_new(dst, new)
            return
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:12]}.tmp")
        _write_new(tmp, new)
        try:
            os.replace(tmp, dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise PermanentError(f"cannot replace {dst}: {exc.strerror}") from exc

    # -- internals ----------------------------------------------------------------------------------------
    def _held(self, field: FieldDef) -> list[str]:
        """The value held in XMP, else IPTC, or the value set; never the EXIF fallback."""
        if field not in self._values:
            self._values[field] = _from_xmp(field, self._xmp) or _from_iptc(field, self._iptc)
        return self._values[field]

    def _embedded(self) -> dict[FieldDef, list[str]]:
        """Every non-empty writable value held or set (EXIF fallbacks excluded): what a merge copies."""
        known = self.table.defs()
        fields = [*known, *(f for f in self._dirty if f not in set(known))]  # e.g. an XMP name no field claims
        return {d: list(v) for d in fields if d.writable and (v := self._held(d))}

    def _writes(self, edits_only: bool) -> dict[FieldDef, list[str]]:
        edits = {f: list(self._values[f]) for f in self._dirty}
        return edits if edits_only else {**self._embedded(), **edits}

    def _counterpart(self, theirs: FieldDef) -> FieldDef:
        if theirs.id is not None and theirs.id in self.table.by_id():
            return self.table.by_id()[theirs.id]
        if theirs.xmp is not None:
            try:
                return self.table.resolve(theirs.xmp)
            except KeyError:
                pass
        return theirs

    def _exif(self) -> Raw:
        origin = self._origin
        if origin is None:
            return {}
        if origin.exif is None:
            image = origin.image or origin.reopen()
            try:
                origin.exif = decode(image.read_exif)
            except (RuntimeError, ValueError):
                origin.exif = {}  # EXIF is only a fallback: a broken block reads as none
            finally:
                if image is not origin.image:
                    _close(image)
        return origin.exif

    def _apply(self, image: Any, mime: str, name: str,
               edits_only: bool) -> tuple[bytes, dict[FieldDef, list[str]], list[str]]:
        """Edit the parsed image; returns its new bytes, the fields written with their values, and notes."""
        access = {k: v or "" for k, v in image.get_access_mode().items()}
        if "write" not in access.get("xmp", ""):
            kind = _FORMATS.get(mime) or mime.rpartition("/")[2].removeprefix("x-").upper()
            raise PermanentError(f"cannot write metadata into {kind} files; use to: sidecar")
        writes = self._writes(edits_only)
        iptc_ok = "write" in access.get("iptc", "") and mime != "application/rdf+xml"
        iptc: Raw = {}
        xmp: Raw = {}
        notes: list[str] = []
        for f, values in writes.items():
            if f.xmp is not None:
                xmp.update(_xmp_entries(f.xmp_key or "", f, values))
            if f.iptc is not None and iptc_ok:
                value, why = _iptc_value(f, values)
                iptc[f.iptc] = value
                notes.extend(why)
        gone = {f.exif: None for f, values in writes.items() if f.exif and not values}
        try:
            if self._strip is not None:
                for part in ("thumbnail", "exif", "iptc", "xmp"):
                    getattr(image, f"clear_{part}")()
                if "write" in access.get("comment", ""):
                    image.clear_comment()
                if self._strip:
                    image.modify_exif(self._strip)
            elif gone and "write" in access.get("exif", ""):
                image.modify_exif(gone)
            if iptc:
                record, encoding = _read_iptc(image)
                if encoding != "utf-8":  # 1:90 is about to say UTF-8: the old text must become UTF-8 too
                    iptc = {**_legacy_text(record), **iptc}
                image.modify_iptc({**iptc, _CHARSET: _UTF8})
            if xmp:
                if mime == "application/rdf+xml":  # see save_sidecar
                    image.clear_iptc()
                image.modify_xmp(xmp)
            return image.get_bytes(), writes, notes
        except (RuntimeError, ValueError) as exc:
            raise PermanentError(f"{name}: exiv2 cannot write its metadata ({reason(exc)})") from exc

    def _check(self, image: Any, mime: str, data: bytes, writes: Mapping[FieldDef, list[str]],
               name: str) -> tuple[Raw, Raw]:
        """Every written field reads back as intended, stripped fields are gone, and the container is whole.
        Returns what it read (XMP, IPTC), which then describes the new file."""
        problem = container_problem(image, mime, data)
        if problem is not None:
            raise PermanentError(f"{name}: refusing to write a damaged file: {problem}")
        try:
            xmp, iptc = _read_xmp(image), _read_iptc(image)[0]
        except (RuntimeError, ValueError) as exc:
            raise PermanentError(f"{name}: the written metadata does not parse ({reason(exc)})") from exc
        iptc_ok = "write" in (image.get_access_mode().get("iptc") or "") and mime != "application/rdf+xml"
        for f, values in writes.items():
            checks = [("XMP", _from_xmp(f, xmp), _expected_xmp(f, values))] if f.xmp else []
            if f.iptc and iptc_ok:
                checks.append(("IPTC", _from_iptc(f, iptc), _from_iptc(f, {f.iptc: _iptc_value(f, values)[0]})))
            for part, got, want in checks:
                if got != want:
                    raise PermanentError(f"{name}: field {f} reads back as {got!r} in {part}, not {want!r}")
        if self._strip is not None:
            left = [d for d in self.table.defs() if d not in writes and (_from_xmp(d, xmp) or _from_iptc(d, iptc))]
            if left:
                raise PermanentError(f"{name}: stripping left field {left[0]} behind")
        return xmp, iptc


# -- values ---------------------------------------------------------------------------------------------
def _from_xmp(f: FieldDef, xmp: Raw) -> list[str]:
    key = f.xmp_key
    raw = xmp.get(key) if key is not None else None
    if key is None or raw is None:
        return []
    if isinstance(raw, dict):  # lang-alt: x-default, else the first language
        raw = [raw.get(_X_DEFAULT) or next(iter(raw.values()), "")]
    elif isinstance(raw, str) and raw.startswith("type="):  # an array in exiv2's item syntax
        items = sorted((k for k in xmp if k.startswith(f"{key}[")), key=lambda k: int(k[len(key) + 1:-1]))
        raw = [xmp[k] for k in items]
    return _clean(f, raw if isinstance(raw, list) else [raw])


def _from_iptc(f: FieldDef, iptc: Raw) -> list[str]:
    raw = iptc.get(f.iptc) if f.iptc else None
    if raw is None:
        return []
    return _clean(f, raw if isinstance(raw, list) else [raw])


def _from_exif(f: FieldDef, exif: Raw) -> list[str]:
    raw = exif.get(f.exif) if f.exif else None
    if not isinstance(raw, str) or not raw.strip():
        return []
    if raw.startswith("charset="):  # UserComment, GPSProcessingMethod: "charset=Ascii text"
        raw = raw.partition(" ")[2]
    if f.exif in ("Exif.GPSInfo.GPSLatitude", "Exif.GPSInfo.GPSLongitude"):
        raw = _degrees(raw, str(exif.get(f"{f.exif}Ref", "")))
    if f.kind == "date" and iso_date(raw.strip()) is None:  # a blank EXIF date is "    :  :     :  :  "
        return []
    return _clean(f, [raw])


def _clean(f: FieldDef, raw: list[Any]) -> list[str]:
    out = []
    for item in raw:
        text = str(item).rstrip("\x00").strip()
        if f.kind == "date":
            text = iso_date(text) or text
        elif f.kind == "time":
            text = iso_time(text) or text
        if text and not (f.kind == "date" and text.startswith("0000")):
            out.append(text)
    return out


def _xmp_entries(key: str, f: FieldDef, values: list[str]) -> Raw:
    if not values:
        return {key: None}
    if f.lang_alt:
        return {key: {_X_DEFAULT: ", ".join(values)}}
    if f.kind == "bag":
        return {key: 'type="Bag"', **{f"{key}[{i}]": v for i, v in enumerate(values, 1)}}
    if f.kind == "seq":
        return {key: list(values)}
    return {key: ", ".join(values)}


def _expected_xmp(f: FieldDef, values: list[str]) -> list[str]:
    return _clean(f, [", ".join(values)] if values and (f.lang_alt or not f.multi) else values)


def _iptc_value(f: FieldDef, values: list[str]) -> tuple[Any, list[str]]:
    """What to write to the field's IPTC dataset (None deletes it), and notes on what did not fit: IIM
    holds full dates only (the date part of a date-time) and each dataset has a byte limit (cut there,
    never inside a UTF-8 character; XMP keeps the full text)."""
    notes = []
    if f.kind == "date":
        full = [v[:10] for v in values if re.match(r"\d{4}-\d\d-\d\d", v)]
        if len(full) < len(values):
            notes.append(f"field {f}: IPTC holds full dates only; {values[0]!r} is in XMP only")
        values = full
    if not values:
        return None, notes
    if not f.multi or f.iptc not in pyexiv2.IPTC_TAGS_REPEATABLE:
        values = [", ".join(values)]
    # exiv2 writes dates and times in IIM's own form (CCYYMMDD, HHMMSS+HHMM): the limit is for text
    cut = values if f.kind in ("date", "time") else [_cut(v, f.max_length) for v in values]
    if cut != values:
        notes.append(f"field {f}: the IPTC copy is cut to {f.max_length} bytes; XMP keeps the full text")
    return (cut if f.multi else cut[0]), notes


def _cut(text: str, limit: int | None) -> str:
    raw = text.encode()
    return text if limit is None or len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _legacy_text(iptc: Raw) -> Raw:
    """A legacy record's non-ASCII text datasets, to rewrite as UTF-8 once 1:90 says UTF-8."""
    return {k: v for k, v in iptc.items() if k.startswith("Iptc.Application2.") and not str(v).isascii()}


def _degrees(rationals: str, ref: str) -> str:
    """"55/1 40/1 597/25" with ref "S" -> "-55.673880" (decimal degrees)."""
    try:
        parts = [int(a) / int(b) for a, b in (r.split("/") for r in rationals.split())]
        value = sum(p / 60**i for i, p in enumerate(parts))
    except (ValueError, ZeroDivisionError):
        return rationals
    return f"{-value if ref.upper() in ('S', 'W') else value:.6f}"


# -- files and exiv2 --------------------------------------------------------------------------------------
_EMPTY_PACKET = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
                 b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
                 b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>\n<?xpacket end="w"?>')


def _prepare(table: FieldTable) -> None:
    global _quiet
    if not _quiet:
        pyexiv2.set_log_level(3)  # warnings would go to stdout; errors still raise
        _quiet = True
    for prefix, uri in table.namespaces.items():
        if (prefix, uri) not in _registered:
            pyexiv2.registerNs(uri, prefix)
            _registered.add((prefix, uri))


def _read_bytes(path: Path) -> tuple[bytes, os.stat_result]:
    """The whole file, refusing a symlink (a hot folder is writable by others)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise PermanentError(f"cannot read {path}: {why}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PermanentError(f"cannot read {path}: not a regular file")
        try:
            return f.read(), st
        except OSError as exc:
            raise PermanentError(f"cannot read {path}: {exc.strerror}") from exc


def _write_new(dst: Path, data: bytes) -> None:
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except FileExistsError as exc:
        raise PermanentError(f"{dst} already exists: metadata is only written into a new file") from exc
    except OSError as exc:
        raise PermanentError(f"cannot create {dst}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException as exc:
        dst.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk may have room on the next try
            error = TransientError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else PermanentError
            raise error(f"cannot write {dst}: {exc.strerror}") from exc
        raise


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _same_file(origin: _Origin, src: Path) -> bool:
    try:
        return _identity(os.stat(src, follow_symlinks=False)) == origin.identity
    except OSError:
        return False


def _parse(data: bytes, name: str) -> Any:
    try:
        return pyexiv2.ImageData(data)
    except (RuntimeError, ValueError) as exc:
        raise PermanentError(f"{name}: not a file exiv2 can read ({reason(exc)})") from exc


def _close(image: Any) -> None:
    # pyexiv2's close() also replaces every attribute through dir(), which costs more than the parse;
    # freeing the C++ image is all that matters here (the object is never used again).
    raw = getattr(image, "_exiv2api_image", None)
    if raw is None:
        return  # closed already
    try:
        if hasattr(raw, "close_image"):
            raw.close_image()
            image._exiv2api_image = None
        else:
            image.close()
    except RuntimeError:
        pass  # already closed


def _read_xmp(image: Any) -> Raw:
    return decode(image.read_xmp)


def _read_iptc(image: Any) -> tuple[Raw, str]:
    """IPTC text with its encoding: UTF-8 (with or without 1:90 saying so), else cp1252, else Latin-1."""
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            return dict(image.read_iptc(encoding=encoding)), encoding
        except UnicodeDecodeError:
            continue
    return {}, "utf-8"
