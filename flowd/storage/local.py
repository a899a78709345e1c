"""kind = "local": one folder per container under a root, writes via temp name + link/rename."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from flowd.errors import ConflictError, PathEscapeError, PermanentError, TransientError
from flowd.storage.base import Conflict, Put, incremented
from flowd.target import TargetError, clean_key

TOKEN_XATTR = "user.flowd.step"
TEMP_PREFIX = ".flowd-tmp-"
_MAX_INCREMENT = 100_000
# Up to this many files written by one batch are fsynced one by one (with their folders); more, and one
# syncfs() for the batch costs less.
FSYNC_FILES_MAX = 16
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class LocalStorage:
    remote = False
    def __init__(self, name: str, root: Path, tenants: frozenset[str] | None = None, fsync: bool = True,
                 link: bool = True) -> None:
        self.name = name
        self.root = root
        self.tenants = tenants
        self.fsync = fsync
        self.link = link
        self._device: int | None = None
        self._dirs: set[str] = set()
        self._batch = threading.local()  # what this worker thread's batch wrote, until its sync()
        self._lock = threading.Lock()
        self._xattrs = True

    # -- paths ---------------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        try:
            key = clean_key(key)
        except TargetError as exc:
            raise PathEscapeError(str(exc)) from None
        return self.root / key

    def _ensure_dir(self, folder: Path) -> None:
        key = str(folder)
        if key in self._dirs:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise PermanentError(f"cannot create folder {folder}: a file of that name is in the way") from None
        except OSError as exc:
            raise _classify(exc, f"cannot create folder {folder}") from None
        # A symlink planted inside the storage must not carry writes outside its root.
        real = Path(os.path.realpath(folder))
        if not real.is_relative_to(Path(os.path.realpath(self.root))):
            raise PathEscapeError(f"{folder} resolves outside the storage root {self.root}")
        with self._lock:
            self._dirs.add(key)
        # Folders this may have created are new entries of their parents: synced with the batch's files.
        pending = self._pending()
        for parent in [folder, *folder.parents]:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            pending.add(str(parent.parent) + os.sep)

    # -- writes --------------------------------------------------------------------------------------
    def put_file(self, key: str, source: Path, *, conflict: Conflict, token: str,
                 sha256: Callable[[], str], may_link: bool = False, info: Mapping[str, str] | None = None,
                 replaces: str | None = None, mtime_ns: int | None = None, digits: int = 0) -> Put:
        """`mtime_ns` is set on the temporary file before it takes its final name, so the output never shows
        another time, whichever name `increment` gives it; a linked write links only a source that has that
        time already (else it copies: the source's own time is never changed)."""
        if replaces is not None:
            raise PermanentError(f"storage '{self.name}' holds no versioned assets to edit in place")
        path = self._path(key)
        self._ensure_dir(path.parent)
        if may_link and self.link:
            put = self._put_linked(source, path, key, conflict, token, sha256, mtime_ns, digits)
            if put is not None:
                return put
        tmp = path.parent / f"{TEMP_PREFIX}{token}"
        try:
            self._copy(source, tmp)
            if mtime_ns is not None:
                os.utime(tmp, ns=(time.time_ns(), mtime_ns), follow_symlinks=False)
            self._tag(str(tmp), token)
            if conflict is Conflict.OVERWRITE:
                os.replace(tmp, path)
                self._wrote(path)
                return Put(key, "written")
            try:
                return self._written(self._place(str(tmp), key, conflict, token, sha256, digits))
            finally:
                _unlink_quietly(tmp)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _classify(exc, f"cannot write {path}") from None

    def _put_linked(self, source: Path, path: Path, key: str, conflict: Conflict, token: str,
                    sha256: Callable[[], str], mtime_ns: int | None = None, digits: int = 0) -> Put | None:
        """Hard-link the source instead of copying it when both share a file system: no bytes move, and
        removing the source later frees no blocks. Callers only ask when the source is going away.

        The source is opened (never following a symlink) and linked through /proc/self/fd, so what gets
        linked is the regular file that was checked, even if the name is swapped meanwhile. None: copy."""
        if self._device is None:
            self._device = os.stat(self.root).st_dev
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            # nlink > 1: an earlier attempt (or someone else) already linked this inode; a second output on
            # the same inode would share its bytes and its step token with the first, so copy instead.
            if st.st_dev != self._device or not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                return None
            # The link shares the source's inode and so its time: wanting another one (a source changed
            # since it was seen) means a copy, as setting it here would also hide the change from the
            # fate's same-file check.
            if mtime_ns is not None and st.st_mtime_ns != mtime_ns:
                return None
            self._tag(fd, token)
            by_fd = f"/proc/self/fd/{fd}"
            tmp = path.parent / f"{TEMP_PREFIX}{token}"
            _unlink_quietly(tmp)  # left by an attempt that crashed while copying
            if conflict is Conflict.OVERWRITE:
                _link_fd(by_fd, str(tmp))
                os.replace(tmp, path)
                self._wrote(path)
                return Put(key, "written", linked=True)
            put = self._written(self._place(by_fd, key, conflict, token, sha256, digits))
            return Put(put.key, put.outcome, linked=put.outcome == "written")
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP,
                             errno.ENOENT):
                return None  # no /proc, or links refused here: copy instead
            raise _classify(exc, f"cannot write {path}") from None
        finally:
            os.close(fd)

    def unshare(self, key: str) -> None:
        path = self._path(key)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if st.st_nlink <= 1:
            return
        tmp = path.parent / f"{TEMP_PREFIX}unshare-{os.getpid()}-{threading.get_ident()}"
        try:
            self._copy(path, tmp)
            # The copy is the same output: it keeps its time (a `keep_mtime` output stays dated as its source).
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            try:
                token = os.getxattr(path, TOKEN_XATTR, follow_symlinks=False)
                os.setxattr(tmp, TOKEN_XATTR, token)
            except OSError:
                pass
            os.replace(tmp, path)
            self._wrote(path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise _classify(exc, f"cannot unshare {path}") from None

    def _place(self, src: str, key: str, conflict: Conflict, token: str, sha256: Callable[[], str],
               digits: int = 0) -> Put:
        for n in range(_MAX_INCREMENT):
            candidate = key if n == 0 else incremented(key, n, digits)
            path = self.root / candidate
            try:
                # link() never replaces: two writers cannot silently overwrite each other.
                if src.startswith("/proc/self/fd/"):
                    _link_fd(src, str(path))
                else:
                    os.link(src, path, follow_symlinks=False)
                return Put(candidate, "written")
            except FileExistsError:
                if self._owned(path, token, sha256):
                    return Put(candidate, "already")
                if conflict is Conflict.SKIP_IDENTICAL and _same_bytes(path, sha256):
                    return Put(candidate, "skipped")
                if conflict is not Conflict.INCREMENT:
                    raise ConflictError(
                        f"target {self.name}:{candidate} exists"
                        + (" with different content" if conflict is Conflict.SKIP_IDENTICAL else "")
                        + f" and the conflict policy is '{conflict.value}' "
                        "(use conflict: increment, overwrite or skip_identical)") from None
        raise ConflictError(f"more than {_MAX_INCREMENT} names taken for {self.name}:{key}")

    def plan(self, key: str, conflict: Conflict, sha256: Callable[[], str], digits: int = 0) -> Put:
        self._path(key)
        for n in range(_MAX_INCREMENT):
            candidate = key if n == 0 else incremented(key, n, digits)
            path = self.root / candidate
            if not path.exists():
                return Put(candidate, "written")
            if conflict is Conflict.OVERWRITE:
                return Put(candidate, "written")
            if conflict is Conflict.SKIP_IDENTICAL and _same_bytes(path, sha256):
                return Put(candidate, "skipped")
            if conflict is not Conflict.INCREMENT:
                raise ConflictError(f"target {self.name}:{candidate} exists and the conflict policy is '{conflict.value}'")
        raise ConflictError(f"more than {_MAX_INCREMENT} names taken for {self.name}:{key}")

    def _tag(self, target: str | int, token: str) -> None:
        if not self._xattrs:
            return
        try:
            if isinstance(target, int):
                os.setxattr(target, TOKEN_XATTR, token.encode())
            else:
                os.setxattr(target, TOKEN_XATTR, token.encode(), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            self._xattrs = False  # this file system has none: fall back to comparing bytes

    def _copy(self, source: Path, tmp: Path) -> None:
        # O_NONBLOCK: a FIFO planted in the source's place must not block the worker forever
        src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise PermanentError(f"{source} is no longer a regular file")
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                size = st.st_size
                offset = 0
                while offset < size or size == 0:
                    sent = os.sendfile(dst, src, offset, max(size - offset, 1 << 20))
                    if sent == 0:
                        break
                    offset += sent
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _owned(self, path: Path, token: str, sha256: Callable[[], str]) -> bool:
        if self._xattrs:
            try:
                return os.getxattr(path, TOKEN_XATTR, follow_symlinks=False) == token.encode()
            except OSError:
                return False
        return _same_bytes(path, sha256)

    # -- the rest of the contract --------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        # A symlinked folder planted inside the storage must not carry a delete outside its root.
        if not Path(os.path.realpath(path.parent)).is_relative_to(Path(os.path.realpath(self.root))):
            raise PathEscapeError(f"{path} resolves outside the storage root {self.root}")
        try:
            path.unlink()
            self._pending().add(str(path.parent) + os.sep)  # a folder whose entries changed
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _classify(exc, f"cannot delete {path}") from None

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / clean_key(prefix, allow_empty=True) if prefix else self.root
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            rel = Path(folder).relative_to(self.root).as_posix()
            for name in sorted(files):
                if not name.startswith(TEMP_PREFIX):
                    yield name if rel == "." else f"{rel}/{name}"

    # -- durability ----------------------------------------------------------------------------------
    def _pending(self) -> set[str]:
        pending: set[str] | None = getattr(self._batch, "paths", None)
        if pending is None:
            pending = self._batch.paths = set()
        return pending

    def _wrote(self, path: Path) -> None:
        self._pending().add(str(path))

    def _written(self, put: Put) -> Put:
        if put.outcome == "written":
            self._wrote(self.root / put.key)
        return put

    def sync(self) -> None:
        """Make what this thread's batch wrote durable. A few files: each file and its folder is fsynced,
        which waits only for their own blocks. Many: one syncfs(), cheaper than many fsyncs, though it also
        waits for everything else dirty on the file system (uploads still arriving, other programs)."""
        pending = self._pending()
        if not pending:
            return
        paths = sorted(pending)
        pending.clear()
        if not self.fsync:
            return
        if len(paths) > FSYNC_FILES_MAX:
            self._syncfs()
            return
        folders = {p[:-1] if p.endswith(os.sep) else os.path.dirname(p) for p in paths}
        for path in [p for p in paths if not p.endswith(os.sep)] + sorted(folders):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except FileNotFoundError:
                continue  # moved on since (a later step or job): its new place is synced by whoever moved it
            except OSError as exc:
                raise TransientError(f"cannot sync {path}: {exc.strerror}") from None
            try:
                os.fsync(fd)
            except OSError as exc:
                raise TransientError(f"fsync({path}) failed: {exc.strerror}") from None
            finally:
                os.close(fd)

    def _syncfs(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _libc.syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise TransientError(f"syncfs({self.root}) failed: {os.strerror(err)}")
        finally:
            os.close(fd)


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _link_fd(proc_path: str, dst: str) -> None:
    """linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N: links the open file itself. os.link() calls plain
    link(2) here, which would try to link the /proc symlink and fail with EXDEV."""
    if _libc.linkat(_AT_FDCWD, os.fsencode(proc_path), _AT_FDCWD, os.fsencode(dst), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), dst)


def _same_bytes(path: Path, sha256: Callable[[], str]) -> bool:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256()


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_PERMANENT = {errno.ENAMETOOLONG, errno.EINVAL, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.EEXIST,
              errno.EFBIG, errno.EILSEQ}


def _classify(exc: OSError, what: str) -> Exception:
    """Full disks, flaky mounts and permission fixes are worth waiting for; bad names are not."""
    text = f"{what}: {exc.strerror or exc}"
    if exc.errno in _PERMANENT:
        return PermanentError(text)
    return TransientError(text)
