"""A finished upload becomes a job: checked complete, its facts attached, its real name taken, queued.

`arrive` runs on the server's I/O loop when a transfer ends (or a temp-named upload is renamed), and
returns the reply: a handful of local system calls, no database. The upload's facts go onto the file as
a signed xattr (upload_facts.py) before it takes its final name, so `226 Transfer complete` is sent once
the file sits, complete and attributed, where the hot folder's scan would find it even if this process
died the next moment. Its job is then queued by the queue thread in batches, and the daemon's workers are
woken. An upload the format says is cut short (a client that closed the data connection mid-file still
gets pyftpdlib's `on_file_received`) is answered 426 and removed or kept for resume, like an aborted one.
"""

from __future__ import annotations

import errno
import os
import queue as stdqueue
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from flowd import upload_facts
from flowd.asset import Upload, read_head
from flowd.config import FtpSettings
from flowd.ftp.fs import hidden, visible
from flowd.glob import compile_glob
from flowd.hotfolder import UPLOAD_PREFIX, Folder
from flowd.imaging.complete import truncation
from flowd.queue import Detected, JobQueue, display
from flowd.sniff import SNIFF_BYTES, sniff
from flowd.storage.base import incremented

QUEUE_LINGER = 0.01  # seconds the queue thread gathers accepted uploads before one transaction


@dataclass(frozen=True, slots=True)
class Group:
    """An FTP group at run time: its users' root is its folder's root; its uploads are that folder's jobs."""

    name: str
    tenant: str
    folder: Folder

    @property
    def root(self) -> Path:
        return self.folder.root


@dataclass(frozen=True, slots=True)
class Arrival:
    """A finished transfer (under its reserved name), or a temp-named upload being renamed to `final`."""

    path: Path
    final: Path
    group: Group
    user: str
    client: str
    protocol: str  # ftp | ftps
    verb: str = "STOR"  # STOR | APPE | RNTO


class TempNames:
    """The client-side temp name conventions (`*.part`, `*.filepart`, `.in.*`): case-insensitive, as
    Windows clients spell them."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._compiled = [compile_glob(p, ignore_case=True) for p in patterns]

    def __call__(self, path: str | Path) -> bool:
        name = os.path.basename(path)
        return any(p.match(name) for p in self._compiled)


class Intake:
    def __init__(self, queue: JobQueue, settings: FtpSettings, key: bytes, notify: Callable[[int], None]) -> None:
        self.queue = queue
        self.settings = settings
        self.key = key
        self.notify = notify  # tells the daemon's workers that jobs were queued
        self.is_temp = TempNames(settings.temp_names)
        self._jobs: stdqueue.Queue[Detected | None] = stdqueue.Queue()
        self._thread = threading.Thread(target=self._queue_loop, name="ftp-queue", daemon=True)
        self._warned_xattr = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Queue every upload already accepted, then stop."""
        self._jobs.put(None)
        self._thread.join(timeout)

    # -- on the I/O loop -----------------------------------------------------------------------------
    def arrive(self, item: Arrival) -> str:
        """Take a finished upload; returns the reply for its client."""
        done = "250 Renaming ok" if item.verb == "RNTO" else "226 Transfer complete"
        st = _regular(item.path)
        if st is None:
            return "451 The upload vanished before it could be queued; send it again."
        root = item.group.root
        rel = _rel(item.final, root)
        if self.is_temp(item.final) or any(item.group.folder.ignored(p) for p in rel.split("/")):
            # A temp name (processed once renamed away from it) or a name the folder ignores.
            if item.path != item.final:
                os.replace(item.path, item.final)
            return done + ("." if self.is_temp(item.final) else " (not processed: the folder ignores this name).")
        try:
            reason = truncation(item.path, sniff(read_head(item.path, SNIFF_BYTES)))
        except OSError:
            reason = None
        if reason is not None:
            kept = self.partial(item.path, item.group, item.user, item.client, f"cut short: {reason}")
            return (f"426 Upload incomplete: {reason}; "
                    + ("kept: resume it with REST or APPE." if kept else "deleted: send it again."))
        upload = Upload(item.protocol, item.user, item.group.name, item.client, time.time())
        tagged = upload_facts.tag(item.path, st, upload, self.key)
        dest = _free_name(item.final, set())
        for _ in range(100):
            detected = Detected(item.group.tenant, item.group.folder.name, _rel(dest, root), st.st_size,
                                st.st_mtime_ns)
            if not tagged:
                self._facts_in_database(detected, upload)
            try:
                _link(item.path, dest)  # never replaces: a name taken meanwhile gets the next number
                break
            except FileExistsError:
                dest = _free_name(item.final, {dest})
        else:
            return "451 No free name for the upload; send it again under another name."
        try:
            os.unlink(item.path)
        except FileNotFoundError:
            pass  # renamed rather than linked (no hard links on this file system)
        self._put(item.group, detected)
        # DEBUG, like the workers' line per job: the job's trace is the record (who, from where, when).
        logger.debug("FTP upload {}:{} by {} from {} ({} bytes) accepted", item.group.name,
                     display(detected.relpath), item.user, item.client, st.st_size)
        return done + (f"; stored as {dest.name} (the name was taken)." if dest != item.final else ".")

    def renamed(self, group: Group, path: Path) -> None:
        """A file renamed within the root: if it carries fresh upload facts, the hot folder's watcher leaves
        it to this server, so it is queued here (under its new name, with its facts)."""
        st = _regular(path)
        upload = upload_facts.read(path, self.key) if st is not None else None
        if st is None or upload is None:
            return
        rel = _rel(path, group.root)
        if self.is_temp(path) or any(group.folder.ignored(p) for p in rel.split("/")):
            return
        self._put(group, Detected(group.tenant, group.folder.name, rel, st.st_size, st.st_mtime_ns))

    def _put(self, group: Group, detected: Detected) -> None:
        # A hot folder that runs on a schedule (or once) keeps its uploads until then: the firing's listing
        # takes them, with the facts their xattr (or the database) holds.
        if group.folder.spec.run == "always":
            self._jobs.put(detected)

    def partial(self, path: Path, group: Group, user: str, client: str, why: str) -> bool:
        """An aborted or cut-short upload: kept for resume (True) or removed, and logged."""
        shown = f"{group.name}:{display(_rel(Path(visible(str(path))), group.root))}"
        if self.settings.partial == "keep":
            logger.info("FTP upload {} by {} from {} incomplete ({}): kept for resume", shown, user, client, why)
            return True
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        logger.info("FTP upload {} by {} from {} incomplete ({}): deleted", shown, user, client, why)
        return False

    def _facts_in_database(self, detected: Detected, upload: Upload) -> None:
        if not self._warned_xattr:
            self._warned_xattr = True
            logger.warning("FTP: the file system of {} has no user xattrs; upload facts go to the database",
                           detected.hotfolder)
        self.queue.record_uploads([(detected, upload)])

    # -- the queue thread ----------------------------------------------------------------------------
    def _queue_loop(self) -> None:
        while True:
            first = self._jobs.get()
            stop = first is None
            batch = [] if first is None else [first]
            if not stop:
                # Uploads finish one by one: gathering those of the next few milliseconds makes one
                # transaction of many, and keeps this thread from taking the GIL from the I/O loop per upload.
                time.sleep(QUEUE_LINGER)
            while len(batch) < 500:
                try:
                    item = self._jobs.get_nowait()
                except stdqueue.Empty:
                    break
                if item is None:
                    stop = True
                    continue
                batch.append(item)
            if batch:
                self._enqueue(batch)
            if stop:
                return

    def _enqueue(self, batch: list[Detected]) -> None:
        for attempt in range(8):
            try:
                self.queue.enqueue(batch)
                self.notify(len(batch))
                return
            except Exception as exc:  # the files are in place with their facts: the daemon's scan finds them too
                logger.warning("cannot queue {} FTP upload(s) yet: {}", len(batch), exc)
                time.sleep(min(10.0, 0.2 * 2 ** attempt))


