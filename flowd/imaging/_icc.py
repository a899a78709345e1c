"""Just enough of an ICC profile to name it in a trace and to check it fits the image it is embedded in."""

from __future__ import annotations

import struct

# ICC header "data colour space" -> flowd's colour names.
_SPACES = {b"RGB ": "rgb", b"CMYK": "cmyk", b"GRAY": "gray", b"Lab ": "other", b"XYZ ": "other"}

# Descriptions of profiles that are sRGB in all but rounding: converting between them is a needless round trip.
SRGB_NAMES = frozenset({"srgb", "srgb iec61966-2.1", "srgb iec61966-2-1", "srgb built-in", "srgb v4 icc preference",
                        "srgb2014", "srgb iec61966-2.1 (equivalent)", "srgb iec61966-2-1 black scaled",
                        "srgb iec61966-2-1 no black scaling"})


def space(profile: bytes) -> str | None:
    """The colour space a profile converts from: rgb, cmyk, gray, other; None if it is no ICC profile."""
    if len(profile) < 128 or profile[36:40] != b"acsp":
        return None
    return _SPACES.get(profile[16:20], "other")


def description(profile: bytes) -> str:
    """The profile's 'desc' text (v2 textDescriptionType or v4 multiLocalizedUnicode), '' when unreadable."""
    try:
        (count,) = struct.unpack_from(">I", profile, 128)
        for i in range(min(count, 200)):
            sig, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
            if sig == b"desc":
                return _text(profile[offset:offset + size])
    except struct.error:
        pass
    return ""


def is_srgb(profile: bytes) -> bool:
    return description(profile).strip().lower() in SRGB_NAMES


def _text(tag: bytes) -> str:
    kind = tag[:4]
    if kind == b"desc":
        (length,) = struct.unpack_from(">I", tag, 8)
        return tag[12:12 + length].split(b"\x00", 1)[0].decode("latin-1").strip()
    if kind == b"mluc":
        count, _size = struct.unpack_from(">II", tag, 8)
        if count:
            _lang, length, offset = struct.unpack_from(">4sII", tag, 16)
            return tag[offset:offset + length].decode("utf-16-be", "replace").strip("\x00 ")
    if kind == b"text":
        return tag[8:].split(b"\x00", 1)[0].decode("latin-1").strip()
    return ""
