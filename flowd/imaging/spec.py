"""The `convert` action's arguments, validated when the rule loads (pydantic, `extra="forbid"`).

```yaml
- action: convert
  color: {to: srgb, assume: {rgb: srgb, cmyk: /profiles/ISOcoated_v2.icc}, intent: relative}
  resize: {fit: [2048, 2048]}
  sharpen: {amount: 80, radius: 0.8, threshold: 2}
  format: {type: jpeg, quality: 85, progressive: true}
  modes: {cmyk: process, gray: copy}
```
Profiles are libvips' built-ins (`srgb`, `cmyk`, `gray`, `p3`) or absolute paths of `.icc`/`.icm` files,
which must exist when the rule is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowd.imaging import _icc

ColorName = Literal["rgb", "cmyk", "gray"]
Intent = Literal["perceptual", "relative", "saturation", "absolute"]
Mode = Literal["process", "metadata_only", "copy", "skip"]
FormatType = Literal["jpeg", "jpeg_web", "tiff", "png", "webp", "same"]
Kernel = Literal["lanczos3", "lanczos2", "mitchell", "cubic", "linear", "nearest"]

_COLOR_NAMES: dict[str, ColorName] = {"rgb": "rgb", "cmyk": "cmyk", "gray": "gray"}
BUILTIN_SPACES: dict[str, ColorName] = {"srgb": "rgb", "p3": "rgb", "cmyk": "cmyk", "gray": "gray"}
DEFAULT_ASSUME: dict[str, str] = {"rgb": "srgb", "cmyk": "cmyk", "gray": "gray", "other": "srgb"}
PROFILE_HELP = "srgb, cmyk, gray, p3, or the absolute path of an .icc/.icm file"


def profile_space(value: str) -> ColorName:
    """Validate a profile reference and return the colour space it describes."""
    if value in BUILTIN_SPACES:
        return BUILTIN_SPACES[value]
    path = Path(value)
    if not path.is_absolute() or path.suffix.lower() not in (".icc", ".icm"):
        raise ValueError(f"expected {PROFILE_HELP}")
    try:
        with open(path, "rb") as fh:
            header = fh.read(128)
    except OSError as exc:
        raise ValueError(f"cannot read ICC profile {value}: {exc.strerror}") from None
    space = _COLOR_NAMES.get(_icc.space(header) or "")
    if space is None:
        raise ValueError(f"{value} is not an RGB, CMYK or gray ICC profile")
    return space


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColorSpec(_Spec):
    """Colour management. `to`: the output profile (omit to keep the input's colours and profile).
    `assume`: the input profile for files without one (or all files, with `ignore_embedded`): one profile,
    used for the inputs of its colour space, or one per mode `{rgb: ..., cmyk: ..., gray: ...}`; defaults
    srgb / cmyk / gray (gray is libvips' built-in sGrey, gamma as sRGB). `embed`: write the output profile
    into the file, or without `to` keep the input's (default: yes, except jpeg_web, which drops ICC profiles
    as Color Factory's "JPEG for Web" does). `intent` defaults to relative colorimetric; conversions to or
    from the profile a file is already in are skipped (sRGB variants count as one)."""

    to: str | None = None
    assume: str | dict[ColorName, str] | None = None
    ignore_embedded: bool = False
    embed: bool | None = None
    intent: Intent = "relative"
    black_point_compensation: bool = False

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        if value is not None:
            profile_space(value)
        return value

    @field_validator("assume")
    @classmethod
    def _assume(cls, value: str | dict[ColorName, str] | None) -> str | dict[ColorName, str] | None:
        if isinstance(value, dict):
            for mode, profile in value.items():
                if profile_space(profile) != mode:
                    raise ValueError(f"the {mode} profile {profile!r} is not a {mode} profile")
        elif value is not None:
            profile_space(value)
        return value

    def assumed(self, color: str) -> str:
        """The input profile to use for a file of `color` without a usable embedded profile."""
        if isinstance(self.assume, dict):
            for mode, profile in self.assume.items():
                if mode == color:
                    return profile
            return DEFAULT_ASSUME[color]
        if self.assume is not None and profile_space(self.assume) == color:
            return self.assume
        return DEFAULT_ASSUME[color]


class ResizeSpec(_Spec):
    """Exactly one of `fit: [W, H]` (within the box, aspect kept), `exact: [W, H]` (aspect not kept),
    `percent: 50`, `max_megapixels: 4`. Images are never enlarged unless `upscale: true`. Sizes apply to the
    stored pixels (the EXIF orientation is kept, not applied), except for jpeg_web, which turns the pixels
    upright because it drops EXIF."""

    fit: tuple[int, int] | None = None
    exact: tuple[int, int] | None = None
    percent: float | None = Field(None, gt=0, le=1000)
    max_megapixels: float | None = Field(None, gt=0)
    upscale: bool = False
    kernel: Kernel = "lanczos3"

    @field_validator("fit", "exact")
    @classmethod
    def _box(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= v <= 100_000 for v in value):
            raise ValueError("width and height must be between 1 and 100000 pixels")
        return value

    @model_validator(mode="after")
    def _one(self) -> ResizeSpec:
        given = [k for k in ("fit", "exact", "percent", "max_megapixels") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of fit, exact, percent, max_megapixels"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class SharpenSpec(_Spec):
    """Unsharp mask in Photoshop / Color Factory units: `amount` in percent, `radius` in pixels (the
    Gaussian's sigma), `threshold` in levels 0-255 (scaled for 16-bit images). Applied after resizing."""

    amount: float = Field(80, gt=0, le=500)
    radius: float = Field(0.8, gt=0, le=100)
    threshold: float = Field(2, ge=0, le=255)


_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "progressive": ("jpeg", "jpeg_web", "same"), "optimize": ("jpeg", "jpeg_web", "same"),
    "bits": ("tiff", "png", "same"), "compression": ("tiff", "same"), "lossless": ("webp", "same"),
}


class FormatSpec(_Spec):
    """The output file. `same` keeps the input's format when flowd can write it (jpeg, tiff, png, webp) and
    writes JPEG otherwise. `jpeg_web` is sRGB, 8-bit, without EXIF, ICC profile, thumbnail or Photoshop data,
    but with IPTC and XMP. `bits` (tiff, png) defaults to the input's depth; `compression` is TIFF's."""

    type: FormatType = "same"
    quality: int = Field(85, ge=1, le=100)
    progressive: bool = False
    optimize: bool = True
    bits: Literal[8, 16] | None = None
    compression: Literal["lzw", "deflate", "jpeg", "none"] = "lzw"
    lossless: bool = False

    @model_validator(mode="after")
    def _applies(self) -> FormatSpec:
        for option, types in _ONLY_FOR.items():
            if option in self.model_fields_set and self.type not in types:
                raise ValueError(f"{option} applies to format type {' / '.join(types[:-1])} only, not {self.type}")
        if self.bits == 16 and self.compression == "jpeg" and "compression" in self.model_fields_set:
            raise ValueError("TIFF with JPEG compression is 8-bit: drop bits: 16 or choose lzw, deflate or none")
        return self


class ModesSpec(_Spec):
    """Per colour mode of the input: `process` (the full pipeline), `metadata_only` (no pixel processing:
    the file goes on unchanged and later metadata steps still apply), `copy` (passed on untouched) or `skip`
    (the rule stops for this file, leaving it to other rules)."""

    rgb: Mode = "process"
    cmyk: Mode = "process"
    gray: Mode = "process"
    other: Mode = "process"


class ConvertSpec(_Spec):
    """Color Factory's channel processing with libvips, in its fixed order: colour management of CMYK
    input, resize, unsharp mask, colour management of RGB and gray input, output. Multi-page and animated
    files give their first page; layered PSD and TIFF files give their composite (all visible layers
    flattened), deliberately. `metadata: strip` writes no EXIF, IPTC or XMP."""

    color: ColorSpec | None = None
    resize: ResizeSpec | None = None
    sharpen: SharpenSpec | None = None
    format: FormatSpec = FormatSpec()
    modes: ModesSpec = ModesSpec()
    pages: Literal["first"] = "first"
    metadata: Literal["keep", "strip"] = "keep"
    strict: bool = False  # also refuse images the decoder only warns about (damaged but decodable data)
    # A header can claim any size: an upload saying 60000 x 60000 must be refused, not decoded.
    max_input_megapixels: float = Field(300, gt=0)

    @model_validator(mode="after")
    def _fits(self) -> ConvertSpec:
        to = self.color.to if self.color else None
        space = profile_space(to) if to else None
        kind = self.format.type
        if kind == "jpeg_web" and to not in (None, "srgb", "gray"):
            raise ValueError("jpeg_web is sRGB: color.to must be srgb (or gray), or be left out")
        if kind in ("png", "webp") and space == "cmyk":
            raise ValueError(f"{kind} cannot hold CMYK: choose format jpeg or tiff, or color.to srgb")
        return self
