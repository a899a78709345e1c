"""Safe ZIP extraction for hot folders with `extract_zip` on.

ZIP files come from untrusted senders. `inspect` reads only the central directory and refuses a hostile
archive as a whole, before anything is written, with a sentence naming the entry and the problem.
`extract` then writes every entry under a hidden temp name, and only when all of them have been read in
full (sizes and CRCs checked) gives them their final names: an archive found lying halfway through leaves
no file behind that the watcher could turn into a job. Each file carries an xattr naming the extraction
and entry, so a retry after a crash finds the files already written instead of writing them again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from flowd.errors import PermanentError, TransientError

XATTR = "user.flowd.unzip"
TEMP_PREFIX = ".flowd-unzip."  # hidden: the hot folder watcher ignores it
RESERVED_PREFIX = ".flowd-"  # the daemon's own temp names, never taken from an archive
MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

RATIO_FLOOR = 1024**2  # small entries may compress very well (a blank page) without being a bomb
MAX_COMPONENT = 255  # bytes, UTF-8: NAME_MAX on Linux file systems
MAX_RELPATH = 1024  # bytes, UTF-8
MAX_CANDIDATES = 10_000  # NAME_1 ... NAME_9999, then give up rather than loop
CHUNK = 1024**2

# Central directory bytes per allowed entry before zipfile parses it: zipfile builds a ZipInfo per entry
# before we can count them, so a tiny archive listing millions of entries must be stopped earlier.
CD_BYTES_PER_ENTRY = 256

METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
           zipfile.ZIP_LZMA: "lzma"}
METHOD_NAMES: dict[int, str] = {**getattr(zipfile, "compressor_names", {}), 9: "deflate64", 99: "AES (WinZip)"}

FLAG_ENCRYPTED = 0x1
FLAG_PATCHED = 0x20

# Errors that may pass on a retry; any other OSError is a permanent failure.
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EAGAIN, errno.EBUSY,
                              errno.ESTALE, errno.ETIMEDOUT, errno.EMFILE, errno.ENFILE, errno.EINTR})
NO_XATTR_ERRNOS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})

T = TypeVar("T")

_DRIVE = re.compile(r"[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")


class ZipRefused(PermanentError):
    """The archive is hostile or broken: the asset is quarantined with this sentence as the reason."""

    def __init__(self, reason: str, entry: str | None = None) -> None:
        self.reason, self.entry = reason, entry
        super().__init__(f"refused ZIP: {reason}")


@dataclass(frozen=True, slots=True)
class ZipLimits:
    max_total: int = 4 * 1024**3  # total uncompressed bytes of all entries
    max_ratio: float = 200.0  # uncompressed/compressed per entry (entries over 1 MiB uncompressed only)
    max_entries: int = 10_000
    max_entry: int = 2 * 1024**3  # one entry's uncompressed size


@dataclass(frozen=True, slots=True)
class Entry:
    index: int  # position in the central directory
    name: str  # the archive's name for it, as decoded
    relpath: str  # the safe relative path it will be written under ('/'-separated)
    size: int  # declared uncompressed size
    compressed: int


def is_zip(path: Path) -> bool:
    """By magic bytes, not by extension. An empty archive (only the end record) counts."""
    with open(path, "rb") as f:
        return f.read(4) in MAGIC


def inspect(path: Path, limits: ZipLimits = ZipLimits()) -> list[Entry]:
    """Every file entry to extract, checked; raises ZipRefused naming the first offending entry.
    Skips (does not return, does not refuse) directory entries, macOS junk (__MACOSX/..., ._* AppleDouble,
    .DS_Store) and hidden names, which the hot folder would ignore anyway."""
    with _Archive(path, limits) as zf:
        infos = zf.infolist()
    entries: list[Entry] = []
    files: dict[str, str] = {}  # relpath -> entry name
    folders: dict[str, str] = {}  # folder relpath -> the entry name that needs it
    total = 0
    for index, info in enumerate(infos):
        name = info.orig_filename  # before zipfile cuts the name at a NUL
        parts = _parts(name)
        mode = info.external_attr >> 16
        is_dir = name.endswith(("/", "\\")) or (info.create_system == 3 and stat.S_ISDIR(mode))
        if not parts and is_dir:
            continue  # './': the folder itself
        if not parts:
            raise ZipRefused(f"entry {_q(name)} has no usable name", name)
        if _skipped(parts):
            continue
        relpath = "/".join(parts)
        _claim(name, relpath, is_dir, files, folders)
        if is_dir:
            continue
        _check_file(info, limits)
        entries.append(Entry(index, name, relpath, info.file_size, info.compress_size))
        if len(entries) > limits.max_entries:
            raise ZipRefused(f"entry {_q(name)} is file number {len(entries)} "
                             f"(limit {limits.max_entries} files per archive)", name)
        total += info.file_size
        if total > limits.max_total:
            raise ZipRefused(f"entry {_q(name)} brings the files to {total} bytes uncompressed "
                             f"(limit {limits.max_total} bytes in all)", name)
    return entries


def extract(path: Path, dest: Path, entries: list[Entry], token: str, limits: ZipLimits = ZipLimits()) -> list[str]:
    """Write each entry under dest (creating folders), returning the relpaths (relative to dest) actually used,
    in entry order. Never overwrites: a taken name becomes NAME_1.ext, NAME_2.ext ...

    Idempotent under a retry with the same token: a file already carrying xattr `user.flowd.unzip` =
    "TOKEN:INDEX" (and the declared size) at one of the entry's candidate names is that entry, reused as is.
    Without user xattrs (ENOTSUP) the files are written without them, and a retry writes them again.
    Raises ZipRefused when the data contradicts the headers (bad CRC, more or fewer bytes than declared);
    TransientError for I/O errors that may pass; PermanentError for other I/O errors."""
    tag = _tag(token)
    staged: list[tuple[int, Entry, str]] = []  # (position, entry, temp name) written but not yet linked
    used: list[str | None] = [None] * len(entries)
    created: list[str] = []  # folders this call made, removed again if nothing ends up in them
    total = 0
    dest_fd = _os_call(lambda: os.open(dest, os.O_RDONLY | os.O_DIRECTORY), dest, "open the folder")
    try:
        with _Archive(path, limits) as zf:
            infos = zf.infolist()
            for entry in entries:
                _check_entry(entry, infos)
            if len({e.index for e in entries}) != len(entries):
                raise PermanentError("the same ZIP entry is listed twice for extraction")
            _check_folders(dest_fd, dest, entries)
            for position, entry in enumerate(entries):
                folder, filename = _split(entry.relpath)
                value = f"{token}:{entry.index}".encode()
                dir_fd = _walk(dest_fd, dest, folder, created)
                try:
                    earlier = _find_earlier(dir_fd, filename, value, entry.size)
                    if earlier is not None:
                        used[position] = _join(folder, earlier)
                        total += entry.size
                        continue
                    temp = f"{TEMP_PREFIX}{tag}.{entry.index}"
                    staged.append((position, entry, temp))
                    total = _write_temp(zf, infos[entry.index], entry, dir_fd, dest, temp, value, total, limits)
                finally:
                    os.close(dir_fd)
        # Every entry has been read in full: only now do the files take names the watcher sees.
        for position, entry, temp in list(staged):
            folder, filename = _split(entry.relpath)
            dir_fd = _walk(dest_fd, dest, folder, None)
            try:
                final = _link(dir_fd, dest, entry.relpath, temp, filename)
                staged.remove((position, entry, temp))
                _unlink(dir_fd, temp)
                _fsync_dir(dir_fd, dest / folder)
            finally:
                os.close(dir_fd)
            used[position] = _join(folder, final)
    except BaseException:
        for _, entry, temp in staged:
            _discard(dest_fd, _split(entry.relpath)[0], temp)
        for folder in reversed(created):
            try:
                os.rmdir(folder, dir_fd=dest_fd)
            except OSError:
                pass  # not empty (something else wrote there) or already gone: leave it
        raise
    finally:
        os.close(dest_fd)
    return [u for u in used if u is not None]


# -- inspect helpers -----------------------------------------------------------------------------------------


class _Archive:
    """zipfile.ZipFile opened with every error it raises on a broken archive turned into ZipRefused."""

    def __init__(self, path: Path, limits: ZipLimits) -> None:
        try:
            self.fp = open(path, "rb")
        except OSError as exc:
            raise _io_error(exc, f"cannot read {path}") from exc
        try:
            _check_directory_size(self.fp, limits)
            self.zf = zipfile.ZipFile(self.fp)
        except BaseException as exc:
            self.fp.close()
            if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
                raise TransientError(f"cannot read {path}: {exc.strerror}") from exc
            if isinstance(exc, zipfile.BadZipFile | zipfile.LargeZipFile | OSError | ValueError | EOFError
                          | NotImplementedError):
                raise ZipRefused(f"not a readable ZIP archive: {exc}") from exc
            raise

    def __enter__(self) -> zipfile.ZipFile:
        return self.zf

    def __exit__(self, *_: object) -> None:
        self.zf.close()
        self.fp.close()


def _check_directory_size(fp: object, limits: ZipLimits) -> None:
    """Refuse a central directory too big for the entry limit before zipfile parses it into memory.
    Uses zipfile's own end-record reader (private, stable since Python 2); skipped if it ever goes."""
    reader = getattr(zipfile, "_EndRecData", None)
    if reader is None:
        return
    end = reader(fp)
    if not end:
        return  # not a ZIP: zipfile says so in its own words
    count, size = int(end[4]), int(end[5])  # entries in total, bytes in the central directory
    allowed = 4 * limits.max_entries + 16  # folders and macOS junk entries come on top of the files
    if count > allowed:
        raise ZipRefused(f"the archive lists {count} entries (limit {limits.max_entries} files)")
    if size > allowed * CD_BYTES_PER_ENTRY:
        raise ZipRefused(f"the central directory is {size} bytes, too big for {limits.max_entries} files")


