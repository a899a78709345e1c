"""Writing the output file, and which metadata reaches it.

What libvips 8.18 carries from its "exif-data", "xmp-data", "iptc-data" and "icc-profile-data" fields:

| output | EXIF | XMP | IPTC | ICC |
|--------|------|-----|------|-----|
| JPEG   | yes  | yes | yes, as APP13, if the blob is an APP13 payload (normalised here) | yes |
| TIFF   | no   | yes | broken (tag 33723 written with a quarter of its length), so flowd writes IPTC itself | yes |
| PNG    | yes (eXIf) | yes | no | yes |
| WebP   | yes  | yes | no: WebP has no IPTC chunk; IPTC is dropped (XMP usually mirrors it) | yes |

libvips reads IPTC from JPEG, TIFF and PSD sources (PSD: flowd's reader), not from PNG text chunks.

flowd fills the gaps with exiv2 (pyexiv2) after libvips has written the file: EXIF and IPTC for TIFF,
IPTC for PNG, and IPTC of PNG sources for every output that can hold it, copied from the source file.
exiv2 rewrites the output in memory to do so, which costs about the output's size in RAM for TIFF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from flowd.imaging import _iptc, _vips
from flowd.imaging._vips import VImage
from flowd.imaging.spec import FormatSpec

KEEP_ALL = int(pyvips.enums.ForeignKeep.ALL)
KEEP_ICC = int(pyvips.enums.ForeignKeep.ICC)
KEEP_WEB = int(pyvips.enums.ForeignKeep.XMP | pyvips.enums.ForeignKeep.IPTC)
_TIFF_COMPRESSION = {"lzw": "lzw", "deflate": "deflate", "jpeg": "jpeg", "none": "none"}


def save(im: VImage, path: Path, kind: str, fmt: FormatSpec, keep_metadata: bool) -> dict[str, Any]:
    """Write `im` as `kind` (jpeg, jpeg_web, tiff, png, webp); returns save options for the record.
    The ICC profile written is whatever "icc-profile-data" holds (the caller decides)."""
    keep = KEEP_ALL if keep_metadata else KEEP_ICC
    if kind == "jpeg_web":
        keep = (KEEP_WEB if keep_metadata else 0) | KEEP_ICC
    if kind in ("jpeg", "jpeg_web"):
        im = _vips.set_blob(im, "iptc-data", _iptc.for_jpeg(_vips.get_blob(im, "iptc-data"), kind == "jpeg"))
        options: dict[str, Any] = {"Q": fmt.quality, "optimize_coding": fmt.optimize, "interlace": fmt.progressive}
        im.jpegsave(str(path), keep=keep, **options)
    elif kind == "tiff":
        options = {"compression": _TIFF_COMPRESSION[fmt.compression]}
        if fmt.compression in ("lzw", "deflate"):
            options["predictor"] = "horizontal"
        if fmt.compression == "jpeg":
            options["Q"] = fmt.quality
        im = _vips.set_blob(im, "iptc-data", None)  # written by exiv2 afterwards, see the module docstring
        im.tiffsave(str(path), keep=keep, bigtiff=_needs_bigtiff(im), **options)
    elif kind == "png":
        options = {"compression": 6}
        im.pngsave(str(path), keep=keep, **options)
    elif kind == "webp":
        options = {"Q": fmt.quality, "lossless": fmt.lossless, "effort": 4}
        im.webpsave(str(path), keep=keep, **options)
    else:
        raise ValueError(f"cannot write {kind}")
    return {k: v for k, v in options.items() if k != "Q"} | ({"quality": fmt.quality} if "Q" in options else {})


def complete_metadata(src: Path, out: Path, kind: str, has_exif: bool, has_iptc: bool | None) -> tuple[list[str], bool]:
    """Copy what libvips could not write (see the module docstring) from `src` into `out` with exiv2.
    `has_iptc` None: libvips cannot read the source's IPTC (PNG text chunks), so exiv2 looks for it.
    Returns notes for the record and whether the source had IPTC. A failure is noted rather than raised:
    the pixels are fine, and the record says what is missing."""
    if kind == "webp":
        return (["IPTC dropped: WebP has no IPTC container (XMP kept)"] if has_iptc else []), bool(has_iptc)
    exif = has_exif and kind == "tiff"
    iptc = has_iptc is not False and (kind in ("tiff", "png") or has_iptc is None)
    if not (exif or iptc):
        return [], bool(has_iptc)
    notes: list[str] = []
    import pyexiv2  # loaded only when an output needs it

    found = bool(has_iptc)
    try:
        source = pyexiv2.Image(str(src))
        try:
            if has_iptc is None:
                found = bool(source.read_iptc())
                iptc = iptc and found
            if exif or iptc:
                target = pyexiv2.Image(str(out))
                try:
                    source.copy_to_another_image(target, exif=exif, iptc=iptc, xmp=False, comment=False, icc=False,
                                                 thumbnail=False)
                finally:
                    target.close()
        finally:
            source.close()
    except (RuntimeError, ValueError, OSError) as exc:
        what = " and ".join(name for name, on in (("EXIF", exif), ("IPTC", iptc)) if on)
        notes.append(f"{what} not copied: exiv2: {str(exc).strip() or type(exc).__name__}")
        return notes, found
    what = " and ".join(name for name, on in (("EXIF", exif), ("IPTC", iptc)) if on)
    if what:
        notes.append(f"{what} written with exiv2")
    return notes, found


def _needs_bigtiff(im: VImage) -> bool:
    size = int(im.width) * int(im.height) * int(im.bands) * (2 if im.format == "ushort" else 1)
    return size > 3_900_000_000
