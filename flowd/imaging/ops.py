"""Pixel operations as libvips graphs: sizes, resize, unsharp mask, bit depth, alpha.

Nothing here computes pixels by itself: each function adds operations to a lazy libvips pipeline that
runs, strip by strip on all cores, when the output is saved.
"""

from __future__ import annotations

import math

from flowd.imaging._vips import VImage
from flowd.imaging.spec import ResizeSpec

_INTERPRETATIONS = {("rgb", 8): "srgb", ("rgb", 16): "rgb16", ("gray", 8): "b-w", ("gray", 16): "grey16"}


def target_size(width: int, height: int, spec: ResizeSpec) -> tuple[int, int] | None:
    """The output size for an image of `width` x `height`, or None when it stays as it is (already fits,
    or only an enlargement would fit and `upscale` is off)."""
    if spec.fit is not None:
        scale = min(spec.fit[0] / width, spec.fit[1] / height)
        size = (min(spec.fit[0], max(1, round(width * scale))), min(spec.fit[1], max(1, round(height * scale))))
    elif spec.exact is not None:
        size = spec.exact
        scale = max(size[0] / width, size[1] / height)
    elif spec.percent is not None:
        scale = spec.percent / 100
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
    elif spec.max_megapixels is not None:
        scale = math.sqrt(spec.max_megapixels * 1_000_000 / (width * height))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    else:
        return None
    if size == (width, height) or (scale > 1 and not spec.upscale):
        return None
    return size


def load_shrink(width: int, height: int, size: tuple[int, int]) -> int:
    """The largest shrink-on-load factor (8, 4, 2) that still leaves at least the target size: the decoder
    (libjpeg in the DCT domain, libwebp) then produces a fraction of the pixels, and Lanczos does the rest."""
    factor = min(width / size[0], height / size[1])
    for shrink in (8, 4, 2):
        if factor >= shrink:
            return shrink
    return 1


def resize(im: VImage, size: tuple[int, int], kernel: str) -> VImage:
    """Resample to exactly `size`; alpha is premultiplied around the resample so edges do not darken."""
    hscale, vscale = size[0] / im.width, size[1] / im.height
    if im.hasalpha():
        fmt = im.format
        out = im.premultiply().resize(hscale, vscale=vscale, kernel=kernel).unpremultiply().cast(fmt)
    else:
        out = im.resize(hscale, vscale=vscale, kernel=kernel)
    if (out.width, out.height) != size:  # rounding at extreme ratios: pad by repeating the edge, or crop
        out = out.embed(0, 0, size[0], size[1], extend="copy")
    return out


def unsharp(im: VImage, amount: float, radius: float, threshold: float) -> VImage:
    """Photoshop's unsharp mask, per band, in the image's current space:
    out = in + amount/100 * (in - gaussblur(in, radius)) where |in - blur| > threshold, else in; clipped.
    `threshold` is in levels of 0-255 and scaled to 16-bit images. Alpha is left alone."""
    colour, alpha = split_alpha(im)
    fmt, interpretation = colour.format, colour.interpretation
    levels = threshold * (257 if fmt in ("ushort", "short") else 1)
    blur = colour.gaussblur(radius, min_ampl=0.05, precision="integer")
    diff = colour - blur  # signed: short for uchar input, int for ushort
    sharp = diff.linear(amount / 100, 0.5) + colour  # +0.5: the final cast truncates, so this rounds
    mask = diff.abs() > levels if levels > 0 else None
    out = (mask.ifthenelse(sharp, colour) if mask is not None else sharp).cast(fmt)
    out = out.copy(interpretation=interpretation)
    return out.bandjoin(alpha) if alpha is not None else out


def split_alpha(im: VImage) -> tuple[VImage, VImage | None]:
    if not im.hasalpha():
        return im, None
    return im.extract_band(0, n=im.bands - 1), im.extract_band(im.bands - 1)


def to_bits(im: VImage, bits: int, color: str) -> VImage:
    """8 <-> 16 bits per channel: down by dropping the low byte, up by x257 (so 255 becomes 65535)."""
    fmt = "ushort" if bits == 16 else "uchar"
    if im.format == fmt:
        return im
    if bits == 16:
        wide = im.cast("ushort")
        out = (wide << 8) | wide
    elif im.format in ("ushort", "short"):
        out = im.cast("uchar", shift=True)
    else:  # float or 32-bit images: clip into range
        out = im.cast(fmt)
    interpretation = _INTERPRETATIONS.get((color, bits), str(im.interpretation))
    return out.copy(interpretation=interpretation)


def flatten(im: VImage, color: str) -> VImage:
    """Composite alpha onto paper white (RGB/gray 255, CMYK no ink) for formats without transparency."""
    if not im.hasalpha():
        return im
    top = 65535 if im.format == "ushort" else 255
    background = [0.0] * (im.bands - 1) if color == "cmyk" else [float(top)] * (im.bands - 1)
    return im.flatten(background=background).cast(im.format).copy(interpretation=im.interpretation)
