"""Turn pydantic's ValidationError into ConfigErrors: file:line, dotted path, message, got, allowed."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from flowd.errors import ConfigError

LineOf = Callable[[Sequence[str | int]], int | None]


def config_errors(
    exc: ValidationError, file: str, line_of: LineOf, model: type[BaseModel] | None = None,
    prefix: Sequence[str | int] = (),
) -> list[ConfigError]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [*prefix, *(p for p in err["loc"] if not _is_internal(p))]
        kind = err["type"]
        msg = err["msg"]
        allowed = None
        got: Any = err.get("input")
        has_got = True
        if kind == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'"
            fields = _fields_at(model, loc[len(prefix):-1]) if model else None
            allowed = ", ".join(fields) if fields else None
            has_got = False
        elif kind == "missing":
            msg = "this key is required"
            has_got = False
        elif kind == "literal_error":
            allowed = str(err.get("ctx", {}).get("expected", "")) or None
            msg = "not one of the allowed values"
        elif kind.startswith("value_error"):
            msg = msg.removeprefix("Value error, ")
        out.append(ConfigError(file, line_of(loc), _dotted(loc), msg, got, allowed, has_got=has_got))
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
