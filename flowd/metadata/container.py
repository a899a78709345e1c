"""The bytes around the metadata: where a JPEG's header ends (exiv2 edits only that part), whether a
written file is still whole (markers and lengths only), and exiv2's values decoded with a fallback
encoding. Split from model.py, which keeps the field semantics."""

from __future__ import annotations

from typing import Any

Raw = dict[str, Any]


def reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def decode(read: Any) -> Raw:
    """pyexiv2 decodes every value with one encoding and fails on the first byte that does not fit."""
    for encoding in ("utf-8", "latin-1"):
        try:
            return dict(read(encoding=encoding))
        except UnicodeDecodeError:
            continue
    return {}


def container_problem(image: Any, mime: str, data: bytes) -> str | None:
    """Why the bytes are not a whole file of their format, or None. Cheap: markers and lengths only."""
    got_mime = image.get_mime_type()
    if got_mime != mime:
        return f"it now reads as {got_mime}, not {mime}"
    if mime == "image/jpeg":
        return _jpeg_problem(data)
    if mime == "image/png":
        ok = data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and data.rfind(b"IEND") > 0
        return None if ok else "the PNG has no IHDR or IEND chunk"
    if mime == "image/webp":
        size = int.from_bytes(data[4:8], "little") + 8
        return None if size in (len(data), len(data) - 1) else f"the RIFF size says {size} bytes, not {len(data)}"
    if mime == "image/x-photoshop":
        return _psd_problem(data)
    if mime == "image/tiff":
        return tiff_problem(image, data)
    return None


def tiff_problem(image: Any, data: bytes) -> str | None:
    """The first image's strips or tiles lie inside the file, and libvips (which decodes it later) can
    read its header."""
    import pyvips

    exif = decode(image.read_exif)
    for offsets, counts in (("StripOffsets", "StripByteCounts"), ("TileOffsets", "TileByteCounts")):
        starts, sizes = (str(exif.get(f"Exif.Image.{k}", "")).split() for k in (offsets, counts))
        ends = [int(a) + int(b) for a, b in zip(starts, sizes, strict=False) if a.isdigit() and b.isdigit()]
        if ends and max(ends) > len(data):
            return f"the TIFF image data is truncated ({len(data)} of {max(ends)} bytes)"
    try:
        pyvips.Image.new_from_buffer(data, "", access="sequential").width  # noqa: B018 - reads the header
    except pyvips.Error as exc:
        return f"libvips cannot read the TIFF header ({reason(exc)})"
    return None


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_EOI = b"\xff\xd9"


def jpeg_scan(data: bytes) -> tuple[int, int] | None:
    """Where a JPEG's first scan header starts and ends; None if not a JPEG or no scan is found."""
    found = _walk_jpeg(data)
    return found if isinstance(found, tuple) else None


def jpeg_head(data: bytes, scan: tuple[int, int] | None) -> bytes:
    return data if scan is None else data[:scan[1]] + _EOI


def join_head(head: bytes, data: bytes, scan: tuple[int, int] | None) -> bytes | None:
    """The edited head with the original image data after it; None if the scan header did not survive."""
    if scan is None:
        return head
    if not head.endswith(data[scan[0]:scan[1]] + _EOI):
        return None
    return b"".join((memoryview(head)[:-2], memoryview(data)[scan[1]:]))


def _walk_jpeg(data: bytes) -> tuple[int, int] | str:
    """Walk the segments to the first scan: its header's (start, end), or why the JPEG is not whole."""
    if not data.startswith(b"\xff\xd8"):
        return "no JPEG start marker"
    i, frame = 2, False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return f"no JPEG marker at byte {i}"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            return (i, end) if frame and end <= len(data) else "a scan without a frame header"
        if marker == 0xD9:
            return "the JPEG ends before its image data"
        frame = frame or marker in _SOF
        i = end
    return "the JPEG is truncated (no image data)"


def _jpeg_problem(data: bytes) -> str | None:
    """The image data must end with an EOI marker after the first scan (trailers after it are fine)."""
    found = _walk_jpeg(data)
    if isinstance(found, str):
        return found
    return None if data.rfind(_EOI) >= found[1] else "the JPEG is truncated (no end-of-image marker)"


def _psd_problem(data: bytes) -> str | None:
    """Header, the three length-prefixed sections, then enough image data for the declared size."""
    if len(data) < 26 or not data.startswith(b"8BPS") or data[4:6] not in (b"\x00\x01", b"\x00\x02"):
        return "no Photoshop header"
    big = data[5] == 2  # PSB: 8-byte layer section length, 4-byte RLE counts
    channels, height, width = (int.from_bytes(data[a:b], "big") for a, b in ((12, 14), (14, 18), (18, 22)))
    depth = int.from_bytes(data[22:24], "big")
    i = 26
    for size in (4, 4, 8 if big else 4):
        i += size + int.from_bytes(data[i:i + size], "big")
    if i + 2 > len(data):
        return "the Photoshop sections run past the end of the file"
    compression, rest = int.from_bytes(data[i:i + 2], "big"), len(data) - i - 2
    if compression == 0:
        need = channels * height * ((width * depth + 7) // 8)
    elif compression == 1:
        n = 4 if big else 2
        counts = data[i + 2:i + 2 + channels * height * n]
        need = len(counts) + sum(int.from_bytes(counts[j:j + n], "big") for j in range(0, len(counts), n))
        if len(counts) < channels * height * n:
            need = channels * height * n
    else:
        return None  # ZIP-compressed image data: no cheap length check
    return None if rest >= need else f"the Photoshop image data is truncated ({rest} of {need} bytes)"
