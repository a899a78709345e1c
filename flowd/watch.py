"""Hot folder detection: watchdog events feed a stability tracker; a scan catches whatever events miss.

A file becomes a job only when it is complete: its (size, mtime) unchanged for `stable_seconds`, or, with
`stable_seconds = 0`, on the writer's close or an atomic rename into the folder. Temp names are ignored
until renamed. The scan (at start and every `rescan_seconds`) is the source of truth: inotify can
overflow, and polling observers never see closes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from flowd.hotfolder import Folder
from flowd.queue import Detected

Promote = Callable[[list[Detected]], None]
Known = Callable[[list[Detected]], set[str]]
# With stable_seconds = 0 a file seen only as "created" (no close event: moved in from outside the tree,
# or written right after mkdir) is accepted once it has been quiet this long.
CREATED_ONLY_GRACE = 1.0
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
# What inotify is asked for. Not opens, reads, deletes or attribute changes: flowd's own reads, xattr tags
# and deletes in the hot folder would otherwise come back as thousands of events a second. Writes in
# progress need no events either: the tracker stats its candidates itself until the close.
INOTIFY_EVENTS: list[type[FileSystemEvent]] = [FileCreatedEvent, FileClosedEvent, FileMovedEvent,
                                               DirCreatedEvent, DirMovedEvent]


@dataclass(slots=True)
class _Candidate:
    folder: Folder
    relpath: str
    size: int
    mtime_ns: int
    since: float


class Tracker:
    """Candidates waiting to be stable. One thread checks them; promotion hands them to intake."""

    def __init__(self, promote: Promote, queued_elsewhere: Callable[[Folder, Path], bool] | None = None) -> None:
        self.promote = promote
        # A file the FTP server has just put in place and queues itself: tracking it too would only cost
        # a stat every check and a duplicate insert (the periodic rescan stays the safety net).
        self.queued_elsewhere = queued_elsewhere
        self._items: dict[tuple[str, str], _Candidate] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stability", daemon=True)

    def __len__(self) -> int:
        return len(self._items)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started (a daemon that failed to start may stop before)
            self._thread.join(5)

    def forget_folder(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == name]:
                del self._items[key]

    def seen(self, folder: Folder, relpath: str, *, complete: bool) -> None:
        """An event for this file. `complete`: the writer closed it or it was renamed into place."""
        if _ignored(folder, relpath) or not _real_dir((folder.root / relpath).parent):
            return  # a path through a symlinked folder leads out of the hot folder
        st = _regular_stat(folder.root / relpath)
        key = (folder.name, relpath)
        if st is None or (folder.ftp and self.queued_elsewhere is not None
                          and self.queued_elsewhere(folder, folder.root / relpath)):
            with self._lock:
                self._items.pop(key, None)
            return
        if complete and folder.spec.stable_seconds == 0:
            with self._lock:
                self._items.pop(key, None)
            self.promote([_detected(folder, relpath, st)])
            return
        with self._lock:
            item = self._items.get(key)
            if item is None or (item.size, item.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._items[key] = _Candidate(folder, relpath, st.st_size, st.st_mtime_ns, time.monotonic())

    def add_quiet(self, folder: Folder, relpath: str, st: os.stat_result) -> None:
        key = (folder.name, relpath)
        with self._lock:
            if key not in self._items:
                self._items[key] = _Candidate(folder, relpath, st.st_size, st.st_mtime_ns, time.monotonic())

    def has(self, folder: str, relpath: str) -> bool:
        return (folder, relpath) in self._items

    def _loop(self) -> None:
        while not self._stop.wait(0.05 if self._items else 0.2):
            try:
                self.check()
            except Exception as exc:  # never let the tracker die: files would stop being detected
                logger.opt(exception=exc).error("stability check failed: {}", exc)

    def check(self) -> None:
        now = time.monotonic()
        ready: list[Detected] = []
        with self._lock:
            items = list(self._items.items())
        for key, item in items:
            st = _regular_stat(item.folder.root / item.relpath)
            if st is None:
                with self._lock:
                    self._items.pop(key, None)
                continue
            if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
                item.size, item.mtime_ns, item.since = st.st_size, st.st_mtime_ns, now
                continue
            window = item.folder.spec.stable_seconds or CREATED_ONLY_GRACE
            if now - item.since >= window:
                if has_writer(item.folder.root / item.relpath):
                    # Quiet is not complete: a stalled upload still holds the file open for writing.
                    item.since = now
                    continue
                with self._lock:
                    if self._items.get(key) is item:
                        del self._items[key]
                ready.append(_detected(item.folder, item.relpath, st))
        if ready:
            self.promote(ready)


class _Handler(FileSystemEventHandler):
    def __init__(self, folder: Folder, tracker: Tracker, on_new_dir: Callable[[Folder, Path], None]) -> None:
        self.folder = folder
        self.tracker = tracker
        self.on_new_dir = on_new_dir
        self.root = str(folder.root)

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if not p.startswith(self.root + os.sep):
            return None
        return p[len(self.root) + 1:]

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception as exc:  # one odd event must not stop the observer thread
            logger.opt(exception=exc).error("event handling failed for {}: {}", event, exc)

    def _dispatch(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            rel = self._rel(event.dest_path)
            if rel is not None:
                self.tracker.seen(self.folder, rel, complete=True)
        elif isinstance(event, FileClosedEvent):
            rel = self._rel(event.src_path)
            if rel is not None:
                self.tracker.seen(self.folder, rel, complete=True)
        elif isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            rel = self._rel(event.src_path)
            if rel is not None:
                self.tracker.seen(self.folder, rel, complete=False)
        elif isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            target = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            if self.folder.spec.recursive:
                self.on_new_dir(self.folder, Path(os.fsdecode(target)))


class Watcher:
    """Watches every enabled hot folder; one observer for inotify folders, one per polling interval."""

    def __init__(self, tracker: Tracker, on_new_dir: Callable[[Folder, Path], None]) -> None:
        self.tracker = tracker
        self.on_new_dir = on_new_dir
        self._observers: dict[str, BaseObserver] = {}

    def watch(self, folder: Folder) -> None:
        folder.root.mkdir(parents=True, exist_ok=True)
        poll = folder.spec.poll_seconds
        # lstat: a polling snapshot must not walk into symlinked folders (out of the hot folder, or loops)
        observer: BaseObserver = PollingObserverVFS(os.lstat, os.scandir, polling_interval=poll) if poll > 0 \
            else Observer()
        observer.schedule(_Handler(folder, self.tracker, self.on_new_dir), str(folder.root),
                          recursive=folder.spec.recursive, event_filter=None if poll > 0 else INOTIFY_EVENTS)
        observer.start()
        self._observers[folder.name] = observer

    def unwatch(self, name: str) -> None:
        observer = self._observers.pop(name, None)
        if observer is not None:
            observer.stop()
            observer.join(5)
        self.tracker.forget_folder(name)

    def names(self) -> set[str]:
        return set(self._observers)

    def stop(self) -> None:
        for name in list(self._observers):
            self.unwatch(name)


def scan(folder: Folder, start: Path | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular, non-ignored file below the folder: streamed, symlinks never followed."""
    stack = [start or folder.root]
    root = str(folder.root)
    if start is not None:
        if not _real_dir(start) or not start.is_relative_to(folder.root):
            return  # e.g. a symlink to a folder elsewhere, reported as a new folder: never followed
        if start != folder.root and _ignored(folder, start.relative_to(folder.root).as_posix()):
            return  # a new folder under a temp name (".upload-1/", "x.tmp/"): taken once renamed
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            if current == folder.root:
                logger.warning("cannot scan hot folder {}: {}", folder.root, exc)
            continue
        for entry in entries:
            if folder.ignored(entry.name):
                continue
            try:
                if entry.is_symlink():
                    continue  # a symlink could point anywhere; it is never an asset
                if entry.is_dir(follow_symlinks=False):
                    if folder.spec.recursive:
                        stack.append(Path(entry.path))
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield entry.path[len(root) + 1:], st


