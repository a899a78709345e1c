"""What the engine hands every condition and action: time, storages and side effects are passed in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowd.storage.base import Storage

PostJson = Callable[[str, dict[str, Any], dict[str, str], float, str], int]


@dataclass(frozen=True, slots=True)
class RunContext:
    now: datetime
    storages: Mapping[str, Storage]
    simulate: bool
    post_json: PostJson
    seen_content: Callable[[str, str], int | None]  # (rule, sha256) -> job id that processed it
    # Outputs of this job that share their bytes with the source (at most one: see Store.run).
    linked: list[tuple[str, str]] = field(default_factory=list)
