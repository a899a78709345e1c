"""Turn pydantic's ValidationError into ConfigErrors: file:line, dotted path, message, got, allowed."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from flowd.errors import ConfigError

LineOf = Callable[[Sequence[str | int]], int | None]


@dataclass(frozen=True, slots=True)
class Problem:
    """One pydantic error as a person reads it; `loc` is relative to the validated model."""

    loc: list[str | int]
    message: str
    got: Any
    allowed: str | None
    has_got: bool


def config_errors(
    exc: ValidationError, file: str, line_of: LineOf, model: type[BaseModel] | None = None,
    prefix: Sequence[str | int] = (),
) -> list[ConfigError]:
    out = []
    for problem in problems(exc, model):
        loc = [*prefix, *problem.loc]
        out.append(ConfigError(file, line_of(loc), _dotted(loc), problem.message, problem.got, problem.allowed,
                               has_got=problem.has_got))
    return out


def problems(exc: ValidationError, model: type[BaseModel] | None = None) -> list[Problem]:
    """Shared by config files and rule actions, so both word the same fault the same way."""
    errors = [(err, [p for p in err["loc"] if not _is_internal(p)]) for err in exc.errors(include_url=False)]
    # A misspelt required key (`rooot = ...`) is one fault, not "unknown key" plus "key is required".
    unknown = [tuple(loc) for err, loc in errors if err["type"] == "extra_forbidden"]
    hints: dict[tuple[str | int, ...], str] = {}
    for err, loc in list(errors):
        if err["type"] != "missing":
            continue
        siblings = {str(u[-1]): u for u in unknown if u[:-1] == tuple(loc[:-1]) and u not in hints}
        close = difflib.get_close_matches(str(loc[-1]), list(siblings), n=1, cutoff=0.6)
        if close:
            hints[siblings[close[0]]] = str(loc[-1])
            errors.remove((err, loc))
    out = []
    for err, loc in errors:
        kind = err["type"]
        msg = err["msg"]
        allowed = None
        got: Any = err.get("input")
        has_got = True
        if kind == "extra_forbidden":
            # got is the key, as for unknown rule keys, conditions and actions: the value is beside the point.
            msg, got = f"unknown key '{loc[-1]}'", loc[-1]
            if tuple(loc) in hints:
                msg += f"; did you mean '{hints[tuple(loc)]}' (required)?"
            fields = _fields_at(model, loc[:-1]) if model else None
            allowed = ", ".join(fields) if fields else None
        elif kind == "missing":
            msg, got, has_got = "this key is required", None, False
        elif kind in ("literal_error", "enum"):
            allowed = str(err.get("ctx", {}).get("expected", "")) or None
            msg = "not one of the allowed values"
        elif kind.startswith("value_error"):
            msg = msg.removeprefix("Value error, ")
        out.append(Problem(loc, msg, got, allowed, has_got))
    return out


def _is_internal(part: Any) -> bool:
    # pydantic adds the union member or validator name to the location; users never wrote those.
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc)


def _fields_at(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str] | None:
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, tuple):
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
            if typing.get_origin(arg) in (list, dict, tuple):
                return arg
    return tp
