"""What several actions share: validating their arguments and rendering targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from flowd.action import Step
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import PathEscapeError, PermanentError
from flowd.parse import Loc, Parser
from flowd.placeholders import resolve
from flowd.storage.base import Storage
from flowd.target import Target, TargetError, parse_target
from flowd.template import Template
from flowd.validation import problems

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], value: object, loc: Loc, p: Parser) -> M | None:
    """Validate an action's arguments; errors keep the YAML line of the offending key."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        p.error(loc, "expected a mapping of arguments", value, ", ".join(model.model_fields) or "(none: use {})")
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        # Worded as config errors are: a misspelt required key is one error, unknown keys list the known.
        for problem in problems(exc, model):
            if problem.has_got:
                p.error([*loc, *problem.loc], problem.message, problem.got, problem.allowed)
            else:
                p.error([*loc, *problem.loc], problem.message, allowed=problem.allowed)
        return None


def render_target(template: Template, asset: Asset, step: Step,
                  storages: Mapping[str, Storage] | None = None) -> Target:
    text = _collapse(render(template, asset, step, path=True), storages)
    try:
        return parse_target(text)
    except TargetError as exc:
        raise PathEscapeError(f"rendered target {text!r} is not allowed: {exc}") from None


def _collapse(text: str, storages: Mapping[str, Storage] | None) -> str:
    """A placeholder that renders empty leaves no empty folder: `cf:{prefix:_|map:desks}/{date:file:%Y}/x.jpg`
    with an unlisted prefix is `cf:2026/x.jpg`, as Color Factory's AutoRouting adds no folder for it. In a
    remote storage the first segment names the container, so an empty one stays an error there."""
    name, colon, key = text.partition(":")
    if not colon or ("//" not in key and not key.startswith("/")):
        return text
    parts = key.split("/")
    storage = storages.get(name) if storages is not None else None
    if storage is not None and storage.remote:
        return f"{name}:{parts[0]}/" + "/".join(p for p in parts[1:] if p) if len(parts) > 1 else text
    return f"{name}:" + "/".join(p for p in parts if p)


def render(template: Template, asset: Asset, step: Step, path: bool = False) -> str:
    try:
        return template.render(lambda field: resolve(field, asset, step.id, path))
    except (ValueError, OSError, KeyError) as exc:
        raise PermanentError(f"cannot render {template.source!r}: {exc}") from None


def target_storage(ctx: RunContext, target: Target, tenant: str) -> Storage:
    """The storage a rendered target names, if this tenant may use it."""
    storage = ctx.storages.get(target.storage)
    if storage is None:
        raise PermanentError(f"no storage named '{target.storage}'")
    if storage.tenants is not None and tenant not in storage.tenants:
        raise PermanentError(f"storage '{target.storage}' is not open to tenant '{tenant}'")
    return storage
