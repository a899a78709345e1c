"""The asset: facts about one detected file, flowing through a rule's actions.

Frozen: `rename` returns a new Asset. Expensive facts (sha256, sniffed format) are computed on first use
and shared between the copies, so a rule that never asks for a hash never reads the file.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flowd.errors import PermanentError
from flowd.sniff import SNIFF_BYTES, sniff
from flowd.template import format_date

_UUID_NS = uuid.UUID("6f1a2c1e-3d1b-4f52-9a59-0c7f5c1e2b10")


@dataclass(slots=True)
class _Lazy:
    sha256: str | None = None
    format: str | None = None
    mtime: datetime | None = None


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
    lazy: _Lazy = field(default_factory=_Lazy, compare=False, repr=False)

    @property
    def path(self) -> Path:
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
                     self.mtime_ns, self.detected_at, self.output, name, self.disposable, self.lazy)

    def sha256(self) -> str:
        if self.lazy.sha256 is None:
            with open_source(self.path) as fh:
                self.lazy.sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        return self.lazy.sha256

    def format(self) -> str:
        if self.lazy.format is None:
            with open_source(self.path) as fh:
                self.lazy.format = sniff(fh.read(SNIFF_BYTES))
        return self.lazy.format

    def placeholder(self, name: str, fmt: str | None, step_id: str = "") -> str:
        """The value of a template placeholder for this asset."""
        match name:
            case "name": return self.name
            case "stem": return self.stem
            case "ext": return self.ext
            case "extension": return self.ext[1:].lower()
            case "relpath": return self.relpath
            case "reldir": return self.reldir
            case "hotfolder": return self.hotfolder
            case "tenant": return self.tenant
            case "output": return self.output or ""
            case "size": return str(self.size)
            case "sha256": return self.sha256()
            # Derived from the job and step, so a retry renders the same name.
            case "uuid": return str(uuid.uuid5(_UUID_NS, f"{self.job_id}:{step_id}"))
            case "now": return format_date(self.detected_at, fmt)
            case "mtime": return format_date(self.mtime, fmt)
        raise KeyError(name)


def split_name(name: str) -> tuple[str, str]:
    """('photo', '.jpg') for 'photo.jpg'; a leading dot is part of the stem ('.profile', '')."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def open_source(path: Path):  # type: ignore[no-untyped-def]
    """Open a source for reading without following a symlink planted in its place, and without blocking
    forever on a FIFO planted there (O_NONBLOCK makes the open return; it is refused right after)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PermanentError(f"{path} is no longer a regular file")
    os.set_blocking(fd, True)
    return open(fd, "rb", buffering=0, closefd=True)
