"""A finished upload becomes a job: checked complete, its facts recorded, its real name taken, queued.

One thread takes finished uploads in batches (one transaction for all their facts, one for all their jobs)
and posts each session's reply back to the I/O loop: `226` is sent only once flowd holds the upload
durably, so a client told "complete" can never lose its file to a crash. An upload the format says is cut
short (a client that closed the data connection mid-file still gets pyftpdlib's `on_file_received`) is
answered 426 instead and removed or kept for resume, like an aborted one.
"""

from __future__ import annotations

import os
import queue as stdqueue
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from flowd.asset import Upload, read_head
from flowd.config import FtpSettings
from flowd.ftp.fs import hidden, visible
from flowd.glob import compile_glob
from flowd.hotfolder import Folder
from flowd.imaging.complete import truncation
from flowd.queue import Detected, JobQueue, display
from flowd.sniff import SNIFF_BYTES, sniff
from flowd.storage.base import incremented

Reply = Callable[[str], None]


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
    """A finished transfer (or a rename away from a temp name), still under its reserved name."""

    path: Path  # the reserved name (fs.hidden)
    group: Group
    user: str
    client: str
    protocol: str  # ftp | ftps
    reply: Reply
    verb: str = "STOR"  # STOR | APPE | RNTO

    @property
    def final(self) -> Path:
        return Path(visible(str(self.path)))


@dataclass(frozen=True, slots=True)
class Partial:
    """An aborted or timed-out transfer: removed, or kept for resume."""

    path: Path
    group: Group
    user: str
    client: str
    why: str


class TempNames:
    """The client-side temp name conventions (`*.part`, `*.filepart`, `.in.*`): case-insensitive, as
    Windows clients spell them."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._compiled = [compile_glob(p, ignore_case=True) for p in patterns]

    def __call__(self, path: str | Path) -> bool:
        name = os.path.basename(path)
        return any(p.match(name) for p in self._compiled)


class Intake:
    def __init__(self, queue: JobQueue, settings: FtpSettings, notify: Callable[[int], None]) -> None:
        self.queue = queue
        self.settings = settings
        self.notify = notify  # tells the daemon's workers that jobs were queued
        self.is_temp = TempNames(settings.temp_names)
        self._items: stdqueue.Queue[Arrival | Partial | None] = stdqueue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ftp-intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Finish every upload already handed over, then stop."""
        self._items.put(None)
        self._thread.join(timeout)

    def submit(self, item: Arrival | Partial) -> None:
        self._items.put(item)

    def _loop(self) -> None:
        while True:
            first = self._items.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < 64:
                try:
                    item = self._items.get_nowait()
                except stdqueue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self.process(batch)
            except Exception as exc:  # a bug must not stop intake: every upload after it would hang
                logger.opt(exception=exc).error("FTP intake failed: {}", exc)
                for item in batch:
                    if isinstance(item, Arrival):
                        item.reply("451 Internal error while queueing the upload; it is kept, send it again.")
            if stop:
                return

    # -- one batch -----------------------------------------------------------------------------------
    def process(self, batch: Sequence[Arrival | Partial]) -> None:
        complete: list[tuple[Arrival, os.stat_result]] = []
        for item in batch:
            if isinstance(item, Partial):
                self._partial(item.path, item.group, item.user, item.client, item.why)
                continue
            st = _regular(item.path)
            if st is None:
                item.reply("451 The upload vanished before it could be queued; send it again.")
                continue
            rel = _rel(item.final, item.group.root)
            if self.is_temp(item.final) or any(item.group.folder.ignored(p) for p in rel.split("/")):
                # A temp name (processed once renamed away from it) or a name the folder ignores.
                os.replace(item.path, item.final)
                note = "" if self.is_temp(item.final) else " (not processed: the folder ignores this name)"
                item.reply(f"{'250 Renaming ok' if item.verb == 'RNTO' else '226 Transfer complete'}{note}.")
                continue
            try:
                reason = truncation(item.path, sniff(read_head(item.path, SNIFF_BYTES)))
            except OSError:
                reason = None
            if reason is not None:
                kept = self._partial(item.path, item.group, item.user, item.client, f"cut short: {reason}")
                item.reply(f"426 Upload incomplete: {reason}; "
                           + ("kept: resume it with REST or APPE." if kept else "deleted: send it again."))
                continue
            complete.append((item, st))
        if complete:
            self._queue(complete)

    def _queue(self, complete: list[tuple[Arrival, os.stat_result]]) -> None:
        at = time.time()
        taken: set[Path] = set()
        plan: list[tuple[Arrival, Path, Detected, Upload]] = []
        for item, st in complete:
            dest = _free_name(item.final, taken)
            taken.add(dest)
            plan.append((item, dest, *self._facts(item, dest, st, at)))
        try:
            self.queue.record_uploads([(d, u) for _, _, d, u in plan])
        except Exception as exc:  # the database is busy or gone: nothing is lost, the client retries
            logger.warning("cannot record {} FTP upload(s) yet: {}", len(plan), exc)
            for item, *_ in plan:
                item.reply("451 flowd cannot queue uploads right now; the file is kept: resume it or send it again.")
            return
        queued: list[Detected] = []
        replies: list[tuple[Arrival, str]] = []
        for item, dest, detected, upload in plan:
            st = os.lstat(item.path)
            for _ in range(100):
                try:
                    os.link(item.path, dest)  # never replaces: a name taken meanwhile gets the next number
                    break
                except FileExistsError:
                    dest = _free_name(item.final, taken)
                    taken.add(dest)
                    detected, upload = self._facts(item, dest, st, upload.at)
                    self.queue.record_uploads([(detected, upload)])
            else:
                item.reply("451 No free name for the upload; it is kept, send it again under another name.")
                continue
            os.unlink(item.path)
            queued.append(detected)
            verb = "250 Renaming ok" if item.verb == "RNTO" else "226 Transfer complete"
            renamed = f"; stored as {dest.name} (the name was taken)" if dest != item.final else ""
            replies.append((item, f"{verb}{renamed}."))
            logger.info("FTP upload {}:{} by {} from {} ({} bytes) queued", item.group.name,
                        display(detected.relpath), item.user, item.client, st.st_size)
        try:
            self.queue.enqueue(queued)
            self.notify(len(queued))
        except Exception as exc:  # the files and their facts are in place: the daemon's scan queues them
            logger.warning("cannot queue {} FTP upload(s) yet ({}); the folder scan will", len(queued), exc)
        for item, text in replies:
            item.reply(text)

    @staticmethod
    def _facts(item: Arrival, dest: Path, st: os.stat_result, at: float) -> tuple[Detected, Upload]:
        group = item.group
        detected = Detected(group.tenant, group.folder.name, _rel(dest, group.root), st.st_size, st.st_mtime_ns)
        return detected, Upload(item.protocol, item.user, group.name, item.client, at)

    def _partial(self, path: Path, group: Group, user: str, client: str, why: str) -> bool:
        """Returns True when the partial is kept for resume."""
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


