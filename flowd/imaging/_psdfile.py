"""The structure of Photoshop files (PSD, PSB): header, image resources and section lengths.

Kept free of libvips so that the completeness check (flowd.imaging.complete) stays cheap to import.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from typing import BinaryIO, Literal

Color = Literal["rgb", "cmyk", "gray", "other"]

MODES: dict[int, tuple[str, Color, int]] = {  # mode -> (name, colour, colour channels)
    0: ("bitmap", "gray", 1), 1: ("grayscale", "gray", 1), 2: ("indexed", "other", 1), 3: ("rgb", "rgb", 3),
    4: ("cmyk", "cmyk", 4), 7: ("multichannel", "other", 1), 8: ("duotone", "other", 1), 9: ("lab", "other", 3),
}
SIGNATURES = (b"8BIM", b"MeSa", b"AgHg", b"PHUT", b"DCSR")
RES_RESOLUTION, RES_IPTC, RES_ICC, RES_EXIF, RES_XMP = 1005, 1028, 1039, 1058, 1060


@dataclass(frozen=True, slots=True)
class PsdInfo:
    version: int  # 1 = PSD, 2 = PSB (large document)
    channels: int
    height: int
    width: int
    depth: int
    mode: int
    resources: dict[int, bytes]
    layers: int  # layer count; negative: the first extra channel is the composite's transparency
    data_offset: int  # where the composite's compression word is
    size: int

    @property
    def color(self) -> Color:
        return MODES.get(self.mode, ("?", "other", 1))[1]

    @property
    def alpha(self) -> bool:
        colour = MODES.get(self.mode, ("?", "other", 1))[2]
        return self.layers < 0 and self.channels > colour

    @property
    def bands(self) -> int:
        return MODES.get(self.mode, ("?", "other", 1))[2] + (1 if self.alpha else 0)


def read_info(fh: BinaryIO, size: int) -> PsdInfo:
    """Header, resources and section lengths; raises ValueError/struct.error on anything malformed."""
    fh.seek(0)
    head = fh.read(26)
    sig, version, channels, height, width, depth, mode = struct.unpack(">4sH6xHIIHH", head)
    if sig != b"8BPS" or version not in (1, 2) or not 1 <= channels <= 56 or not width or not height:
        raise ValueError("not a valid PSD header")
    (colour_len,) = struct.unpack(">I", fh.read(4))
    fh.seek(26 + 4 + colour_len)
    (res_len,) = struct.unpack(">I", fh.read(4))
    res_start = fh.tell()
    found = parse_resources(fh.read(min(res_len, 64 << 20)))
    fh.seek(res_start + res_len)
    wide = version == 2
    layer_section = fh.tell()
    (mask_len,) = struct.unpack(">Q" if wide else ">I", fh.read(8 if wide else 4))
    layers = 0
    if mask_len:
        (info_len,) = struct.unpack(">Q" if wide else ">I", fh.read(8 if wide else 4))
        if info_len:
            (layers,) = struct.unpack(">h", fh.read(2))
    data_offset = layer_section + (8 if wide else 4) + mask_len
    return PsdInfo(version, channels, height, width, depth, mode, found, layers, data_offset, size)


def expected_size(fh: BinaryIO, info: PsdInfo) -> int | None:
    """How long the file must be to hold its composite; None when it cannot be told (ZIP composites)."""
    if info.data_offset + 2 > info.size:
        return info.data_offset + 2
    fh.seek(info.data_offset)
    (compression,) = struct.unpack(">H", fh.read(2))
    rows = info.channels * info.height
    if compression == 0:
        return info.data_offset + 2 + rows * row_bytes(info)
    if compression == 1:
        width = 4 if info.version == 2 else 2
        start = info.data_offset + 2 + rows * width
        if start > info.size:
            return start
        counts = row_counts(fh.read(rows * width), width)
        return start + sum(counts)
    return None


def parse_resources(block: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    pos = 0
    while pos + 12 <= len(block) and block[pos:pos + 4] in SIGNATURES:
        (rid,) = struct.unpack_from(">H", block, pos + 4)
        name_len = block[pos + 6]
        pos += 6 + padded(1 + name_len, 2)
        (size,) = struct.unpack_from(">I", block, pos)
        found.setdefault(rid, block[pos + 4:pos + 4 + size])
        pos += 4 + padded(size, 2)
    return found


def resolution(data: bytes | None) -> tuple[float, float] | None:
    """ResolutionInfo stores pixels per inch as 16.16 fixed point whatever unit the user displays."""
    if not data or len(data) < 16:
        return None
    h_res, _, _, v_res = struct.unpack_from(">IHHI", data)
    if h_res < 65536 or v_res < 65536:  # under 1 ppi: unset (ImageMagick writes 0)
        return None
    return round(h_res / 65536, 3), round(v_res / 65536, 3)


def orientation(exif: bytes) -> int:
    """EXIF orientation from a bare TIFF-structured EXIF block (Photoshop resource 1058)."""
    try:
        order = {b"II": "<", b"MM": ">"}[exif[:2]]
        (ifd,) = struct.unpack_from(order + "I", exif, 4)
        (count,) = struct.unpack_from(order + "H", exif, ifd)
        for i in range(count):
            tag, _kind, _n, value = struct.unpack_from(order + "HHIH", exif, ifd + 2 + 12 * i)
            if tag == 0x0112:
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error):
        pass
    return 1


def row_bytes(info: PsdInfo) -> int:
    return (info.width * info.depth + 7) // 8


def row_counts(table: bytes, width: int) -> list[int]:
    counts = array("H" if width == 2 else "I", table[: len(table) - len(table) % width])
    if sys.byteorder == "little":  # the table is big-endian
        counts.byteswap()
    return counts.tolist()


def padded(n: int, unit: int = 2) -> int:
    return n + (-n) % unit
