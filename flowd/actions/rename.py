"""rename: change the asset's name for the actions after it (the source file keeps its name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from flowd.action import Result, Step
from flowd.actions.common import render, validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import PathEscapeError
from flowd.parse import Loc, Parser
from flowd.template import Template


class RenameSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to: str


@dataclass(frozen=True, slots=True)
class Rename:
    """`rename: {to: "{stem}_{now:%H%M%S}{ext}"}`: later `{name}`, `{stem}`, `{ext}` and `{relpath}` see the new name."""

    to: Template
    kind: ClassVar[str] = "rename"
    effectful: ClassVar[bool] = False

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        name = render(self.to, asset, step)
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise PathEscapeError(f"rename produced {name!r}, which is not a plain file name")
        if len(name.encode("utf-8", "surrogateescape")) > 255:
            raise PathEscapeError(f"rename produced a name of more than 255 bytes ({name[:40]!r}...)")
        return Result(asset.renamed(name), {"name": name})


def build_rename(value: object, loc: Loc, p: Parser) -> Rename | None:
    spec = validate(RenameSpec, value, loc, p)
    if spec is None:
        return None
    template = p.template(spec.to, [*loc, "to"])
    if template is None:
        return None
    static = "".join(part for part in template.parts if isinstance(part, str))
    if "/" in static or static in (".", ".."):
        p.error([*loc, "to"], "rename sets a file name; to route into folders use store/move with a path", spec.to)
        return None
    return Rename(template)
