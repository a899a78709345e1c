"""Is a file visibly cut short? Each format's own structure says where it must end.

An FTP upload that dies mid-transfer still looks like a finished file (components.md: pyftpdlib reports
`on_file_received` for it). `truncation` reads only what the format needs: a JPEG's marker segments up to
its first scan and its tail, a PNG's or PDF's tail, a TIFF's directories and strip/tile tables, the
section lengths of a PSD, the RIFF size of a WebP. It never decodes pixels and never raises on garbage:
a file that is not what its format says returns None, and libvips decides later whether it is corrupt.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from flowd.imaging._psdfile import expected_size, read_info

TAIL = 1 << 20  # how far before the end a JPEG's end-of-image marker is looked for (trailing junk)


def truncation(path: Path, fmt: str) -> str | None:
    """A reason string if the file at `path` (sniffed as `fmt`) is visibly incomplete, else None.
    OSError (the file vanished, cannot be read) propagates."""
    check = _CHECKS.get(fmt)
    if check is None:
        return None
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            return check(fh, size)
        except (ValueError, struct.error, IndexError, OverflowError):
            return None


def _jpeg(fh: BinaryIO, size: int) -> str | None:
    """Walk the marker segments to the first scan (so an EXIF thumbnail's own FFD9 does not count), then
    look for the end-of-image marker in the tail. FFD9 cannot occur inside entropy-coded data, and any
    bytes after it (zero padding, a camera's trailer, an appended motion-photo video) are ignored."""
    fh.seek(0)
    if fh.read(2) != b"\xff\xd8":
        return None
    pos, trailer = 2, 0
    for _ in range(10_000):
        fh.seek(pos)
        head = fh.read(4)
        if len(head) < 4:
            return _header_cut(fh, size, f"the file ends inside the JPEG header (byte {size})")
        if head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            return None  # an image without a scan: corrupt, not truncated; libvips says why
        (length,) = struct.unpack(">H", head[2:4])
        if length < 2:
            return None
        if marker == 0xDA:
            break
        if marker == 0xE1 and pos + 2 + length <= size:
            trailer = max(trailer, _motion_trailer(fh.read(length - 2)))
        pos += 2 + length
        if pos > size:
            return _header_cut(fh, size, f"the file ends inside a JPEG header segment (needs byte {pos}, has {size})")
    else:
        return None
    scan = pos
    fh.seek(max(scan, size - 16))
    if b"\xff\xd9" in fh.read(16):  # the usual case: the marker is (nearly) the last thing in the file
        return None
    ends = [size]
    if trailer and trailer < size:
        ends.append(size - trailer)
    fh.seek(max(scan, size - 8))
    last = fh.read(8)
    if last.endswith(b"SEFT"):  # Samsung trailer: ... data, u32 LE length, "SEFT"
        (seft,) = struct.unpack("<I", last[:4])
        if seft + 8 < size:
            ends.append(size - seft - 8)
    for end in ends:
        start = max(scan, end - TAIL)
        if end > start:
            fh.seek(start)
            if fh.read(min(end + 16, size) - start).rfind(b"\xff\xd9") >= 0:
                return None
    return "JPEG has no end-of-image marker (FFD9): the file is cut short"


def _header_cut(fh: BinaryIO, size: int, reason: str) -> str | None:
    """A header that runs past the end is a cut file, unless the file ends with an end-of-image marker:
    then it is a short malformed JPEG (garbage for libvips to refuse), not an upload still arriving."""
    fh.seek(max(0, size - 2))
    return None if fh.read(2) == b"\xff\xd9" else reason


_MICRO_VIDEO = re.compile(rb'MicroVideoOffset\s*=\s*"(\d+)"')
_ITEM_LENGTH = re.compile(rb'Item:Length\s*=\s*"(\d+)"')


def _motion_trailer(segment: bytes) -> int:
    """Bytes appended after the JPEG (a motion photo's video), as its XMP declares them."""
    if not segment.startswith(b"http://ns.adobe.com/xap/1.0/"):
        return 0
    micro = _MICRO_VIDEO.search(segment)
    if micro:
        return int(micro.group(1))
    return sum(int(m) for m in _ITEM_LENGTH.findall(segment))


def _png(fh: BinaryIO, size: int) -> str | None:
    fh.seek(0)
    if fh.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    fh.seek(max(8, size - 65536))
    if b"IEND\xaeB`\x82" in fh.read():
        return None
    return "PNG has no IEND chunk: the file is cut short"


def _pdf(fh: BinaryIO, size: int) -> str | None:
    fh.seek(0)
    if not fh.read(5).startswith(b"%PDF-"):
        return None
    fh.seek(max(0, size - 2048))
    if b"%%EOF" in fh.read():
        return None
    return "PDF has no %%EOF marker in its last 2 KB: the file is cut short"


def _gif(fh: BinaryIO, size: int) -> str | None:
    """A complete GIF ends with a block terminator (00) and the trailer (3B); a few bytes of junk after
    it are tolerated."""
    fh.seek(0)
    if fh.read(6) not in (b"GIF87a", b"GIF89a"):
        return None
    fh.seek(max(6, size - 32))
    if b"\x00\x3b" in fh.read():
        return None
    return "GIF has no trailer (3B): the file is cut short"


def _webp(fh: BinaryIO, size: int) -> str | None:
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    (riff,) = struct.unpack("<I", head[4:8])
    if 8 + riff > size:
        return f"WebP RIFF header says {8 + riff} bytes but the file has {size}"
    return None


def _psd(fh: BinaryIO, size: int) -> str | None:
    fh.seek(0)
    head = fh.read(26)
    if not head.startswith(b"8BPS"):
        return None
    if len(head) < 26:
        return f"the file ends inside the PSD header (byte {size})"
    (version,) = struct.unpack(">H", head[4:6])
    if version not in (1, 2):
        return None
    pos = 26
    sections = (("colour mode data", 4), ("image resources", 4), ("layer and mask", 8 if version == 2 else 4))
    for section, width in sections:
        if pos + width > size:
            return f"the file ends before the PSD {section} section (byte {size})"
        fh.seek(pos)
        (length,) = struct.unpack(">Q" if width == 8 else ">I", fh.read(width))
        pos += width + length
        if pos > size:
            return f"the PSD {section} section ends at byte {pos} but the file has {size}"
    if pos + 2 > size:
        return f"the file ends before the PSD composite image (byte {size})"
    need = expected_size(fh, read_info(fh, size))
    if need is not None and need > size:
        return f"the PSD composite image ends at byte {need} but the file has {size}"
    return None


_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_ARRAY_FORMATS = {3: "H", 4: "I", 13: "I", 16: "Q"}
_DATA_TAGS = {273: 279, 324: 325}  # StripOffsets -> StripByteCounts, TileOffsets -> TileByteCounts
MAX_IFDS = 10_000
MAX_ENTRIES = 1 << 22


def _tiff(fh: BinaryIO, size: int) -> str | None:
    """Walk the IFD chain (classic and BigTIFF, either byte order); every directory, the values of its
    tags (strip and tile tables, ICC profile, XMP ...) and the image data the strips and tiles point to
    must lie inside the file."""
    start = _tiff_start(fh)
    if start is None:
        fh.seek(0)
        head = fh.read(16)
        classic, big = head[:4] in (b"II*\x00", b"MM\x00*"), head[:4] in (b"II+\x00", b"MM\x00+")
        if (classic and len(head) < 8) or (big and len(head) < 16):
            return f"the file ends inside the TIFF header (byte {size})"
        return None
    order, big, ifd = start
    seen: set[int] = set()
    index = 0
    while ifd:
        if ifd in seen or index >= MAX_IFDS:
            return None  # a loop: corrupt rather than cut short
        seen.add(ifd)
        reason, ifd = _tiff_ifd(fh, size, order, big, ifd, index)
        if reason:
            return reason
        index += 1
    return None


def tiff_tags(path: Path) -> set[int]:
    """The tags of a TIFF's first directory (empty for anything else): a header-only look, e.g. for
    Photoshop's layer data (37724)."""
    with open(path, "rb") as fh:
        try:
            start = _tiff_start(fh)
            if start is None:
                return set()
            order, big, ifd = start
            count_size, entry_size = (8, 20) if big else (2, 12)
            fh.seek(ifd)
            (count,) = struct.unpack(order + ("Q" if big else "H"), fh.read(count_size))
            table = fh.read(min(count, 4096) * entry_size)
            return {struct.unpack_from(order + "H", table, i)[0] for i in range(0, len(table) - 1, entry_size)}
        except struct.error:
            return set()


def _tiff_start(fh: BinaryIO) -> tuple[str, bool, int] | None:
    """(byte order, BigTIFF, offset of the first IFD), or None if this is no TIFF."""
    fh.seek(0)
    head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return None
    (magic,) = struct.unpack(order + "H", head[2:4])
    if magic == 42:
        return order, False, struct.unpack(order + "I", head[4:8])[0]
    if magic == 43 and len(head) == 16:
        return order, True, struct.unpack(order + "Q", head[8:16])[0]
    return None


def _tiff_ifd(fh: BinaryIO, size: int, order: str, big: bool, at: int, index: int) -> tuple[str | None, int]:
    count_size, entry_size, inline = (8, 20, 8) if big else (2, 12, 4)
    if at + count_size > size:
        return f"TIFF directory {index} starts at byte {at}, past the end of the file ({size} bytes)", 0
    fh.seek(at)
    (count,) = struct.unpack(order + ("Q" if big else "H"), fh.read(count_size))
    end = at + count_size + count * entry_size + inline
    if end > size:
        return f"TIFF directory {index} ends at byte {end}, past the end of the file ({size} bytes)", 0
    table = fh.read(count * entry_size + inline)
    arrays: dict[int, list[int]] = {}
    for i in range(count):
        entry = table[i * entry_size:(i + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if kind not in _TYPE_SIZES:
            continue
        (n,) = struct.unpack(order + ("Q" if big else "I"), entry[4:4 + inline])
        if n > MAX_ENTRIES:
            return None, 0  # implausible: corrupt rather than cut short; leave it to libvips
        length = n * _TYPE_SIZES[kind]
        raw = entry[4 + inline:4 + inline + length]
        if length > inline:
            (offset,) = struct.unpack(order + ("Q" if big else "I"), entry[4 + inline:4 + 2 * inline])
            if offset + length > size:
                return (f"TIFF directory {index}: the value of tag {tag} ends at byte {offset + length}, "
                        f"past the end of the file ({size} bytes)"), 0
            if tag in (273, 279, 324, 325):
                fh.seek(offset)
                raw = fh.read(length)
        if tag in (273, 279, 324, 325) and kind in _ARRAY_FORMATS:
            arrays[tag] = list(struct.unpack(f"{order}{n}{_ARRAY_FORMATS[kind]}", raw))
    for offsets_tag, counts_tag in _DATA_TAGS.items():
        offsets = arrays.get(offsets_tag)
        if not offsets:
            continue
        counts = arrays.get(counts_tag) or [1] * len(offsets)
        data_end = max((o + c for o, c in zip(offsets, counts, strict=False) if c), default=0)
        if data_end > size:
            kind_name = "strips" if offsets_tag == 273 else "tiles"
            return (f"TIFF directory {index}: image data ({kind_name}) ends at byte {data_end}, "
                    f"past the end of the file ({size} bytes)"), 0
    (following,) = struct.unpack(order + ("Q" if big else "I"), table[count * entry_size:])
    return None, following


_CHECKS: dict[str, Callable[[BinaryIO, int], str | None]] = {
    "jpeg": _jpeg, "png": _png, "pdf": _pdf, "gif": _gif, "webp": _webp, "psd": _psd, "tiff": _tiff,
}
