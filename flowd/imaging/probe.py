"""What an image is, from its header: size, colour mode, depth, profile, orientation, resolution, pages.

libvips opens files lazily, so `probe` parses the header and decodes no pixels: it costs about the same for
a 24-megapixel JPEG as for a thumbnail. Photoshop files are read by flowd's own PSD header reader
(`flowd.imaging.psd`), because the libvips wheel has no ImageMagick loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowd.imaging import _vips

Color = Literal["rgb", "cmyk", "gray", "other"]

_COLORS: dict[str, Color] = {"srgb": "rgb", "rgb": "rgb", "rgb16": "rgb", "scrgb": "rgb", "cmyk": "cmyk",
                             "b-w": "gray", "grey16": "gray"}
_FAMILIES = {"uhdr": "jpeg"}  # Ultra HDR: a JPEG (plus a gain map libvips leaves aside when it processes)
_BITS = {"uchar": 8, "char": 8, "ushort": 16, "short": 16, "uint": 32, "int": 32, "float": 32, "double": 64}


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """Header facts of an image. `format` is the loader family (jpeg, tiff, png, webp, gif, psd, heif, svg ...);
    `bits` is per channel (8 or 16; 32 for float images); `xres_dpi`/`yres_dpi` are None when the file
    declares no resolution; `orientation` is the EXIF orientation (1 when absent); `pages` counts the pages
    or frames of a multi-page file (1 otherwise); `width`/`height` are those of the first page, as stored
    (not rotated by the orientation)."""

    format: str
    width: int
    height: int
    bands: int
    color: Color
    bits: int
    has_icc: bool
    orientation: int
    xres_dpi: float | None
    yres_dpi: float | None
    pages: int
    alpha: bool

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as displayed: swapped for the orientations that turn the image by 90 degrees."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


def probe(path: Path) -> ImageFacts:
    """Header facts of the image at `path`. Undecodable -> PermanentError("cannot read image: <vips' reason>");
    a real format this libvips cannot load (PDF without a PDF loader) -> UnsupportedImageError."""
    _vips.ensure_configured()
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"8BPS"):
        from flowd.imaging import psd

        return psd.probe(path)
    if head.startswith(b"%PDF-") and not _vips.has_operation("pdfload"):
        raise _vips.UnsupportedImageError("cannot read image: this libvips build has no PDF loader")
    try:
        im = _vips.Image.new_from_file(str(path), access="sequential")
        return facts_of(im)
    except _vips.Error as exc:
        raise _vips.read_error(exc, path) from None


def facts_of(im: _vips.VImage, fmt: str | None = None) -> ImageFacts:
    """Facts of a vips image (its header fields); `fmt` overrides the loader family."""
    if fmt is None:
        loader = str(im.get("vips-loader")) if im.get_typeof("vips-loader") else "unknown"
        fmt = re.sub(r"load(_source|_buffer)?$", "", loader) or "unknown"
        fmt = _FAMILIES.get(fmt, fmt)
    bands = int(im.bands)
    interpretation = str(im.interpretation)
    color: Color = _COLORS.get(interpretation, "other")
    if interpretation == "multiband" and bands in (1, 2):
        color = "gray"
    resolution = bool(im.get_typeof("resolution-unit"))
    orientation = _vips.get_int(im, "orientation", 1)
    return ImageFacts(
        format=fmt,
        width=int(im.width),
        height=int(im.height),
        bands=bands,
        color=color,
        bits=_BITS.get(str(im.format), 8),
        has_icc=bool(im.get_typeof("icc-profile-data")),
        orientation=orientation if 1 <= orientation <= 8 else 1,
        xres_dpi=round(float(im.xres) * 25.4, 3) if resolution else None,
        yres_dpi=round(float(im.yres) * 25.4, 3) if resolution else None,
        pages=max(1, _vips.get_int(im, "n-pages", 1)),
        alpha=bool(im.hasalpha()),
    )