def recover(groups: Sequence[Group], queue: JobQueue, settings: FtpSettings) -> tuple[int, int, int]:
    """At start, before any session: files under reserved names are uploads a stopped server had not
    finished. One already linked to its final name is queued; any other never got its 226, so it is a
    partial upload: kept for resume while young enough (partial = "keep"), else removed.
    Returns (queued, kept, removed)."""
    queued: list[Detected] = []
    kept = removed = 0
    limit = time.time() - settings.keep_partial_hours * 3600
    for group in groups:
        for path in _reserved(group.root):
            st = _regular(path)
            if st is None:
                continue
            final = Path(visible(str(path)))
            if os.path.lexists(final) and os.path.samefile(final, path):
                os.unlink(path)
                if group.folder.spec.run != "always":
                    continue  # its folder's next firing takes it
                queued.append(Detected(group.tenant, group.folder.name, _rel(final, group.root), st.st_size,
                                       st.st_mtime_ns))
            elif settings.partial == "keep" and st.st_mtime >= limit:
                kept += 1
            else:
                os.unlink(path)
                removed += 1
    if queued:
        queue.enqueue(queued)
    return len(queued), kept, removed


def purge_partials(groups: Sequence[Group], settings: FtpSettings, busy: set[str]) -> int:
    """Kept partial uploads nobody resumed within keep_partial_hours (not those being written now)."""
    limit = time.time() - settings.keep_partial_hours * 3600
    removed = 0
    for group in groups:
        for path in _reserved(group.root):
            st = _regular(path)
            if st is not None and st.st_mtime < limit and str(path) not in busy:
                try:
                    os.unlink(path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links here (some network file systems): a rename, refusing a name that is taken.
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "exists", str(dest)) from None
        os.rename(src, dest)


def _reserved(root: Path) -> list[Path]:
    found: list[Path] = []
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.name.startswith(UPLOAD_PREFIX):
                found.append(Path(entry.path))
    return found


def _free_name(final: Path, taken: set[Path]) -> Path:
    if final not in taken and not os.path.lexists(final):
        return final
    for n in range(1, 100_000):
        candidate = final.parent / incremented(final.name, n)
        if candidate not in taken and not os.path.lexists(candidate) and not os.path.lexists(hidden(str(candidate))):
            return candidate
    return final


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _regular(path: Path) -> os.stat_result | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None
