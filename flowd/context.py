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
    # A private folder for rewritten bytes (set_metadata, convert), one per worker: the files this job
    # makes there are listed in `made` and removed when its batch ends.
    workdir: Path | None = None
    made: list[Path] = field(default_factory=list)
    # Files in the hot folder consumed along with the source (merged sidecars): (relpath, size, mtime_ns).
    companions: list[tuple[str, int, int]] = field(default_factory=list)
    fields: FieldTable | None = None
    # Lets other workers compute while this one waits on C code that releases the GIL (libvips).
    released: Callable[[], AbstractContextManager[None]] = _held

    def work_file(self, token: str, suffix: str) -> Path:
        """A fresh path for one step's output bytes: named by the step token, unique to the job's step."""
        if self.workdir is None:
            raise RuntimeError("this run has no work folder")
        path = self.workdir / f"{token}{suffix}"
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        self.made.append(path)
        return path
