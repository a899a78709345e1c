"""convert: colour, size, sharpness and file format, with libvips, in Color Factory's processing order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from flowd.action import Result, Step
from flowd.actions.common import validate
from flowd.asset import Asset, split_name
from flowd.context import RunContext
from flowd.errors import PermanentError
from flowd.imaging.spec import ConvertSpec
from flowd.parse import Loc, Parser

# Extensions that name the same format: a .jpeg stays .jpeg when the output is JPEG.
_SAME = {".jpg": {".jpg", ".jpeg", ".jpe"}, ".tif": {".tif", ".tiff"}}


@dataclass(frozen=True, slots=True)
class Convert:
    """`convert: {color: {to: srgb}, resize: {fit: [2048, 2048]}, sharpen: {...}, format: {type: jpeg}}`.

    The result is a new file in the job's work folder; later steps (and `store`) use it, and `{name}`
    carries the output format's extension. Per colour mode, `modes:` can pass a file through untouched
    (`metadata_only`, `copy`) or leave it to other rules (`skip`)."""

    spec: ConvertSpec
    kind: ClassVar[str] = "convert"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        from flowd.imaging.convert import convert  # libvips loads with the first conversion, not at start

        facts = asset.image()
        if facts.megapixels > self.spec.max_input_megapixels:
            raise PermanentError(f"the image is {facts.width} x {facts.height} ({facts.megapixels:,.1f} megapixels), "
                                 f"over this rule's limit of {self.spec.max_input_megapixels:g} "
                                 "(convert: max_input_megapixels)")
        dst = ctx.work_file(step.token, asset.ext.lower() or ".img")
        # libvips works on its own threads without the GIL: let other workers run meanwhile.
        with ctx.released():
            done = convert(asset.path, dst, self.spec, facts)
        if done.path is not None and done.path != dst:
            ctx.made.append(done.path)  # the output format chose another suffix: clean that file up too
        record = dict(done.record)
        record["mode"] = done.mode
        if done.mode == "skip":
            return Result(asset, record, skip_rule=f"convert: {facts.color} files are skipped (modes)")
        if done.path is None:
            return Result(asset, record)
        stem, ext = split_name(asset.name)
        if ext.lower() not in _SAME.get(done.ext, {done.ext}):
            ext = done.ext
        out = asset.derived(done.path, name=stem + ext)
        if done.facts is not None:
            out.lazy.image = done.facts
        return Result(out, record)


def build_convert(value: object, loc: Loc, p: Parser) -> Convert | None:
    spec = validate(ConvertSpec, value, loc, p)
    return Convert(spec) if spec is not None else None
