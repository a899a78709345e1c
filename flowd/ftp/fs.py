"""What an FTP user sees: their group's root and nothing else.

pyftpdlib's AbstractedFS already maps client paths into the root and resolves symlinks before allowing a
path. On top of that: names flowd reserves for uploads in progress are invisible and cannot be addressed,
NUL and over-long names are refused before they reach the file system, only regular files can be opened
(a FIFO planted in the folder would hang the server), and writes go to a reserved name beside the target
until the upload is complete (intake.py gives it its real name). A partial upload kept for resume stays
under that reserved name, where REST+STOR and APPE find it again.
"""

from __future__ import annotations

import os
import stat
from typing import Any, BinaryIO, cast

from flowd.ftp._lib import AbstractedFS, FilesystemError
from flowd.hotfolder import UPLOAD_PREFIX

NAME_MAX = 255


def hidden(path: str) -> str:
    """The reserved name an upload to `path` is written under until it is complete."""
    head, tail = os.path.split(path)
    return os.path.join(head, UPLOAD_PREFIX + tail)


def visible(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, tail.removeprefix(UPLOAD_PREFIX))


def is_hidden(path: str) -> bool:
    return os.path.basename(path).startswith(UPLOAD_PREFIX)


class FlowdFS(AbstractedFS):  # type: ignore[misc]
    def validpath(self, path: str) -> bool:
        if "\0" in path:
            return False
        root = os.path.normpath(self.root)
        rel = os.path.relpath(os.path.normpath(path), root) if path.startswith(root) else path
        parts = [p for p in rel.split(os.sep) if p not in ("", ".")]
        if any(p.startswith(UPLOAD_PREFIX) or len(os.fsencode(p)) > NAME_MAX for p in parts):
            return False
        try:
            return bool(super().validpath(path))
        except (OSError, ValueError):
            return False

    # -- files ---------------------------------------------------------------------------------------
    def open(self, filename: str, mode: str) -> BinaryIO:
        if "r" in mode and "+" not in mode:
            return _open_regular(filename)
        target = hidden(filename)
        if len(os.fsencode(os.path.basename(target))) > NAME_MAX:
            raise FilesystemError("file name too long")
        if mode.startswith("w"):
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        else:  # "ab" (APPE) and "r+b" (REST then STOR): resume a partial upload
            if not os.path.lexists(target) and os.path.lexists(filename):
                if mode.startswith("r") or not self.cmd_channel.is_temp_name(filename):
                    raise FilesystemError(f"{os.path.basename(filename)} is already complete; nothing to resume "
                                          "(upload it again without REST/APPE)")
                os.rename(filename, target)  # a client resuming its own temp-named upload (e.g. *.filepart)
            if mode.startswith("r") and not os.path.lexists(target):
                raise FilesystemError(f"no partial upload of {os.path.basename(filename)} to resume")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND if mode.startswith("a") else os.O_RDWR
        if not self.cmd_channel.claim(target):
            raise FilesystemError("an upload to this name is in progress; try again later")
        try:
            return cast(BinaryIO, open(target, mode, opener=lambda p, _f: _open_for_write(p, flags)))
        except BaseException:
            self.cmd_channel.release(target)
            raise

    def getsize(self, path: str) -> int:
        if not os.path.lexists(path) and os.path.lexists(hidden(path)):
            return os.lstat(hidden(path)).st_size  # REST into a partial upload
        return int(super().getsize(path))

    def partial_size(self, path: str) -> int | None:
        try:
            st = os.lstat(hidden(path))
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def remove(self, path: str) -> None:
        if not os.path.lexists(path) and os.path.lexists(hidden(path)):
            path = hidden(path)  # deleting the name of a partial upload drops the partial
        os.remove(path)

    # -- listings ------------------------------------------------------------------------------------
    def listdir(self, path: str) -> list[str]:
        return [n for n in super().listdir(path) if not n.startswith(UPLOAD_PREFIX)]

    def listdirinfo(self, path: str) -> list[str]:
        return self.listdir(path)

    def readlink(self, path: str) -> str:
        """A symlink's target as the user sees paths, never the server's own paths."""
        real = os.path.realpath(path)
        root = os.path.realpath(self.root)
        if real == root or real.startswith(root + os.sep):
            return "/" + os.path.relpath(real, root).replace(os.sep, "/").removeprefix(".")
        return "(outside this folder)"

    def mkstemp(self, *args: Any, **kwargs: Any) -> Any:
        raise FilesystemError("STOU is not supported; upload with STOR")


def _open_for_write(path: str, flags: int) -> int:
    # O_NOFOLLOW: a symlink planted under the reserved name must not redirect the upload; O_NONBLOCK: a
    # FIFO planted there must not hang the server in open() (it fails at once without a reader).
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FilesystemError("not a regular file")
    os.set_blocking(fd, True)
    return fd


def _open_regular(path: str) -> BinaryIO:
    def opener(p: str, _flags: int) -> int:
        # O_NONBLOCK: opening a FIFO planted in the folder returns at once (and is refused) instead of hanging.
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FilesystemError("not a regular file")
        os.set_blocking(fd, True)
        return fd

    return open(path, "rb", opener=opener)
