"""Color Factory's dynamic codes (`%%INS...`) in metadata content.

Accepted syntax (codes are upper case; the longest known code wins, so `%%INSLDATE` is never `%%INS`+`LDATE`,
and text may follow a code directly: `%%INSDATE_x` is the date then `_x`):

    %%INSDATE          today as an IPTC date, CCYYMMDD          %%INSDATE+2, %%INSDATE-1: shifted by days
    %%INSLDATE         long date: 28 November 2026 (English month names, whatever the locale)
    %%INSTIME          IPTC time HHMMSS+HHMM                    %%INSLTIME: HH:MM:SS
    %%INSXMPDATE       ISO 8601 date-time with offset: 2026-11-28T14:03:00+01:00
    %%INSDAYDATE+n     CCYYMMDD n days ahead (or -n behind); without +n/-n, today
    %%INSHOURDATE-n    ISO 8601 date-time n hours behind (or +n ahead): the time matters at this grain
    %%INSSECDATE+n     ISO 8601 date-time n seconds ahead (or -n behind)
    %%INSFILENAME  %%INSFOLDER (parent folder's name)  %%INSPATH (full path)
    %%INSPPL %%INSNOL  pixel width / height (empty when unknown)
    %%INSCOL           colour space (RGB, CMYK, Gray)
    %%INSRESINCH       resolution in pixels per inch (300, or 72.5); %%INSRESCM per centimetre (118.11)
    %%INSUID           the caller's unique id                   %%INSSYSLOGIN: the daemon's login

A naive `now` is local time; its offset (for %%INSTIME and the ISO forms) comes from the system zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_SHIFTED = {"DATE": "days", "DAYDATE": "days", "HOURDATE": "hours", "SECDATE": "seconds"}
_PLAIN = ("LDATE", "LTIME", "TIME", "XMPDATE", "FILENAME", "FOLDER", "PATH", "PPL", "NOL", "COL", "RESINCH",
          "RESCM", "UID", "SYSLOGIN")
KNOWN_CODES: tuple[str, ...] = tuple(f"%%INS{c}" for c in (*_SHIFTED, *_PLAIN))
_NAMES = "|".join(sorted((*_SHIFTED, *_PLAIN), key=len, reverse=True))
_CODE = re.compile(rf"%%INS(?:(?P<code>{_NAMES})(?P<shift>[+-]\d+)?|(?P<bad>[A-Za-z]*))")


@dataclass(frozen=True, slots=True)
class CodeFacts:
    now: datetime
    filename: str
    folder: str
    path: str
    width: int | None
    height: int | None
    color: str | None
    xres_dpi: float | None
    uid: str
    login: str


def unknown_codes(text: str) -> list[str]:
    """Every `%%INS...` in `text` that is not a known code, as written (for a load-time rule error)."""
    return [f"%%INS{m['bad']}" for m in _CODE.finditer(text) if m["code"] is None]


def expand_codes(text: str, facts: CodeFacts) -> str:
    """`text` with every code replaced; ValueError names an unknown code and lists the known ones."""
    bad = unknown_codes(text)
    if bad:
        raise ValueError(f"unknown dynamic code {bad[0]}; known codes: {', '.join(KNOWN_CODES)}")
    return _CODE.sub(lambda m: _expand(m["code"], m["shift"], facts), text)


def _expand(code: str, shift: str | None, facts: CodeFacts) -> str:
    now = facts.now if facts.now.tzinfo is not None else facts.now.astimezone()
    if code in _SHIFTED:
        when = now + timedelta(**{_SHIFTED[code]: int(shift or 0)})
        return when.strftime("%Y%m%d") if code in ("DATE", "DAYDATE") else when.isoformat(timespec="seconds")
    if shift is not None:  # only the shifted codes take +n/-n: keep the text that followed
        return _expand(code, None, facts) + shift
    match code:
        case "LDATE":
            return f"{now.day} {_MONTHS[now.month - 1]} {now.year}"
        case "TIME":
            return now.strftime("%H%M%S%z")
        case "LTIME":
            return now.strftime("%H:%M:%S")
        case "XMPDATE":
            return now.isoformat(timespec="seconds")
        case "FILENAME":
            return facts.filename
        case "FOLDER":
            return facts.folder
        case "PATH":
            return facts.path
        case "PPL":
            return "" if facts.width is None else str(facts.width)
        case "NOL":
            return "" if facts.height is None else str(facts.height)
        case "COL":
            return facts.color or ""
        case "RESINCH":
            return _number(facts.xres_dpi)
        case "RESCM":
            return _number(None if facts.xres_dpi is None else facts.xres_dpi / 2.54)
        case "UID":
            return facts.uid
        case _:  # SYSLOGIN
            return facts.login


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}".rstrip("0").rstrip(".")