def recover(groups: Sequence[Group], queue: JobQueue, settings: FtpSettings) -> tuple[int, int, int]:
    """At start, before any session: uploads under reserved names are either complete ones an earlier
    server was queueing when it stopped (their facts are recorded: finish them) or partial ones (kept for
    resume while young enough, else removed). Returns (queued, kept, removed)."""
    queued: list[Detected] = []
    kept = removed = 0
    limit = time.time() - settings.keep_partial_hours * 3600
    for group in groups:
        for path in _reserved(group.root):
            st = _regular(path)
            if st is None:
                continue
            final = Path(visible(str(path)))
            detected = Detected(group.tenant, group.folder.name, _rel(final, group.root), st.st_size, st.st_mtime_ns)
            if os.path.lexists(final) and os.path.samefile(final, path):
                os.unlink(path)  # linked to its final name, not yet unlinked
                queued.append(detected)
            elif not os.path.lexists(final) and queue.known([detected]) | _has_facts(queue, detected):
                os.link(path, final)
                os.unlink(path)
                queued.append(detected)
            elif settings.partial == "keep" and st.st_mtime >= limit:
                kept += 1
            else:
                os.unlink(path)
                removed += 1
    if queued:
        queue.enqueue(queued)
    return len(queued), kept, removed


def purge_partials(groups: Sequence[Group], settings: FtpSettings) -> int:
    """Kept partial uploads nobody resumed within keep_partial_hours."""
    limit = time.time() - settings.keep_partial_hours * 3600
    removed = 0
    for group in groups:
        for path in _reserved(group.root):
            st = _regular(path)
            if st is not None and st.st_mtime < limit:
                try:
                    os.unlink(path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _has_facts(queue: JobQueue, detected: Detected) -> set[str]:
    row = queue.db.lookup("SELECT dedupe FROM uploads WHERE dedupe = ?", (detected.dedupe(),))
    return {str(row)} if row else set()


def _reserved(root: Path) -> list[Path]:
    from flowd.hotfolder import UPLOAD_PREFIX

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


