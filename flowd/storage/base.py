"""The storage contract: every place outputs land (local folders now, ADLS Gen2 next) implements this."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol


class Conflict(StrEnum):
    FAIL = "fail"
    OVERWRITE = "overwrite"
    INCREMENT = "increment"
    SKIP_IDENTICAL = "skip_identical"


@dataclass(frozen=True, slots=True)
class Put:
    """Where a write landed. `already`: a previous attempt of this very step had written it."""

    key: str
    outcome: Literal["written", "skipped", "already"]
    linked: bool = False  # shares its bytes with the source until the source is removed


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the service says about one blob: enough to tell its version and whether flowd wrote it."""

    size: int
    etag: str
    mtime_ns: int
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def written_by_flowd(self) -> bool:
        return "flowd_step" in self.metadata


class Storage(Protocol):
    name: str
    tenants: frozenset[str] | None
    # Writes wait on the network (not the CPU): a worker lets the others compute meanwhile.
    remote: bool

    def put_file(self, key: str, source: Path, *, conflict: Conflict, token: str,
                 sha256: Callable[[], str], may_link: bool = False, info: Mapping[str, str] | None = None,
                 replaces: str | None = None, mtime_ns: int | None = None, digits: int = 0) -> Put:
        """Write `source` at `key` under the conflict policy, atomically (temp name, then into place).

        `token` identifies the step: a retry with the same token recognises its own earlier write
        instead of writing a second copy. `may_link`: the source will be removed once the job succeeds,
        so a storage on the same file system may hard-link it instead of copying the bytes. `info`:
        where the output came from (source, rule, tenant, job), kept with it where the storage can.
        `replaces`: an in-place edit of a stored asset, allowed only over that version (its ETag).
        `mtime_ns`: the modification time the written file gets (`keep_mtime`), where the storage can set one
        (local: the file's own time; ADLS, whose Last-Modified is the service's: metadata `flowd_mtime`).
        `digits`: `increment` pads its counter to this many digits (photo_001.jpg); 0: photo_1.jpg.
        """
        ...

    def unshare(self, key: str) -> None:
        """Give a linked output its own copy of the bytes (its source is staying after all)."""
        ...

    def plan(self, key: str, conflict: Conflict, sha256: Callable[[], str], digits: int = 0) -> Put:
        """What put_file would do, touching nothing (for `flowd simulate`)."""
        ...

    def exists(self, key: str) -> bool: ...

    def read_bytes(self, key: str) -> bytes: ...

    def delete(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def sync(self) -> None:
        """Make every write so far durable: called before any source is removed."""
        ...


def incremented(key: str, n: int, digits: int = 0) -> str:
    """a/b/photo.jpg -> a/b/photo_3.jpg (Color Factory's 'append an incremental number'); with digits=3,
    a/b/photo_003.jpg (its counterDigits; a counter longer than that keeps all its digits)."""
    head, _, name = key.rpartition("/")
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    new = f"{stem}_{str(n).zfill(digits)}{ext}"
    return f"{head}/{new}" if head else new
