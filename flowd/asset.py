"""The asset: facts about one detected file, flowing through a rule's actions.

Frozen: `rename` returns a new Asset. Expensive facts (sha256, sniffed format) are computed on first use
and shared between the copies, so a rule that never asks for a hash never reads the file.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flowd.errors import PermanentError
from flowd.sniff import SNIFF_BYTES, sniff

if TYPE_CHECKING:
    from flowd.imaging.probe import ImageFacts
    from flowd.metadata.fields import FieldTable
    from flowd.metadata.model import Metadata

@dataclass(slots=True)
class _Lazy:
    sha256: str | None = None
    format: str | None = None
    mtime: datetime | None = None
    metadata: Metadata | None = None
    image: ImageFacts | None = None
    local: Path | None = None  # a stored asset's bytes, downloaded on first use


@dataclass(frozen=True, slots=True)
class Origin:
    """An asset that lives in a storage (announced by a storage event, or simulated from one): which blob
    and which version of it. Its bytes are downloaded only when a condition or action needs them."""

    storage: str
    key: str  # the storage key: container/path (or the path, in a storage pinned to one container)
    version: str | None  # the blob's ETag: every read and in-place write is conditional on it
    fetch: Callable[[], Path] | None = None  # streams the blob to a private file; None: no bytes (deleted)
    event: str = "created"
    pinned: str | None = None  # the storage's one container, when it is pinned

    @property
    def container(self) -> str:
        return self.pinned or self.key.partition("/")[0]


@dataclass(frozen=True, slots=True)
class Upload:
    """Who delivered an asset over FTP: `{ftp.user}`, `{ftp.group}`, the `ftp:` condition, the trace."""

    protocol: str  # ftp | ftps
    user: str
    group: str
    client: str  # the client's IP address
    at: float  # when the upload completed (epoch seconds)

    def to_dict(self) -> dict[str, object]:
        return {"protocol": self.protocol, "user": self.user, "group": self.group, "client": self.client,
                "at": self.at}


@dataclass(frozen=True, slots=True)
class Asset:
    job_id: int
    tenant: str
    hotfolder: str
    root: Path
    source_relpath: str
    size: int
    mtime_ns: int
    detected_at: datetime
    output: str | None
    name: str
    disposable: bool = False  # the source is deleted once the job succeeds (after = "delete")
    # The asset's current bytes when an action rewrote them (set_metadata, convert): a private file in the
    # job's work folder. None: the source itself.
    content: Path | None = None
    # An XMP sidecar written by `set_metadata: {to: sidecar}`: stored beside each output as NAME.xmp.
    sidecar: Path | None = None
    origin: Origin | None = None  # set when the asset lives in a storage rather than in a hot folder
    upload: Upload | None = None  # set when the asset arrived over FTP
    # The job request (JRF) that named this file: its keys, and "output_name" ({jrf.output})
    request: dict[str, str] | None = None
    lazy: _Lazy = field(default_factory=_Lazy, compare=False, repr=False)

    @property
    def path(self) -> Path:
        if self.content is not None:
            return self.content
        if self.origin is not None:
            return self._local()
        return self.root / self.source_relpath

    def _local(self) -> Path:
        if self.lazy.local is None:
            assert self.origin is not None
            if self.origin.fetch is None:
                raise PermanentError(f"{self.origin.storage}:{self.origin.key} was deleted: there are no bytes "
                                     "to read (a rule for deleted blobs can only use names, notify or delete)")
            self.lazy.local = self.origin.fetch()
        return self.lazy.local

    @property
    def source(self) -> Path:
        return self.root / self.source_relpath

    @property
    def reldir(self) -> str:
        return posixpath.dirname(self.source_relpath)

    @property
    def relpath(self) -> str:
        return posixpath.join(self.reldir, self.name) if self.reldir else self.name

    @property
    def stem(self) -> str:
        return split_name(self.name)[0]

    @property
    def ext(self) -> str:
        return split_name(self.name)[1]

    @property
    def mtime(self) -> datetime:
        if self.lazy.mtime is None:
            self.lazy.mtime = datetime.fromtimestamp(self.mtime_ns / 1e9)
        return self.lazy.mtime

    def renamed(self, name: str) -> Asset:
        # Spelled out rather than dataclasses.replace(), which costs more than the rest of a rename.
        return Asset(self.job_id, self.tenant, self.hotfolder, self.root, self.source_relpath, self.size,
                     self.mtime_ns, self.detected_at, self.output, name, self.disposable, self.content, self.sidecar,
                     self.origin, self.upload, self.request, self.lazy)

    def derived(self, content: Path | None = None, name: str | None = None, sidecar: Path | None = None,
                metadata: Metadata | None = None) -> Asset:
        """The same asset with new bytes (and maybe a new extension) or a new sidecar: every lazy fact of
        new bytes is computed afresh, except the file dates, which describe the original."""
        if content is None:
            lazy, content, size = self.lazy, self.content, self.size
        else:
            lazy, size = _Lazy(mtime=self.lazy.mtime, metadata=metadata), content.stat().st_size
        return Asset(self.job_id, self.tenant, self.hotfolder, self.root, self.source_relpath, size,
                     self.mtime_ns, self.detected_at, self.output, name or self.name, self.disposable, content,
                     sidecar or self.sidecar, self.origin, self.upload, self.request, lazy)

    def with_metadata(self, metadata: Metadata) -> Asset:
        """A view of this asset whose fields read from `metadata` (a macro's conditions see its edits)."""
        lazy = _Lazy(self.lazy.sha256, self.lazy.format, self.lazy.mtime, metadata, self.lazy.image, self.lazy.local)
        return Asset(self.job_id, self.tenant, self.hotfolder, self.root, self.source_relpath, self.size,
                     self.mtime_ns, self.detected_at, self.output, self.name, self.disposable, self.content,
                     self.sidecar, self.origin, self.upload, self.request, lazy)

    def metadata(self, table: FieldTable | None = None) -> Metadata:
        """The asset's metadata, read once. A file without readable metadata (a text file, a damaged
        header) reads as empty: conditions see empty fields, and writing to it fails with exiv2's reason."""
        if self.lazy.metadata is None:
            from flowd.metadata.fields import DEFAULT_FIELDS  # pyexiv2 loads only where metadata is used
            from flowd.metadata.model import Metadata

            try:
                self.lazy.metadata = Metadata.read(self.path, table or DEFAULT_FIELDS)
            except PermanentError:
                self.lazy.metadata = Metadata.empty(table or DEFAULT_FIELDS)
        return self.lazy.metadata

    def image(self) -> ImageFacts:
        if self.lazy.image is None:
            from flowd.imaging.probe import probe  # likewise libvips

            self.lazy.image = probe(self.path)
        return self.lazy.image

    def sha256(self) -> str:
        if self.lazy.sha256 is None:
            with open_source(self.path) as fh:
                self.lazy.sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        return self.lazy.sha256

    def format(self) -> str:
        if self.lazy.format is None:
            self.lazy.format = sniff(read_head(self.path, SNIFF_BYTES))
        return self.lazy.format


def split_name(name: str) -> tuple[str, str]:
    """('photo', '.jpg') for 'photo.jpg'; a leading dot is part of the stem ('.profile', '')."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def read_head(path: Path, size: int) -> bytes:
    """The first bytes of a source, checked as open_source does, in four system calls instead of seven
    (a file object's set-up costs as much as the read: every job sniffs its file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermanentError(f"{path} is no longer a regular file")
        return os.pread(fd, size, 0)  # a regular file: O_NONBLOCK does not apply to its reads
    finally:
        os.close(fd)


def open_source(path: Path):  # type: ignore[no-untyped-def]
    """Open a source for reading without following a symlink planted in its place, and without blocking
    forever on a FIFO planted there (O_NONBLOCK makes the open return; it is refused right after)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PermanentError(f"{path} is no longer a regular file")
    os.set_blocking(fd, True)
    return open(fd, "rb", buffering=0, closefd=True)
