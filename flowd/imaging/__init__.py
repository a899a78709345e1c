"""Pixels: facts from image headers, completeness of uploads, and Color Factory's conversions with libvips.

    from flowd.imaging.probe import probe, ImageFacts        # header facts, no pixel decode
    from flowd.imaging.complete import truncation            # is an upload visibly cut short?
    from flowd.imaging.convert import convert, ConvertSpec   # colour, size, sharpness, file format

The functions live in modules of the same name (`probe`, `convert`), so they are imported from there; the
package itself re-exports only the types. Importing the package costs nothing: libvips (pyvips) loads on
first use of `probe` or `convert`, so code that only checks completeness does not pay for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowd.imaging._vips import UnsupportedImageError
    from flowd.imaging.complete import truncation
    from flowd.imaging.convert import Converted
    from flowd.imaging.probe import Color, ImageFacts
    from flowd.imaging.spec import ConvertSpec

__all__ = ["Color", "ConvertSpec", "Converted", "ImageFacts", "UnsupportedImageError", "truncation"]

_HOMES = {
    "Color": "probe", "ImageFacts": "probe", "truncation": "complete", "Converted": "convert",
    "ConvertSpec": "spec", "UnsupportedImageError": "_vips",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowd.imaging' has no attribute {name!r}")
    return getattr(import_module(f"flowd.imaging.{home}"), name)
