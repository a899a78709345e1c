"""IPTC-IIM in its two containers, and the XMP orientation flag.

libvips keeps IPTC as an opaque "iptc-data" blob whose shape depends on where it came from: from a JPEG it
is the whole APP13 payload ("Photoshop 3.0" + 8BIM image resources, one of which, 0x0404, holds the IIM
records); from a TIFF it is the bare IIM of tag 33723. jpegsave writes the blob as APP13 only in the first
shape, so flowd normalises it before saving.
"""

from __future__ import annotations

import re
import struct

PHOTOSHOP = b"Photoshop 3.0\x00"
IPTC_RESOURCE = 0x0404
# Image resources that describe pixels which no longer exist after processing: thumbnails.
STALE_RESOURCES = frozenset({0x0409, 0x040C})


def iim(blob: bytes | None) -> bytes | None:
    """The bare IIM records from either shape of "iptc-data"; None when there are none."""
    if not blob:
        return None
    if blob.startswith(PHOTOSHOP):
        for rid, data in resources(blob):
            if rid == IPTC_RESOURCE:
                return data or None
        return None
    return blob if blob[:1] == b"\x1c" else None


def resources(blob: bytes) -> list[tuple[int, bytes]]:
    """The 8BIM image resources of an APP13 payload, in order (malformed tails are ignored)."""
    found: list[tuple[int, bytes]] = []
    pos = len(PHOTOSHOP) if blob.startswith(PHOTOSHOP) else 0
    while pos + 12 <= len(blob) and blob[pos:pos + 4] == b"8BIM":
        (rid,) = struct.unpack_from(">H", blob, pos + 4)
        name_len = blob[pos + 6]
        pos += 6 + _even(1 + name_len)
        if pos + 4 > len(blob):
            break
        (size,) = struct.unpack_from(">I", blob, pos)
        found.append((rid, blob[pos + 4:pos + 4 + size]))
        pos += 4 + _even(size)
    return found


def app13(records: bytes) -> bytes:
    """An APP13 payload holding just the IIM `records`."""
    return pack([(IPTC_RESOURCE, records)])


def pack(items: list[tuple[int, bytes]]) -> bytes:
    """An APP13 payload of (resource id, data) items, unnamed."""
    out = bytearray(PHOTOSHOP)
    for rid, data in items:
        out += b"8BIM" + struct.pack(">HHI", rid, 0, len(data)) + data
        if len(data) % 2:
            out += b"\x00"
    return bytes(out)


def for_jpeg(blob: bytes | None, photoshop_data: bool) -> bytes | None:
    """"iptc-data" as jpegsave needs it. With `photoshop_data` the source's other image resources stay
    (minus thumbnails of the old pixels); without, only the IPTC resource is written (JPEG for Web)."""
    if not blob:
        return None
    if blob.startswith(PHOTOSHOP):
        keep = photoshop_data
        items = [(rid, data) for rid, data in resources(blob)
                 if rid == IPTC_RESOURCE or (keep and rid not in STALE_RESOURCES)]
    else:
        records = iim(blob)
        items = [(IPTC_RESOURCE, records)] if records else []
    return pack(items) if items else None


_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\']|<tiff:Orientation>\s*)[1-8]')


def xmp_upright(xmp: bytes) -> bytes:
    """XMP whose tiff:Orientation says 1, for pixels that have been turned upright."""
    return _XMP_ORIENTATION.sub(rb"\g<1>1", xmp)


def _even(n: int) -> int:
    return n + n % 2
