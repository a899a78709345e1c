"""Sidecars beside an image: an XMP packet (read by `Metadata.read`) or a `.txt` text template.

A text template has one `field=value` per line; `field` is a number (116) or any name the field table
knows (copyright, dc:rights). Blank lines and lines starting with `#` are skipped; spaces around the field
and the value are dropped. For a multi-valued field a value is split on "," and ";" and a repeated line
adds values; for a single-valued field a repeated line replaces the earlier one. Values are checked as
`Metadata.set` checks them (a date field needs a date), so a bad line is reported with its file and line. The file is UTF-8 (a BOM
is fine), or Windows-1252 when it is not valid UTF-8, as Windows tools still write it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from flowd.errors import PermanentError
from flowd.metadata.fields import FieldDef, FieldTable, UnknownField, normalise
from flowd.metadata.macro import split_values


def read_text_template(path: Path, table: FieldTable) -> dict[FieldDef, list[str]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PermanentError(f"cannot read the text template {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    out: dict[FieldDef, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise PermanentError(f"{path}:{number}: expected field=value (e.g. 116=(c) Agency), got {line!r}")
        try:
            field = table.resolve(key.strip())
        except UnknownField as exc:
            raise PermanentError(f"{path}:{number}: {exc}") from exc
        if not field.writable:
            raise PermanentError(f"{path}:{number}: field {field} is read-only (it comes from EXIF)")
        value = value.strip()
        try:
            values = normalise(field, split_values(value) if field.multi else [value])
        except ValueError as exc:
            raise PermanentError(f"{path}:{number}: {exc}") from exc
        if field.multi:
            out[field] = [*(v for v in out.get(field, []) if v not in values), *values]
        else:
            out[field] = values
    return out


def find_sidecar(image: Path, suffixes: Sequence[str] = (".xmp", ".XMP", ".txt")) -> Path | None:
    """The first sidecar found, trying each suffix in order: on the base name (photo.jpg -> photo.xmp) before
    the full name (photo.jpg.xmp), each as given, then in lower and upper case. Only regular files count:
    a symlink or folder of that name is ignored."""
    tried: list[Path] = []
    for suffix in suffixes:
        variants = dict.fromkeys((suffix, suffix.lower(), suffix.upper()))
        for name in (image.stem, image.name):
            for candidate in (image.with_name(name + v) for v in variants):
                if candidate == image or candidate in tried:
                    continue
                tried.append(candidate)
                try:
                    if stat.S_ISREG(os.lstat(candidate).st_mode):
                        return candidate
                except OSError:
                    continue
    return None
