"""Photoshop files (PSD and PSB): header facts for `probe`, the composite image for `convert`.

The libvips wheel has no ImageMagick loader, so flowd reads Photoshop files itself, and deliberately
flattened: every PSD saved with "maximize compatibility" (Photoshop's default) carries a composite of all
visible layers after the layer section, and that composite is what Color Factory processes too. flowd
wraps the composite's bytes as they are (raw or PackBits rows, one plane per channel) in a small planar
TIFF in the work folder; libtiff inside libvips then decodes it sequentially, so a 2 GB layered PSD costs
a copy of its composite on disk and a few strips in memory. Photoshop stores CMYK inverted (0 = full ink);
it is inverted back after loading. Supported: RGB, CMYK and grayscale composites of 8 or 16 bits, raw or
RLE. Bitmap, indexed, Lab, duotone and multichannel files, 32-bit files and ZIP-compressed composites are
reported as unsupported (UnsupportedImageError).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from flowd.errors import PermanentError
from flowd.imaging import _iptc, _vips
from flowd.imaging._psdfile import (
    MODES,
    RES_EXIF,
    RES_ICC,
    RES_IPTC,
    RES_RESOLUTION,
    RES_XMP,
    PsdInfo,
    orientation,
    padded,
    read_info,
    resolution,
    row_bytes,
    row_counts,
)
from flowd.imaging.probe import ImageFacts

_PHOTOMETRIC = {"gray": 1, "rgb": 2, "cmyk": 5}


def probe(path: Path) -> ImageFacts:
    info = _read(path)
    dpi = resolution(info.resources.get(RES_RESOLUTION))
    exif = info.resources.get(RES_EXIF)
    return ImageFacts(
        format="psd", width=info.width, height=info.height, bands=info.bands, color=info.color,
        bits=info.depth, has_icc=RES_ICC in info.resources, orientation=orientation(exif) if exif else 1,
        xres_dpi=dpi[0] if dpi else None, yres_dpi=dpi[1] if dpi else None, pages=1, alpha=info.alpha,
    )


def load(path: Path, work: Path, fail_on: str = "error") -> tuple[_vips.VImage, PsdInfo]:
    """The composite as a vips image, with the file's ICC profile, EXIF, IPTC, XMP and resolution attached.
    Pixels are decoded from `work`, a TIFF written there; the caller deletes it after saving."""
    with open(path, "rb") as fh:
        try:
            info = read_info(fh, path.stat().st_size)
            _write_tiff(fh, info, work)
        except (ValueError, struct.error) as exc:
            raise PermanentError(f"cannot read image: PSD: {_why(exc)}") from None
    try:
        im = _vips.Image.new_from_file(str(work), access="sequential", fail_on=fail_on)
    except _vips.Error as exc:
        raise _vips.read_error(exc, path, work) from None
    if info.color == "cmyk":
        colour = im.extract_band(0, n=4).invert()
        im = (colour.bandjoin(im.extract_band(4)) if info.alpha else colour).copy(interpretation="cmyk")
    return _attach_metadata(im, info), info


def _read(path: Path) -> PsdInfo:
    with open(path, "rb") as fh:
        try:
            return read_info(fh, path.stat().st_size)
        except (ValueError, struct.error) as exc:
            raise PermanentError(f"cannot read image: PSD: {_why(exc)}") from None


def _attach_metadata(im: _vips.VImage, info: PsdInfo) -> _vips.VImage:
    res = info.resources
    dpi = resolution(res.get(RES_RESOLUTION))
    if dpi:
        im = _vips.set_str(im.copy(xres=dpi[0] / 25.4, yres=dpi[1] / 25.4), "resolution-unit", "in")
    im = _vips.set_blob(im, "icc-profile-data", res.get(RES_ICC))
    exif = res.get(RES_EXIF)
    if exif:
        im = _vips.set_blob(im, "exif-data", b"Exif\x00\x00" + exif)
        im = _vips.set_int(im, "orientation", orientation(exif))
    if RES_XMP in res:
        im = _vips.set_blob(im, "xmp-data", res[RES_XMP])
    if res.get(RES_IPTC):
        im = _vips.set_blob(im, "iptc-data", _iptc.app13(res[RES_IPTC]))
    return im


def _write_tiff(fh: BinaryIO, info: PsdInfo, out: Path) -> None:
    name, color, _ = MODES.get(info.mode, (f"mode {info.mode}", "other", 1))
    if color not in _PHOTOMETRIC or info.mode == 0:
        raise _vips.UnsupportedImageError(f"cannot read image: PSD in {name} mode is not supported")
    if info.depth not in (8, 16):
        raise _vips.UnsupportedImageError(f"cannot read image: {info.depth}-bit PSD is not supported")
    if info.data_offset + 2 > info.size:
        raise ValueError("the file ends before the composite image")
    fh.seek(info.data_offset)
    (compression,) = struct.unpack(">H", fh.read(2))
    planes, height, row = info.bands, info.height, row_bytes(info)
    if compression == 1:  # PackBits rows, preceded by a table of every row's byte count
        width = 4 if info.version == 2 else 2
        table = fh.read(info.channels * height * width)
        if len(table) < info.channels * height * width:
            raise ValueError("the composite's row table is truncated")
        counts = row_counts(table, width)[: planes * height]
        data_start, rows_per_strip, tiff_compression = fh.tell(), 1, 32773
    elif compression == 0:
        rows_per_strip = max(1, min(height, (64 << 10) // row))
        strips = -(-height // rows_per_strip)
        counts = [row * min(rows_per_strip, height - i * rows_per_strip) for i in range(strips)] * planes
        data_start, tiff_compression = fh.tell(), 1
    else:
        raise _vips.UnsupportedImageError("cannot read image: PSD composite with ZIP compression is not supported")
    total = sum(counts)
    if data_start + total > info.size:
        raise ValueError("the composite image is truncated")
    header = _tiff_header(info, color, counts, rows_per_strip, tiff_compression)
    if len(header) + total >= 1 << 32:
        raise _vips.UnsupportedImageError("cannot read image: PSD composite larger than 4 GB is not supported")
    with open(out, "wb") as dst:
        dst.write(header)
        fh.seek(data_start)
        _copy(fh, dst, total)


def _tiff_header(info: PsdInfo, color: str, counts: list[int], rows_per_strip: int, compression: int) -> bytes:
    """A big-endian TIFF header and single IFD for planar strips that follow it directly."""
    planes = info.bands
    entries: list[tuple[int, int, list[int]]] = [  # (tag, type: 3 SHORT / 4 LONG, values), sorted by tag
        (256, 4, [info.width]), (257, 4, [info.height]), (258, 3, [info.depth] * planes), (259, 3, [compression]),
        (262, 3, [_PHOTOMETRIC[color]]), (273, 4, [0] * len(counts)), (277, 3, [planes]),
        (278, 4, [rows_per_strip]), (279, 4, counts), (284, 3, [2]),
    ]
    if color == "cmyk":
        entries.append((332, 3, [1]))  # InkSet: CMYK
    if info.alpha:
        entries.append((338, 3, [2]))  # ExtraSamples: unassociated alpha

    def size(kind: int, values: list[int]) -> int:
        return len(values) * (2 if kind == 3 else 4)

    extra_at = 8 + 2 + 12 * len(entries) + 4
    position = extra_at + sum(padded(size(k, v), 4) for _, k, v in entries if size(k, v) > 4)
    offsets = []
    for count in counts:
        offsets.append(position)
        position += count
    entries[5] = (273, 4, offsets)
    ifd = bytearray(struct.pack(">2sHIH", b"MM", 42, 8, len(entries)))
    extra = bytearray()
    for tag, kind, values in entries:
        packed = struct.pack(f">{len(values)}{'H' if kind == 3 else 'I'}", *values)
        if len(packed) <= 4:
            ifd += struct.pack(">HHI", tag, kind, len(values)) + packed.ljust(4, b"\x00")
        else:
            ifd += struct.pack(">HHII", tag, kind, len(values), extra_at + len(extra))
            extra += packed.ljust(padded(len(packed), 4), b"\x00")
    ifd += b"\x00\x00\x00\x00"
    return bytes(ifd + extra)


def _copy(src: BinaryIO, dst: BinaryIO, length: int) -> None:
    while length > 0:
        chunk = src.read(min(length, 1 << 20))
        if not chunk:
            raise ValueError("the composite image is truncated")
        dst.write(chunk)
        length -= len(chunk)


def _why(exc: Exception) -> str:
    return "the header is truncated" if isinstance(exc, struct.error) else str(exc)
