"""The value of each template placeholder for an asset: names and paths, file facts, image facts,
metadata fields and the AutoRouting helpers (prefix, dates, weekday, day)."""

from __future__ import annotations

import posixpath
import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from flowd.asset import Asset, split_name
from flowd.template import Field, format_date

if TYPE_CHECKING:
    from flowd.metadata.fields import FieldDef

_UUID_NS = uuid.UUID("6f1a2c1e-3d1b-4f52-9a59-0c7f5c1e2b10")
# Weekday names in English whatever the machine's locale, so a route never changes with LANG.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def resolve(field: Field, asset: Asset, step_id: str = "", path: bool = False) -> str:
    """The value of a template placeholder for this asset; `path`: it becomes part of a storage key."""
    match field.name:
        case "name": return asset.name
        case "stem": return asset.stem
        case "ext": return asset.ext
        case "extension": return asset.ext[1:].lower()
        case "relpath": return asset.relpath
        case "reldir": return asset.reldir
        case "hotfolder": return asset.hotfolder
        case "container": return asset.origin.container if asset.origin else ""
        case "event": return asset.origin.event if asset.origin else ""
        case "tenant": return asset.tenant
        case "output": return asset.output or ""
        case "size": return str(asset.size)
        case "sha256": return asset.sha256()
        # Derived from the job and step, so a retry renders the same name.
        case "uuid": return str(uuid.uuid5(_UUID_NS, f"{asset.job_id}:{step_id}"))
        case "now": return format_date(asset.detected_at, field.fmt)
        case "mtime": return format_date(asset.mtime, field.fmt)
        case "width": return str(asset.image().width)
        case "height": return str(asset.image().height)
        case "color": return asset.image().color
        case "prefix": return prefix_of(asset.stem, field.key)[0]
        case "unprefixed": return prefix_of(asset.stem, field.key)[1] + asset.ext
        case "source_prefix": return prefix_of(split_name(posixpath.basename(asset.source_relpath))[0], field.key)[0]
        case "date": return format_date(date_of(asset, field.key), field.fmt or "%Y-%m-%d")
        case "weekday": return WEEKDAYS[date_of(asset, field.key).weekday()]
        case "day": return f"{date_of(asset, field.key).day:02d}"
        case "meta": return meta_value(asset, field.key, field.fmt, path)
        case "ftp": return ftp_value(asset, field.key, field.fmt, path)
        case "jrf": return jrf_value(asset, field.key, path)
    raise KeyError(field.name)


def prefix_of(stem: str, by: str | int) -> tuple[str, str]:
    """('SPO', 'match') for 'SPO_match' and '_'; a fixed length takes that many characters. A name without
    the separator has no prefix, so it routes by the map's default rather than by its whole name."""
    if isinstance(by, int):
        return (stem[:by], stem[by:]) if len(stem) > by else ("", stem)
    head, sep, tail = stem.partition(by)
    return (head, tail) if sep and head else ("", stem)


def date_of(asset: Asset, source: str) -> datetime:
    """system: when the file was detected (stable across retries); file: its modification time; metadata:
    the date created field (with its time), else EXIF's original date, else the file's date."""
    if source == "file":
        return asset.mtime
    if source == "metadata":
        from flowd.metadata.fields import DEFAULT_FIELDS

        meta = asset.metadata()
        for key in (55, 350):
            found = meta.date(DEFAULT_FIELDS.resolve(key))
            if found is not None:
                return found
        return asset.mtime
    return asset.detected_at


def meta_value(asset: Asset, field: FieldDef, fmt: str | None, path: bool) -> str:
    """In a path, a value is made safe for one segment: a caption holding '/' or '..' must not create
    folders or climb out of the target (map tables, written by the site, may add '/' on purpose)."""
    meta = asset.metadata()
    if fmt:
        when = meta.date(field)
        return format_date(when, fmt) if when is not None else ""
    text = meta.text(field)
    return safe_segment(text) if path else text


def ftp_value(asset: Asset, fact: str, fmt: str | None, path: bool) -> str:
    """An upload fact; empty for an asset that did not arrive over FTP. A user name is safe in a path already
    (names are checked when a user is added); made safe anyway, as every other value from outside is."""
    up = asset.upload
    if up is None:
        return ""
    if fact == "time":
        return format_date(datetime.fromtimestamp(up.at), fmt or "%Y-%m-%dT%H%M%S")
    value = {"user": up.user, "group": up.group, "client": up.client}[fact]
    return safe_segment(value) if path else value


def jrf_value(asset: Asset, fact: str, path: bool) -> str:
    """A job request's fact; empty for an asset no JRF named. `output` is the requested file's name only
    (the full path is where the output is copied to): a Windows path never becomes a key here."""
    request = asset.request
    if request is None:
        return ""
    if fact == "output":
        value = request.get("output_name", "")
    elif fact == "input":
        value = request.get("M_INPUT_FILE", "")
    else:
        value = request.get(fact, "")
    return safe_segment(value) if path else value


def safe_segment(value: str) -> str:
    value = _UNSAFE.sub("_", value).strip()
    return "_" * len(value) if value and set(value) == {"."} else value