def reconcile(folder: Folder, tracker: Tracker, promote: Promote, known: Known, start: Path | None = None,
              batch: int = 500) -> int:
    """Queue every file the database has no job for: old enough ones at once, fresh ones via the tracker."""
    stable = folder.spec.stable_seconds
    pending: list[tuple[Detected, os.stat_result]] = []
    count = 0

    def flush() -> int:
        have = known([d for d, _ in pending])
        now = time.time()
        ready = []
        for d, st in pending:
            if d.dedupe() in have or tracker.has(folder.name, d.relpath):
                continue
            if now - st.st_mtime >= max(stable, CREATED_ONLY_GRACE if stable == 0 else stable):
                ready.append(d)
            else:
                tracker.add_quiet(folder, d.relpath, st)
        if ready:
            promote(ready)
        pending.clear()
        return len(ready)

    for relpath, st in scan(folder, start):
        pending.append((_detected(folder, relpath, st), st))
        if len(pending) >= batch:
            count += flush()
    if pending:
        count += flush()
    return count


def _ignored(folder: Folder, relpath: str) -> bool:
    return any(folder.ignored(part) for part in relpath.split("/"))


def _real_dir(path: Path) -> bool:
    """No component of this (absolute, normalised) path is a symlink. Hot folder roots are resolved."""
    return os.path.realpath(path) == os.path.normpath(path)


def has_writer(path: Path) -> bool:
    """True when some process has the file open for writing (Linux refuses a read lease then).

    Needs to own the file or CAP_LEASE; where leases are not possible (other owners, NFS, SMB) it
    answers False and the stability window alone decides.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    else:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _regular_stat(path: Path) -> os.stat_result | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _detected(folder: Folder, relpath: str, st: os.stat_result) -> Detected:
    return Detected(folder.spec.tenant, folder.name, relpath, st.st_size, st.st_mtime_ns)