def _parts(name: str) -> list[str]:
    """The safe path components of an archive name, or ZipRefused. Backslashes count as separators
    (archives made on Windows); empty and '.' components are dropped; NFC so that names typed on a Mac
    (NFD) and elsewhere compare equal."""
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ZipRefused(f"entry {_q(name)} has a control character in its name", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ZipRefused(f"entry {_q(name)} has an absolute path", name)
    parts = [unicodedata.normalize("NFC", p) for p in _SEPARATORS.split(name) if p not in ("", ".")]
    if ".." in parts:
        raise ZipRefused(f"entry {_q(name)} would be written outside the folder (zip-slip)", name)
    for part in parts:
        if len(part.encode()) > MAX_COMPONENT:
            raise ZipRefused(f"entry {_q(name)} has a name part over {MAX_COMPONENT} bytes", name)
        if part.startswith(RESERVED_PREFIX):
            raise ZipRefused(f"entry {_q(name)} uses the reserved prefix {RESERVED_PREFIX!r}", name)
    size = len("/".join(parts).encode())
    if size > MAX_RELPATH:
        raise ZipRefused(f"entry {_q(name)} has a path of {size} bytes (limit {MAX_RELPATH})", name)
    return parts


def _skipped(parts: list[str]) -> bool:
    """macOS junk (__MACOSX/, ._AppleDouble, .DS_Store) and hidden names: the hot folder ignores '.*' in
    any part of a path, so such a file would sit there forever."""
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _claim(name: str, relpath: str, is_dir: bool, files: dict[str, str], folders: dict[str, str]) -> None:
    """Record the path; refuse duplicates and a path that is a file for one entry and a folder for another."""
    if relpath in files:
        other = files[relpath]
        if is_dir:
            raise ZipRefused(f"entry {_q(name)} is a folder, but entry {_q(other)} is a file at that path", name)
        raise ZipRefused(_duplicate(name, other, relpath), name)
    if not is_dir and relpath in folders:
        other = folders[relpath]
        raise ZipRefused(f"entry {_q(name)} is a file, but entry {_q(other)} uses that path as a folder", name)
    for ancestor in _ancestors(relpath):
        if ancestor in files:
            raise ZipRefused(f"entry {_q(name)} needs {_q(ancestor)} as a folder, but entry "
                             f"{_q(files[ancestor])} is a file there", name)
        folders.setdefault(ancestor, name)
    if is_dir:
        folders.setdefault(relpath, name)
    else:
        files[relpath] = name


def _duplicate(name: str, other: str, relpath: str) -> str:
    if name == other:
        return f"entry {_q(name)} appears twice (duplicate)"
    text = f"entries {_q(other)} and {_q(name)} would both be written as {_q(relpath)} (duplicate)"
    if _SEPARATORS.sub("/", name) == _SEPARATORS.sub("/", other):
        return text  # they differ in separators only: visible as they are
    if unicodedata.normalize("NFC", name) == unicodedata.normalize("NFC", other):
        return f"{text}; the names differ only in Unicode normalisation (NFC/NFD)"
    return text


def _ancestors(relpath: str) -> Iterator[str]:
    parts = relpath.split("/")
    for n in range(1, len(parts)):
        yield "/".join(parts[:n])


def _check_file(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    name = info.orig_filename
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:  # refused whatever the creator system says: a link is never a file
        raise ZipRefused(f"entry {_q(name)} is a symbolic link", name)
    if info.create_system == 3 and kind not in (0, stat.S_IFREG):
        raise ZipRefused(f"entry {_q(name)} is a {_KINDS.get(kind, 'special file')}, not a regular file", name)
    if info.flag_bits & FLAG_ENCRYPTED:
        raise ZipRefused(f"entry {_q(name)} is encrypted", name)
    if info.flag_bits & FLAG_PATCHED:
        raise ZipRefused(f"entry {_q(name)} uses compressed patched data, which is not supported", name)
    if info.compress_type not in METHODS:
        method = METHOD_NAMES.get(info.compress_type, "unknown")
        raise ZipRefused(f"entry {_q(name)} uses compression method {info.compress_type} ({method}); "
                         f"supported: {', '.join(METHODS.values())}", name)
    if info.file_size > limits.max_entry:
        raise ZipRefused(f"entry {_q(name)} is {info.file_size} bytes uncompressed "
                         f"(limit {limits.max_entry} bytes per file)", name)
    if info.file_size > RATIO_FLOOR:
        if info.compress_size <= 0:
            raise ZipRefused(f"entry {_q(name)} expands {info.file_size} bytes from nothing (zip bomb)", name)
        ratio = info.file_size / info.compress_size
        if ratio > limits.max_ratio:
            raise ZipRefused(f"entry {_q(name)} expands {int(ratio)} times (limit {limits.max_ratio:g})", name)


_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "FIFO",
          stat.S_IFSOCK: "socket", stat.S_IFDIR: "folder"}


def _q(name: str) -> str:
    """An entry name for a message: quoted, control characters escaped, not too long."""
    text = repr(name)
    return text if len(text) <= 160 else text[:150] + "...'"


# -- extract helpers -----------------------------------------------------------------------------------------


def _tag(token: str) -> str:
    """A fixed temp name per extraction, so a retry replaces the temps a crash left behind."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _check_entry(entry: Entry, infos: list[zipfile.ZipInfo]) -> None:
    """The entries must be inspect's, for this very archive: a relpath is trusted only if it is still safe."""
    info = infos[entry.index] if 0 <= entry.index < len(infos) else None
    if info is None or info.orig_filename != entry.name or info.file_size != entry.size:
        raise PermanentError(f"the ZIP archive changed since it was inspected (entry {_q(entry.name)})")
    parts = _parts(entry.relpath)
    if not parts or parts != entry.relpath.split("/") or _skipped(parts):
        raise PermanentError(f"unsafe relative path {_q(entry.relpath)} for entry {_q(entry.name)}")


def _check_folders(dest_fd: int, dest: Path, entries: list[Entry]) -> None:
    """Before writing anything: every existing part of every folder path is a real folder (a symlink
    there could lead out of the hot folder; a file there leaves no room for the folder)."""
    seen: set[str] = set()
    for entry in entries:
        for folder in _ancestors(entry.relpath):
            if folder in seen:
                continue
            seen.add(folder)
            try:
                st = os.stat(folder, dir_fd=dest_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _io_error(exc, f"cannot check {dest / folder}") from exc
            if not stat.S_ISDIR(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
                raise PermanentError(f"cannot extract entry {_q(entry.name)}: {dest / folder} is {what}")


def _walk(dest_fd: int, dest: Path, folder: str, created: list[str] | None) -> int:
    """An fd on dest/folder, one part at a time, never following a symlink; made if `created` is given."""
    fd = os.dup(dest_fd)
    done: list[str] = []
    try:
        for part in folder.split("/") if folder else []:
            done.append(part)
            if created is not None:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                    created.append("/".join(done))
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise _io_error(exc, f"cannot create folder {dest.joinpath(*done)}") from exc
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _io_error(exc, f"cannot open folder {dest.joinpath(*done)}") from exc
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _candidates(filename: str) -> Iterator[str]:
    """NAME.ext, NAME_1.ext, NAME_2.ext ... each within MAX_COMPONENT bytes."""
    yield filename
    dot = filename.rfind(".")
    stem, ext = (filename[:dot], filename[dot:]) if dot > 0 else (filename, "")
    for n in range(1, MAX_CANDIDATES):
        suffix = f"_{n}{ext}"
        room = MAX_COMPONENT - len(suffix.encode())
        cut = stem.encode()[:room].decode("utf-8", "ignore")
        yield cut + suffix


def _find_earlier(dir_fd: int, filename: str, value: bytes, size: int) -> str | None:
    """The name an earlier attempt gave this entry: the first candidate carrying exactly our xattr and the
    declared size. Stops at the first free candidate, where a new file would go."""
    for candidate in _candidates(filename):
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError:
            continue  # a symlink, or unreadable: not ours
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_size == size and os.getxattr(fd, XATTR) == value:
                return candidate
        except OSError:
            pass  # no such xattr, or no xattrs at all: not ours
        finally:
            os.close(fd)
    return None


def _write_temp(zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: Entry, dir_fd: int, dest: Path, temp: str,
                value: bytes, total: int, limits: ZipLimits) -> int:
    """Stream one entry to its temp name, enforcing the actual sizes; fsync; tag. Returns the new total."""
    where = dest / entry.relpath
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o666, dir_fd=dir_fd)
    except FileExistsError:
        _unlink(dir_fd, temp)  # left by an attempt that crashed
        fd = _os_call(lambda: os.open(temp, flags, 0o666, dir_fd=dir_fd), where, "create a temp file for")
    except OSError as exc:
        raise _io_error(exc, f"cannot create a temp file for {where}") from exc
    try:
        written = 0
        for chunk in _chunks(zf, info, entry.name):
            written += len(chunk)
            total += len(chunk)
            if written > entry.size:
                raise ZipRefused(f"entry {_q(entry.name)} holds more than its declared {entry.size} bytes "
                                 "(lying header: zip bomb)", entry.name)
            if total > limits.max_total:
                raise ZipRefused(f"the files expand to more than {limits.max_total} bytes by entry "
                                 f"{_q(entry.name)} (limit {limits.max_total} bytes in all)", entry.name)
            _write_all(fd, chunk, where)
        if written != entry.size:
            raise ZipRefused(f"entry {_q(entry.name)} is corrupt: {written} bytes where the header declares "
                             f"{entry.size}", entry.name)
        try:
            os.setxattr(fd, XATTR, value)
        except OSError as exc:
            if exc.errno not in NO_XATTR_ERRNOS:
                raise _io_error(exc, f"cannot tag {where}") from exc
            # no user xattrs here: the file is written untagged and a retry writes it again
        _os_call(lambda: os.fsync(fd), where, "sync")  # after the tag: the xattr is metadata to keep too
    finally:
        os.close(fd)
    return total


def _chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Iterator[bytes]:
    """The entry's data, with every error a broken or lying archive causes turned into ZipRefused.
    zipfile stops at the declared size and checks the CRC at the end of the data (BadZipFile)."""
    try:
        with zf.open(info) as src:
            while chunk := src.read(CHUNK):
                yield chunk
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise TransientError(f"cannot read the ZIP archive: {exc.strerror}") from exc
        raise ZipRefused(f"entry {_q(name)} is corrupt: {exc}", name) from exc  # bz2: "Invalid data stream"
    except Exception as exc:  # BadZipFile (CRC), EOFError, zlib.error, lzma.LZMAError: all data errors
        raise ZipRefused(f"entry {_q(name)} is corrupt: {exc}", name) from exc


def _write_all(fd: int, data: bytes, where: Path) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            raise _io_error(exc, f"cannot write {where}") from exc
        view = view[n:]


def _link(dir_fd: int, dest: Path, relpath: str, temp: str, filename: str) -> str:
    """Give the temp its final name: the first free candidate. os.link never replaces an existing file."""
    for candidate in _candidates(filename):
        try:
            os.link(temp, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise _io_error(exc, f"cannot name {dest / relpath}") from exc
    raise PermanentError(f"cannot name {dest / relpath}: {MAX_CANDIDATES} names are taken")


def _fsync_dir(dir_fd: int, where: Path) -> None:
    """The new name survives a power cut before the archive is deleted."""
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        raise _io_error(exc, f"cannot sync folder {where}") from exc


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _discard(dest_fd: int, folder: str, temp: str) -> None:
    """Remove a temp after a failure; the failure being reported matters more than this one."""
    try:
        dir_fd = _walk(dest_fd, Path("."), folder, None)
    except (OSError, PermanentError):
        return
    try:
        os.unlink(temp, dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _split(relpath: str) -> tuple[str, str]:
    folder, _, filename = relpath.rpartition("/")
    return folder, filename


def _join(folder: str, filename: str) -> str:
    return f"{folder}/{filename}" if folder else filename


def _io_error(exc: OSError, what: str) -> PermanentError | TransientError:
    reason = exc.strerror or str(exc)
    if exc.errno in TRANSIENT_ERRNOS:
        return TransientError(f"{what}: {reason}")
    return PermanentError(f"{what}: {reason}")


def _os_call(call: Callable[[], T], where: Path, what: str) -> T:
    try:
        return call()
    except OSError as exc:
        raise _io_error(exc, f"cannot {what} {where}") from exc
