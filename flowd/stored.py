"""Assets that live in a storage: the blobs an events stream announces, as jobs see them.

A job for a stored asset names its source "@EVENTS" (or "@EVENTS#deleted") instead of a hot folder, its
relpath is the blob's key (container/path) and its version the blob's ETag. The bytes are downloaded only
when a condition or action reads them; the source's fate (delete after a `move`) is conditional on that
same ETag, so a version written meanwhile is never touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, cast

from flowd.asset import Asset, Origin
from flowd.config import AzureQueueEventsSpec, Config
from flowd.errors import ChangedError, PermanentError
from flowd.rules import events_source
from flowd.storage.base import BlobInfo


class BlobStorage(Protocol):
    """What a storage must offer for its assets to be processed where they are (kind = "adls" does)."""

    name: str

    def stat(self, key: str) -> BlobInfo | None: ...

    def download(self, key: str, dest: Path, etag: str | None = None) -> None: ...

    def delete(self, key: str, etag: str | None = None) -> bool: ...


def blob_storage(storage: object) -> BlobStorage | None:
    """The storage, if its assets can be processed where they are."""
    ok = all(callable(getattr(storage, m, None)) for m in ("stat", "download", "delete"))
    return cast(BlobStorage, storage) if ok else None


@dataclass(frozen=True, slots=True)
class BlobSource:
    """One events stream's view of its storage, for one event kind."""

    name: str  # the [events.NAME] table
    event: str  # created | deleted
    spec: AzureQueueEventsSpec

    @property
    def key(self) -> str:
        return events_source(self.name, self.event)

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def storage(self) -> str:
        return self.spec.storage

    @property
    def own_writes(self) -> str:
        return self.spec.own_writes

    @property
    def strip(self) -> str:
        return ""

    def fate(self, consumes: bool, quarantined: bool) -> str:
        return blob_fate(consumes, quarantined)


@dataclass(frozen=True, slots=True)
class SweptPrefix:
    """A sweep rule's storage prefix (`over: {storage: "lake:archive/"}`), as its jobs see it: the
    asset's relpath is the key under the prefix, and flowd's own outputs are swept like any blob."""

    key: str  # the rule's source, "~TENANT/RULE"
    tenant: str
    storage: str
    strip: str  # the prefix, taken off keys for the asset's relpath
    event: str = "created"
    own_writes: str = "process"

    def fate(self, consumes: bool, quarantined: bool) -> str:
        return blob_fate(consumes, quarantined)


def blob_fate(consumes: bool, quarantined: bool) -> str:
    """A blob stays where it is unless a rule moved it (then the source version is deleted); a
    quarantined one stays too, and its job says why (`flowd status`, `flowd retry`)."""
    if quarantined:
        return "quarantine"
    return "delete" if consumes else "keep"


def build_sources(config: Config) -> dict[str, BlobSource]:
    out = {}
    for name, spec in config.settings.events.items():
        for event in ("created", "deleted"):
            source = BlobSource(name, event, spec)
            out[source.key] = source
    return out


def stored_asset(job_id: int, source: BlobSource | SweptPrefix, storage: BlobStorage, key: str, info: BlobInfo | None,
                 detected: datetime, workdir: Path, made: list[Path],
                 released: Callable[[], AbstractContextManager[None]]) -> Asset:
    """The asset for one blob version. `info` None: a deleted blob (names only, no bytes)."""
    pinned = getattr(storage, "container", None)  # a storage pinned to one container: keys are paths in it
    if source.strip and key.startswith(source.strip):
        path = key[len(source.strip):].lstrip("/")
    else:
        path = key if pinned else key.partition("/")[2]
    name = path.rsplit("/", 1)[-1]
    if info is None:
        origin = Origin(storage.name, key, None, None, "deleted", pinned)
        return Asset(job_id, source.tenant, source.key, workdir, path, 0, 0, detected, None, name, origin=origin)
    etag = info.etag

    def fetch() -> Path:
        # Named by the job and the key's hash: unique per job, and a name no hostile key can steer.
        suffix = Path(name).suffix[:16] if Path(name).suffix.isascii() else ""
        dest = workdir / f"blob-{job_id}-{hashlib.sha1(key.encode()).hexdigest()[:12]}{suffix}"
        made.append(dest)
        with released():  # network I/O: other workers compute meanwhile
            storage.download(key, dest, etag)
        return dest

    origin = Origin(storage.name, key, etag, fetch, "created", pinned)
    return Asset(job_id, source.tenant, source.key, workdir, path, info.size, info.mtime_ns, detected, None, name,
                 origin=origin)


def apply_blob_fate(storage: BlobStorage, key: str, version: str | None, fate: str) -> str:
    """Idempotent, like a hot folder's fates: a blob already gone was dealt with before."""
    if fate in ("keep", "quarantine", "unmatched"):
        return "kept in place" if fate != "quarantine" else "left in place (quarantined)"
    if fate == "delete":
        try:
            return "deleted" if storage.delete(key, version) else "already gone"
        except ChangedError:
            return "left in place (a newer version arrived; it has its own job)"
    raise PermanentError(f"unknown fate {fate!r} for a stored asset")
