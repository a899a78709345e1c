"""What the engine hands every condition and action: time, storages and side effects are passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowd.storage.base import Storage

if TYPE_CHECKING:
    from flowd.metadata.fields import FieldTable

PostJson = Callable[[str, dict[str, Any], dict[str, str], float, str], int]


@contextmanager
def _held() -> Iterator[None]:
    yield


@dataclass(frozen=True, slots=True)
class RunContext:
    now: datetime
    storages: Mapping[str, Storage]
    simulate: bool
    post_json: PostJson
    seen_content: Callable[[str, str], int | None]  # (rule, sha256) -> job id that processed it
    # Outputs of this job that share their bytes with the source (at most one: see Store.run).
    linked: list[tuple[str, str]] = field(default_factory=list)
    # The job's private folder for rewritten bytes (set_metadata, convert); removed when the job's batch ends.
    workdir: Path | None = None
    fields: FieldTable | None = None
    # Lets other workers compute while this one waits on C code that releases the GIL (libvips).
    released: Callable[[], AbstractContextManager[None]] = _held

    def work_file(self, token: str, suffix: str) -> Path:
        """A fresh path for one step's output bytes: named by the step token, so a retry overwrites it."""
        if self.workdir is None:
            raise RuntimeError("this run has no work folder")
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / f"{token}{suffix}"
        path.unlink(missing_ok=True)
        return path
