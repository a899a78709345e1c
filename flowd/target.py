"""Targets name a storage and a key in it: `lake:assets/2024/a.jpg` (the first key segment is the container)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STORAGE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):(.*)$", re.S)


class TargetError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Target:
    storage: str
    key: str

    def __str__(self) -> str:
        return f"{self.storage}:{self.key}"


def parse_target(text: str) -> Target:
    match = _STORAGE.match(text)
    if not match:
        raise TargetError(f"target {text!r} must look like STORAGE:container/path, e.g. lake:assets")
    return Target(match.group(1), clean_key(match.group(2)))


def clean_key(key: str, *, allow_empty: bool = False) -> str:
    """A normalised relative key, or TargetError when it would leave its container."""
    if "\x00" in key:
        raise TargetError("a path must not contain NUL bytes")
    if key.startswith("/"):
        raise TargetError(f"path {key!r} must be relative to the storage (no leading '/')")
    parts = [p for p in key.split("/") if p not in ("",)]
    for part in parts:
        if part in (".", ".."):
            raise TargetError(f"path {key!r} would leave its container ('{part}' segment)")
    if not parts and not allow_empty:
        raise TargetError("path is empty; name at least a container")
    return "/".join(parts)
