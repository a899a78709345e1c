"""convert: one image in, one image out, in Color Factory's fixed processing order.

    open -> colour management of CMYK input -> resize -> unsharp mask -> colour management of RGB/gray
    input (to the output profile) -> bit depth -> write

libvips builds the whole chain lazily and runs it once, strip by strip, while the output is written: a
24-megapixel JPEG fitted into 2048 px is decoded at half size by libjpeg (shrink-on-load), never held in
memory whole, and sharpened at the output size. Profiles are only applied when they change something: an
sRGB file going to sRGB is not converted at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowd.errors import PermanentError
from flowd.imaging import _icc, _iptc, _vips, ops
from flowd.imaging._vips import VImage
from flowd.imaging.probe import ImageFacts, facts_of, probe
from flowd.imaging.save import complete_metadata, save
from flowd.imaging.spec import (
    ColorSpec,
    ConvertSpec,
    FormatSpec,
    ModesSpec,
    ResizeSpec,
    SharpenSpec,
    profile_space,
)

WRITABLE = ("jpeg", "tiff", "png", "webp")
EXTENSIONS = {"jpeg": ".jpg", "jpeg_web": ".jpg", "tiff": ".tif", "png": ".png", "webp": ".webp"}
_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")
_SAME_SUFFIXES = {"jpeg": _JPEG_SUFFIXES, "jpeg_web": _JPEG_SUFFIXES, "tiff": (".tif", ".tiff"), "png": (".png",),
                  "webp": (".webp",)}
_NO_CMYK = ("png", "webp", "jpeg_web")


@dataclass(frozen=True, slots=True)
class Converted:
    """The outcome of `convert`. `path` is the new file, or None when the input goes on unchanged
    (`mode` metadata_only or copy) or not at all (`skip`). `ext` is the output's extension with its dot.
    `facts` describe the output (the input's for metadata_only/copy; None for skip). `record` says what was
    done, for the run trace."""

    path: Path | None
    ext: str
    mode: str
    facts: ImageFacts | None
    record: dict[str, Any]


def convert(src: Path, dst: Path, spec: ConvertSpec, facts: ImageFacts | None = None) -> Converted:
    """Write `src` converted by `spec` to `dst` with its suffix replaced by the output format's; `src` is
    only read. Undecodable input -> PermanentError with libvips' reason; a full disk -> TransientError."""
    _vips.ensure_configured()
    facts = facts or probe(src)
    record: dict[str, Any] = {"input": _describe(facts, src.stat().st_size)}
    mode = getattr(spec.modes, facts.color)
    if mode != "process":
        record["note"] = f"{facts.color} input: {mode.replace('_', ' ')} (modes.{facts.color})"
        return Converted(None, src.suffix.lower(), mode, None if mode == "skip" else facts, record)
    kind = _output_kind(spec.format, facts, record)
    ext = src.suffix.lower() if src.suffix.lower() in _SAME_SUFFIXES.get(kind, ()) else EXTENSIONS[kind]
    out = dst.with_suffix(ext)
    if out.resolve() == src.resolve():
        raise ValueError(f"convert would overwrite its source {src}: pick a destination in a work folder")
    work = dst.with_name(dst.stem + ".composite.tif")
    run = _Run(src, spec, facts, kind, record)
    try:
        im = run.pipeline(work)
        save_options = save(im, out, kind, spec.format, spec.metadata == "keep")
    except _vips.Error as exc:
        out.unlink(missing_ok=True)
        raise _vips.pipeline_error(exc, src, out, work) from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        work.unlink(missing_ok=True)
        _vips.release_memory()
    run.ops.append({"op": "save", "format": kind, **save_options})
    if spec.metadata == "keep":
        # libvips reads no IPTC from PNG: None lets exiv2 look for it in the source itself
        iptc: bool | None = True if run.had["iptc"] else None if facts.format == "png" else False
        notes, run.had["iptc"] = complete_metadata(src, out, kind, run.had["exif"], iptc)
        run.notes += notes
    try:
        out_facts = facts_of(_vips.Image.new_from_file(str(out)), "jpeg" if kind == "jpeg_web" else kind)
    except _vips.Error as exc:  # what libvips just wrote must read back
        raise PermanentError(f"cannot read the converted image: {_vips.reason(exc, out)}") from None
    record["operations"] = run.ops
    record["output"] = _describe(out_facts, out.stat().st_size) | {"type": kind, "ext": ext}
    record["metadata"] = run.metadata_record(spec)
    if run.notes:
        record["notes"] = run.notes
    return Converted(out, ext, mode, out_facts, record)


def _output_kind(fmt: FormatSpec, facts: ImageFacts, record: dict[str, Any]) -> str:
    if fmt.type != "same":
        return fmt.type
    if facts.format in WRITABLE:
        return facts.format
    record.setdefault("notes", []).append(f"{facts.format} cannot be written: same -> jpeg")
    return "jpeg"


def _describe(facts: ImageFacts, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format": facts.format, "width": facts.width, "height": facts.height, "color": facts.color,
        "bits": facts.bits, "bands": facts.bands, "icc": facts.has_icc, "bytes": size,
    }
    if facts.orientation != 1:
        out["orientation"] = facts.orientation
    if facts.pages > 1:
        out["pages"] = facts.pages
    return out


class _Run:
    """One conversion's decisions and the operations it recorded, kept together while the pipeline is built."""

    def __init__(self, src: Path, spec: ConvertSpec, facts: ImageFacts, kind: str, record: dict[str, Any]) -> None:
        self.src, self.spec, self.facts, self.kind = src, spec, facts, kind
        self.color = spec.color or ColorSpec()
        self.ops: list[dict[str, Any]] = []
        self.notes: list[str] = record.pop("notes", [])
        self.had = {"exif": False, "iptc": False, "xmp": False}

    # -- the fixed order -------------------------------------------------------------------------------
    def pipeline(self, work: Path) -> VImage:
        im = self.load(work)
        color = self.facts.color
        embedded: bytes | None = _vips.get_blob(im, "icc-profile-data")
        target = self.target(color)
        if color == "other":  # Lab, XYZ ...: libvips' own colourspace conversion, then on as sRGB
            self.ops.append({"op": "colourspace", "from": str(im.interpretation), "to": "srgb"})
            im = _vips.set_blob(im.colourspace("srgb"), "icc-profile-data", None)
            color, embedded = "rgb", None
        if color == "cmyk":
            im = self.manage_colour(im, color, embedded, target)
        im = self.resize(im)
        if self.spec.sharpen is not None:
            im = self.sharpen(im, self.spec.sharpen)
        if color != "cmyk":
            im = self.manage_colour(im, color, embedded, target)
        im = self.finish(im)
        return im

    def load(self, work: Path) -> VImage:
        facts, fail_on = self.facts, "warning" if self.spec.strict else "error"
        size = self.target_size()
        step: dict[str, Any] = {"op": "load", "format": facts.format}
        try:
            if facts.format == "psd":
                from flowd.imaging import psd

                im, info = psd.load(self.src, work, fail_on)
                step["layers"] = "composite (flattened)" if info.layers else "single layer"
            else:
                options: dict[str, Any] = {"access": "sequential", "fail_on": fail_on}
                shrink = ops.load_shrink(facts.width, facts.height, size) if size else 1
                if shrink > 1 and facts.format == "jpeg":  # libjpeg scales in the DCT domain
                    options["shrink"] = shrink
                    step["shrink_on_load"] = shrink
                elif shrink > 1 and facts.format == "webp":  # libwebp's decoder scales while it decodes
                    options["scale"] = 1 / shrink
                    step["shrink_on_load"] = shrink
                im = _vips.Image.new_from_file(str(self.src), **options)
        except _vips.Error as exc:
            raise _vips.read_error(exc, self.src, work) from None
        if facts.pages > 1:
            step["page"] = f"first of {facts.pages}"
        if facts.format == "tiff" and _layered_tiff(self.src):
            step["layers"] = "composite (Photoshop layers ignored)"
        self.ops.append(step)
        for name in ("exif", "iptc", "xmp"):
            self.had[name] = bool(im.get_typeof(f"{name}-data"))
        return im

    def target_size(self) -> tuple[int, int] | None:
        resize = self.spec.resize
        if resize is None:
            return None
        width, height = self.facts.width, self.facts.height
        if self.upright():  # the size applies to the picture as it will be shown
            width, height = self.facts.display_size
            box = ops.target_size(width, height, resize)
            return (box[1], box[0]) if box and self.facts.orientation >= 5 else box
        return ops.target_size(width, height, resize)

    def resize(self, im: VImage) -> VImage:
        resize = self.spec.resize
        size = self.target_size()
        if resize is None or size is None:
            if resize is not None:
                self.ops.append({"op": "resize", "skipped": "already fits" if not self._would_upscale() else
                                 "would enlarge (upscale: false)"})
            return im
        loaded = [int(im.width), int(im.height)]
        im = ops.resize(im, size, resize.kernel)
        self.ops.append({"op": "resize", "from": [self.facts.width, self.facts.height], "decoded": loaded,
                         "to": list(size), "kernel": resize.kernel})
        return im

    def _would_upscale(self) -> bool:
        resize = self.spec.resize
        return resize is not None and not resize.upscale and ops.target_size(
            self.facts.width, self.facts.height, resize.model_copy(update={"upscale": True})) is not None

    def sharpen(self, im: VImage, s: SharpenSpec) -> VImage:
        self.ops.append({"op": "sharpen", "amount": s.amount, "radius": s.radius, "threshold": s.threshold})
        return ops.unsharp(im, s.amount, s.radius, s.threshold)

    # -- colour ----------------------------------------------------------------------------------------
    def target(self, color: str) -> str | None:
        """The output profile, or None to keep the input's colours."""
        to = self.color.to
        if self.kind == "jpeg_web" and to is None:
            return "gray" if color == "gray" else "srgb"
        if to is None and color in ("cmyk", "other") and self.kind in _NO_CMYK:
            self.notes.append(f"{color} input written as sRGB: {self.kind} cannot hold {color}")
            return "srgb"
        return to

    def manage_colour(self, im: VImage, color: str, embedded: bytes | None, target: str | None) -> VImage:
        c = self.color
        usable = embedded is not None and not c.ignore_embedded and _icc.space(embedded) == color
        if embedded is not None and not c.ignore_embedded and not usable:
            self.notes.append(f"embedded profile ignored: it is not a {color} profile")
        assumed = c.assumed(color)
        source = embedded if usable and embedded is not None else _vips.profile_bytes(assumed)
        source_name = f"{_icc.description(source) or 'unnamed'} ({'embedded' if usable else 'assumed'})"
        embed = c.embed if c.embed is not None else self.kind != "jpeg_web"
        if target is None:  # colours stay; so does the profile, unless it was declared wrong or unwanted
            if not embed or (c.ignore_embedded and embedded is not None):
                return _vips.set_blob(im, "icc-profile-data", source if embed else None)
            return im
        target_bytes = _vips.profile_bytes(target)
        step: dict[str, Any] = {"op": "color", "from": source_name, "to": _icc.description(target_bytes) or target}
        if source == target_bytes or (_icc.is_srgb(source) and _icc.is_srgb(target_bytes)):
            step["skipped"] = "already in the output profile"
            self.ops.append(step)
            return _vips.set_blob(im, "icc-profile-data", target_bytes if embed else None)
        depth = 16 if im.format == "ushort" else 8
        out = im.icc_transform(_vips.vips_profile(target), input_profile=_vips.vips_profile(assumed), embedded=usable,
                               intent=c.intent, black_point_compensation=c.black_point_compensation, depth=depth)
        step |= {"intent": c.intent, "stage": "before resize" if color == "cmyk" else "after sharpen"}
        if c.black_point_compensation:
            step["black_point_compensation"] = True
        self.ops.append(step)
        return _vips.set_blob(out, "icc-profile-data", target_bytes if embed else None)

    # -- output ----------------------------------------------------------------------------------------
    def finish(self, im: VImage) -> VImage:
        kind, fmt = self.kind, self.spec.format
        color = _color_of(im)
        if self.upright():
            im = self.turn_upright(im)
        if kind == "jpeg_web":
            im = _vips.set_blob(im, "exif-data", None)
        if kind in ("jpeg", "jpeg_web") and im.hasalpha():
            im = ops.flatten(im, color)
            self.ops.append({"op": "flatten", "onto": "white"})
        bits = 8 if kind in ("jpeg", "jpeg_web", "webp") else fmt.bits or (16 if self.facts.bits >= 16 else 8)
        if kind == "tiff" and fmt.compression == "jpeg":
            bits = 8
        if (16 if im.format in ("ushort", "short") else 8) != bits or im.format not in ("uchar", "ushort"):
            im = ops.to_bits(im, bits, color)
            self.ops.append({"op": "depth", "bits": bits})
        if self.spec.metadata == "strip":
            for name in ("exif-data", "iptc-data", "xmp-data"):
                im = _vips.set_blob(im, name, None)
        return im

    def turn_upright(self, im: VImage) -> VImage:
        """Apply the EXIF orientation to the pixels: for outputs that lose EXIF (and with it the tag)."""
        im = im.copy_memory().autorot()  # rotation needs random access; the image is at output size here
        self.ops.append({"op": "autorotate", "orientation": self.facts.orientation})
        xmp = _vips.get_blob(im, "xmp-data")
        if xmp:
            im = _vips.set_blob(im, "xmp-data", _iptc.xmp_upright(xmp))
        return im

    def upright(self) -> bool:
        """jpeg_web and `metadata: strip` write no EXIF, so a rotated picture is turned upright instead."""
        return self.facts.orientation != 1 and (self.kind == "jpeg_web" or self.spec.metadata == "strip")

    def metadata_record(self, spec: ConvertSpec) -> dict[str, str]:
        if spec.metadata == "strip":
            return {"exif": "stripped", "iptc": "stripped", "xmp": "stripped"}
        out = {}
        for name in ("exif", "iptc", "xmp"):
            if not self.had[name]:
                continue
            dropped = (name == "exif" and self.kind == "jpeg_web") or (name == "iptc" and self.kind == "webp")
            out[name] = "dropped" if dropped else "kept"
        return out


def _color_of(im: VImage) -> str:
    interpretation = str(im.interpretation)
    if interpretation == "cmyk":
        return "cmyk"
    if interpretation in ("b-w", "grey16") or (interpretation == "multiband" and int(im.bands) <= 2):
        return "gray"
    return "rgb"


def _layered_tiff(path: Path) -> bool:
    """Whether a TIFF carries Photoshop layers (tag 37724) in its first directory: cheap, header only."""
    from flowd.imaging.complete import tiff_tags

    try:
        return 37724 in tiff_tags(path)
    except (OSError, ValueError):
        return False


__all__ = ["ColorSpec", "ConvertSpec", "Converted", "FormatSpec", "ModesSpec", "ResizeSpec", "SharpenSpec",
           "convert", "profile_space"]
