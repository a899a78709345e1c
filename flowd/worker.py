"""Workers: claim a batch, run the engine on each job, make outputs durable, journal, then finalise sources.

Order per batch (the invariants in one place):
  1. run every job's steps (outputs land under temp names, then atomically in place)
  2. sync the storages that were written (outputs durable)
  3. journal steps, traces and each job's decided fate (one transaction)
  4. apply fates: delete / move / quarantine the sources
  5. mark jobs done (one transaction)
A crash between any two leaves a claimed job whose retry skips journalled steps, recognises its own
unjournalled outputs by their step token, and re-applies the recorded fate idempotently.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from flowd import upload_facts
from flowd.actions.webhook import post_json
from flowd.asset import Asset, Upload
from flowd.context import RunContext
from flowd.engine import Outcome
from flowd.errors import StepError, TransientError
from flowd.hotfolder import Folder, apply_fate
from flowd.imaging.complete import truncation
from flowd.queue import Claimed, Detected, Finished, JobQueue, backoff
from flowd.rules import Rule
from flowd.runtime import Runtime
from flowd.samefile import same_file
from flowd.storage.base import BlobInfo
from flowd.stored import apply_blob_fate, blob_storage, stored_asset
from flowd.trace import RunTrace

# A folder emptied by fates is removed once unchanged this long (an FTP client that just made it is about
# to upload into it).
EMPTY_FOLDER_QUIET = 5.0


def work_root(rt: Runtime) -> Path:
    return rt.config.data_dir / "work"


class Lane:
    """One worker thread computes at a time; the others wait their turn or for I/O (webhooks, syncs).

    Python runs one thread's bytecode at a time anyway, and several CPU-bound threads handing the GIL
    back and forth around every syscall made four workers a third slower than one (measured). Workers
    still overlap wherever they wait: `released()` lets the next one compute meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()


class Processor:
    def __init__(self, queue: JobQueue, get_runtime: Callable[[], Runtime], work: Path | None = None) -> None:
        self.queue = queue
        self.get_runtime = get_runtime
        self.work = work  # where rewritten bytes go (default: DATA_DIR/work, emptied at each daemon start)
        self.lane = Lane()
        self._workdirs: set[Path] = set()
        self._local = threading.local()
        self._facts_key: bytes | None = None
        self.pool_notify: Callable[[], None] = lambda: None  # new jobs queued by a job (a ZIP's entries)
        # Folders a fate emptied, in hot folders with remove_empty_folders: (root, folder, since).
        self._emptied: dict[tuple[Path, Path], float] = {}
        self._emptied_lock = threading.Lock()

    @property
    def _made(self) -> list[Path]:
        """Work files made by this thread's current batch."""
        made: list[Path] | None = getattr(self._local, "made", None)
        if made is None:
            made = self._local.made = []
        return made

    def context(self, rt: Runtime, now: datetime, tenant: str, simulate: bool = False) -> RunContext:
        return RunContext(now=now, storages=rt.storages, simulate=simulate, post_json=self._posting,
                          seen_content=lambda rule, sha: self.queue.seen_content(tenant, rule, sha),
                          workdir=self._workdir(rt), fields=rt.rules.fields, made=self._made,
                          released=self.lane.released)

    def _workdir(self, rt: Runtime) -> Path:
        """This worker thread's folder for rewritten bytes, made once (a mkdir per job costs more than
        the job's own bookkeeping)."""
        folder = (self.work or work_root(rt)) / f"w{threading.get_ident()}"
        if folder not in self._workdirs:
            folder.mkdir(parents=True, exist_ok=True)
            self._workdirs.add(folder)
        return folder

    def _posting(self, url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float,
                 key: str) -> int:
        with self.lane.released():  # a slow endpoint must not hold up the other workers
            return post_json(url, payload, headers, timeout, key)

    def run_batch(self, batch: list[Claimed], claim_next: int = 0) -> tuple[list[Finished], list[Claimed]]:
        """Process a claimed batch; returns its results and (if asked) the next batch, claimed in the
        same transaction that finishes this one."""
        with self.lane:
            return self._run_batch(batch, claim_next)

    def _run_batch(self, batch: list[Claimed], claim_next: int) -> tuple[list[Finished], list[Claimed]]:
        rt = self.get_runtime()  # the whole batch runs under one rule set, even across a SIGHUP
        real_dirs: dict[str, bool] = {}  # folder checks, valid for this batch only
        try:
            results = [self._run_job(rt, job, real_dirs) for job in batch]
            for storage in rt.storages.values():
                try:
                    if storage.remote:
                        storage.sync()  # nothing to wait for: each upload was durable when it returned
                        continue
                    with self.lane.released():
                        storage.sync()
                except StepError as exc:
                    # Nothing may be finalised on top of outputs that are not durable: wait and redo.
                    logger.warning("storage {} not durable yet: {}", storage.name, exc)
                    return self._all_wait(results, str(exc)), []
        finally:
            # Rewritten bytes live only until their outputs are written (and linked ones stay in the output).
            made = self._made
            for path in made:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            made.clear()
        owned = self.queue.journal(results)
        final = []
        for f in results:
            if f.job.id not in owned:
                logger.warning("job {} was taken over by another worker; dropping this run's result", f.job.id)
                continue
            self._finalise(rt, f, real_dirs)
            final.append(f)
        return final, self.queue.finish(final, claim_next)

    def _run_job(self, rt: Runtime, job: Claimed, real_dirs: dict[str, bool]) -> Finished:
        if job.hotfolder in rt.sources or job.hotfolder.startswith("@"):
            return self._run_stored(rt, job)
        folder = rt.folders.get(job.hotfolder) or rt.sweeps.get(job.hotfolder)
        trace = RunTrace(job.id, job.attempts, rt.digest)
        if folder is None:
            what = f"sweep rule '{job.hotfolder[1:]}'" if job.hotfolder.startswith("~") else f"hot folder '{job.hotfolder}'"
            return self._ignored(job, trace, f"{what} is no longer configured")
        if job.fate:
            return self._fate_only(rt, job, trace)
        if not same_file(folder.root / job.relpath, job.size, job.mtime_ns, real_dirs):
            gone = not (folder.root / job.relpath).exists()
            trace.status = "vanished" if gone else "superseded"
            return Finished(job, "done", trace.status, trace=trace.to_dict(), ruleset=rt.digest)
        detected = datetime.fromtimestamp(job.created)
        upload = self._upload_of(folder, job) if folder.ftp else None
        if upload is not None:
            trace.upload = upload.to_dict()
        asset = Asset(job.id, job.tenant, job.hotfolder, folder.root, job.relpath, job.size, job.mtime_ns,
                      detected, folder.spec.output, job.relpath.rsplit("/", 1)[-1],
                      disposable=folder.spec.after == "delete", upload=upload)
        # An FTP upload was checked for completeness before its 226 (its facts say it passed): not again.
        if folder.spec.incomplete_seconds and upload is None:
            waiting = self._incomplete(rt, folder.spec.incomplete_seconds, folder.spec.stable_seconds, job, asset,
                                       trace, folder)
            if waiting is not None:
                return waiting
        if folder.spec.jrf or folder.spec.extract_zip:
            from flowd import intake_kinds

            try:
                if intake_kinds.is_request(folder, asset):
                    return intake_kinds.run_request(self, rt, folder, job, asset, trace)
                if intake_kinds.is_archive(folder, asset):
                    return intake_kinds.run_zip(self, rt, folder, job, asset, trace)
            except FileNotFoundError:
                trace.status = "vanished"
                return Finished(job, "done", "vanished", trace=trace.to_dict(), ruleset=rt.digest)
            except Exception as exc:  # a bug must not stop the worker's loop on this file forever (as in the engine)
                logger.opt(exception=exc).error("internal error on job {}: {}", job.id, exc)
                return intake_kinds.quarantine(rt, folder, job, trace, f"internal error: {type(exc).__name__}: {exc}")
        done = self.queue.done_steps(job.id) if job.attempts > 1 else {}
        ctx = self.context(rt, detected, job.tenant)
        outcome = rt.engine.run(asset, ctx, trace, done)
        if ctx.linked and (outcome.transient or outcome.status == "quarantined"):
            self._unshare(rt, ctx.linked)
        return self._conclude(rt, job, trace, outcome, ctx,
                              folder.fate(outcome.matched, outcome.consumes, outcome.status == "quarantined"))

    def simulate_sweep(self, rt: Runtime, rule: Rule, d: Detected) -> RunTrace:
        """What the sweep's job for this entry would do, touching nothing (`flowd sweep --dry-run`)."""
        trace = RunTrace(0, 1, rt.digest)
        ctx = self.context(rt, datetime.now(), rule.tenant, simulate=True)
        folder = rt.sweeps.get(rule.source)
        source = rt.sources.get(rule.source)
        if folder is not None:
            asset = Asset(0, rule.tenant, rule.source, folder.root, d.relpath, d.size, d.mtime_ns, ctx.now,
                          folder.spec.output, d.relpath.rsplit("/", 1)[-1])
        else:
            storage = blob_storage(rt.storages.get(source.storage)) if source is not None else None
            assert source is not None and storage is not None and ctx.workdir is not None
            info = BlobInfo(d.size, d.version or "", d.mtime_ns, None)
            asset = stored_asset(0, source, storage, d.relpath, info, ctx.now, ctx.workdir, ctx.made,
                                 self.lane.released)
        try:
            rt.engine.run(asset, ctx, trace)
        finally:
            for path in ctx.made:
                path.unlink(missing_ok=True)
            ctx.made.clear()
        return trace

    def _upload_of(self, folder: Folder, job: Claimed) -> Upload | None:
        """Who uploaded the file over FTP: from the file's signed xattr, else (file systems without user
        xattrs) from the database."""
        key = self._facts_key
        if key is None:
            key = self._facts_key = self.queue.db.secret(upload_facts.FACTS_KEY)
        return upload_facts.read(folder.root / job.relpath, key) or self.queue.upload_of(job)

    @staticmethod
    def _ignored(job: Claimed, trace: RunTrace, why: str) -> Finished:
        trace.status = "ignored"
        return Finished(job, "done", "ignored", trace=trace.to_dict(), error=why)

    @staticmethod
    def _fate_only(rt: Runtime, job: Claimed, trace: RunTrace) -> Finished:
        """An earlier attempt decided the fate and journalled every step: only the fate is left to apply."""
        assert job.fate is not None
        trace.fate = job.fate
        return Finished(job, "done", "quarantined" if job.fate == "quarantine" else "finished", fate=job.fate,
                        trace=None, ruleset=rt.digest)

    def _conclude(self, rt: Runtime, job: Claimed, trace: RunTrace, outcome: Outcome, ctx: RunContext,
                  fate: str) -> Finished:
        if outcome.transient:
            return self.wait(rt, job, trace, (outcome.error or {}).get("reason"), outcome.steps)
        if outcome.status == "vanished":
            return Finished(job, "done", "vanished", steps=outcome.steps, trace=trace.to_dict(), ruleset=rt.digest)
        trace.fate = fate
        error = json.dumps({**(outcome.error or {}), "job": job.id}) if outcome.error else None
        return Finished(job, "quarantined" if fate == "quarantine" else "done", outcome.status, fate=fate,
                        error=error, steps=outcome.steps, ledger=outcome.ledger, trace=trace.to_dict(),
                        ruleset=rt.digest, companions=tuple(ctx.companions))

    def wait(self, rt: Runtime, job: Claimed, trace: RunTrace, reason: str | None,
             steps: list[tuple[str, str, dict[str, Any]]] | None = None) -> Finished:
        """A transient failure: the job waits with backoff (ZIP and JRF intake use it too)."""
        delay = backoff(job.attempts, rt.config.settings.flowd.retry_base_seconds,
                        rt.config.settings.flowd.retry_max_seconds)
        trace.status, trace.fate = "waiting", f"retry in {delay:.1f}s"
        logger.warning("job {} {}/{} waiting: {}; retry {} in {:.1f}s", job.id, job.hotfolder, job.relpath,
                       reason, job.attempts + 1, delay)
        return Finished(job, "waiting", "waiting", error=reason, retry_at=time.time() + delay, steps=steps or [],
                        trace=trace.to_dict(), ruleset=rt.digest)

    def _run_stored(self, rt: Runtime, job: Claimed) -> Finished:
        """A blob announced by a storage event: checked against the version the event named, then run
        through the rules where it is (downloaded only if a rule reads its bytes)."""
        source = rt.sources.get(job.hotfolder)
        trace = RunTrace(job.id, job.attempts, rt.digest)
        storage = blob_storage(rt.storages.get(source.storage)) if source is not None else None
        if source is None or storage is None:
            what = "sweep rule" if job.hotfolder.startswith("~") else "events stream"
            return self._ignored(job, trace, f"{what} '{job.hotfolder[1:]}' is no longer configured")
        if job.fate:
            return self._fate_only(rt, job, trace)
        info = None
        if source.event == "created":
            try:
                with self.lane.released():
                    info = storage.stat(job.relpath)
            except StepError as exc:
                if exc.transient:
                    return self.wait(rt, job, trace, str(exc))
                trace.status, trace.error = "quarantined", {"reason": str(exc)}
                return Finished(job, "quarantined", "quarantined", fate="quarantine", trace=trace.to_dict(),
                                error=json.dumps({"reason": str(exc), "job": job.id}), ruleset=rt.digest)
            changed = job.version is not None and not job.version.startswith("id:") \
                and info is not None and info.etag.strip('"') != job.version
            if info is None or changed:
                # Gone, or replaced by a newer version (which has an event and a job of its own).
                trace.status = "vanished" if info is None else "superseded"
                return Finished(job, "done", trace.status, trace=trace.to_dict(), ruleset=rt.digest)
            if info.written_by_flowd and source.own_writes == "skip":
                # flowd's own output (or in-place edit) announcing itself: processing it would loop.
                trace.status = "ignored"
                trace.fate = "written by flowd (own_writes = \"skip\")"
                return Finished(job, "done", "ignored", trace=trace.to_dict(), ruleset=rt.digest)
        detected = datetime.fromtimestamp(job.created)
        ctx = self.context(rt, detected, job.tenant)
        assert ctx.workdir is not None
        asset = stored_asset(job.id, source, storage, job.relpath, info, detected, ctx.workdir, ctx.made,
                             self.lane.released)
        done = self.queue.done_steps(job.id) if job.attempts > 1 else {}
        outcome = rt.engine.run(asset, ctx, trace, done)
        return self._conclude(rt, job, trace, outcome, ctx,
                              source.fate(outcome.consumes, outcome.status == "quarantined"))

    def _incomplete(self, rt: Runtime, limit: float, window: float, job: Claimed, asset: Asset, trace: RunTrace,
                    folder: Folder) -> Finished | None:
        """A file whose own structure says it is cut short (JPEG without EOI, PNG without IEND ...) is still
        arriving: it waits a stability window at a time; past the limit it is quarantined as truncated."""
        try:
            reason = truncation(asset.path, asset.format())
        except OSError:
            return None  # vanished or unreadable: the engine reports it the usual way
        if reason is None:
            return None
        waited = time.time() - job.created
        if waited < limit:
            delay = max(window, 1.0) * min(job.attempts, 8)  # a stalled upload need not be re-read every second
            trace.status, trace.fate = "waiting", f"incomplete ({reason}); checked again in {delay:.0f}s"
            logger.info("job {} {}/{} incomplete ({}); waiting", job.id, job.hotfolder, job.relpath, reason)
            return Finished(job, "waiting", "waiting", error=f"incomplete: {reason}", retry_at=time.time() + delay,
                            trace=trace.to_dict(), ruleset=rt.digest)
        error = {"reason": f"truncated: {reason} (still incomplete {waited:.0f}s after it arrived)"}
        fate = folder.fate(False, False, True)
        trace.status, trace.fate, trace.error = "quarantined", fate, error
        return Finished(job, "quarantined" if fate == "quarantine" else "done", "quarantined", fate=fate,
                        error=json.dumps({**error, "job": job.id}), trace=trace.to_dict(), ruleset=rt.digest)

    def _unshare(self, rt: Runtime, linked: list[tuple[str, str]]) -> None:
        """The source stays (waiting or quarantined): an output linked to it must not change with it."""
        for storage, key in linked:
            try:
                rt.storages[storage].unshare(key)
            except StepError as exc:
                logger.error("output {}:{} still shares its bytes with its source: {}", storage, key, exc)

    def _finalise(self, rt: Runtime, f: Finished, real_dirs: dict[str, bool]) -> None:
        if f.job.hotfolder in rt.sources or f.job.hotfolder.startswith("@"):
            self._finalise_stored(rt, f)
            return
        folder = rt.folders.get(f.job.hotfolder) or rt.sweeps.get(f.job.hotfolder)
        if folder is None or f.fate is None or f.state == "waiting":
            return
        error = json.loads(f.error) if f.error else None
        if f.fate == "quarantine" and error is None:
            error = {"reason": "quarantined", "job": f.job.id}
        if folder.spec.remove_empty_folders and "/" in f.job.relpath and f.fate != "keep":
            with self._emptied_lock:
                self._emptied[(folder.root, (folder.root / f.job.relpath).parent)] = time.monotonic()
        if f.epilogue is not None:
            try:
                f.epilogue()
            except OSError as exc:  # the PRF cannot be written: the JRF stays, and its retry writes it
                self._fate_failed(rt, f, TransientError(f"cannot write the job request's result: {exc}"))
                return
        try:
            done = apply_fate(folder, f.job.relpath, f.job.size, f.job.mtime_ns, f.fate, error, real_dirs)
            if f.fate != "unmatched":  # a merged sidecar goes where its picture goes (deleted, moved, errors)
                for relpath, size, mtime_ns in f.companions:
                    apply_fate(folder, relpath, size, mtime_ns, f.fate, error, real_dirs)
            if f.fate == "quarantine":
                f.state = "quarantined"
                if done.startswith("quarantined to "):
                    f.error = json.dumps({**(error or {}), "quarantined": done.removeprefix("quarantined to ")})
                logger.warning("quarantined {}/{}: {}", folder.name, f.job.relpath, (error or {}).get("reason"))
            logger.debug("job {} {}: source {}", f.job.id, f.status, done)
        except StepError as exc:
            self._fate_failed(rt, f, exc)

    def prune_empty_folders(self, quiet: float = EMPTY_FOLDER_QUIET) -> int:
        """Remove folders that fates emptied, once nothing has changed in them for `quiet` seconds (an FTP
        client that just made a folder is about to upload into it). Up to, never including, the root."""
        now = time.monotonic()
        with self._emptied_lock:
            due = [k for k, since in self._emptied.items() if now - since >= quiet]
            for key in due:
                del self._emptied[key]
        removed = 0
        for root, folder in due:
            removed += prune_up(root, folder, quiet)
        return removed

    def _finalise_stored(self, rt: Runtime, f: Finished) -> None:
        source = rt.sources.get(f.job.hotfolder)
        storage = blob_storage(rt.storages.get(source.storage)) if source is not None else None
        if storage is None or f.fate is None or f.state == "waiting":
            return
        if f.fate == "quarantine":
            f.state = "quarantined"
            logger.warning("quarantined {}:{} (left in place): {}", storage.name, f.job.relpath,
                           json.loads(f.error).get("reason") if f.error else "quarantined")
        try:
            with self.lane.released():
                done = apply_blob_fate(storage, f.job.relpath, f.job.version, f.fate)
            logger.debug("job {} {}: source {}", f.job.id, f.status, done)
        except StepError as exc:
            self._fate_failed(rt, f, exc)

    def _fate_failed(self, rt: Runtime, f: Finished, exc: StepError) -> None:
        if exc.transient:
            delay = backoff(f.job.attempts, rt.config.settings.flowd.retry_base_seconds,
                            rt.config.settings.flowd.retry_max_seconds)
            logger.warning("job {}: {}; retrying in {:.1f}s", f.job.id, exc, delay)
            f.state, f.retry_at, f.error = "waiting", time.time() + delay, str(exc)
        else:
            # The source stays where it is; the job is marked so a person sees it in `flowd status`.
            logger.error("job {}: {}", f.job.id, exc)
            f.state, f.status, f.error = "quarantined", "quarantined", json.dumps({"reason": str(exc), "job": f.job.id})

    def _all_wait(self, results: list[Finished], reason: str) -> list[Finished]:
        for f in results:
            f.state, f.status, f.fate, f.error = "waiting", "waiting", None, reason
            f.retry_at = time.time() + 5
        self.queue.finish(results)
        return results


def prune_up(root: Path, folder: Path, quiet: float) -> int:
    """rmdir `folder` and its parents up to `root` while each is empty and unchanged for `quiet` seconds."""
    removed = 0
    current = folder
    while current != root and current.is_relative_to(root):
        try:
            st = os.lstat(current)
            if not stat.S_ISDIR(st.st_mode) or time.time() - st.st_mtime < quiet:
                break
            os.rmdir(current)  # fails unless empty: a file that arrived meanwhile keeps its folder
        except OSError:
            break
        removed += 1
        current = current.parent
    return removed


def prune_tree(root: Path, quiet: float = EMPTY_FOLDER_QUIET) -> int:
    """Every empty folder below `root`, deepest first (a sweep with remove_empty_folders, at its end)."""
    removed = 0
    for current, dirs, files in os.walk(root, topdown=False):
        if Path(current) == root or files or dirs and any((Path(current) / d).exists() for d in dirs):
            continue
        removed += prune_up(root, Path(current), quiet) and 1
    return removed


class WorkerPool:
    """N threads claiming batches. Idle workers sleep on a condition the intake notifies."""

    def __init__(self, processor: Processor, count: int, batch_size: int) -> None:
        self.processor = processor
        self.count = count
        self.batch_size = batch_size
        self._wake = threading.Condition()
        self._pending = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = 0
        self._busy_lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        """New work: one idle worker claims it. A worker that finds a full batch wakes the next, so a backlog
        still spreads over all of them; while work trickles in, one worker takes what gathered during its
        last batch, instead of every worker waking for every few files and each claiming a handful."""
        with self._wake:
            self._pending = True
            self._wake.notify()

    def stop(self, timeout: float | None = None) -> None:
        """Drain: workers finish the batch in hand, then exit."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _loop(self) -> None:
        queue = self.processor.queue
        while not self._stop.is_set():
            try:
                with self._busy_lock:
                    self.busy += 1
                try:
                    batch = queue.claim(self.batch_size)
                    while batch:
                        if len(batch) >= self.batch_size:
                            self.notify()  # there may be more: a peer takes the next batch meanwhile
                        more = 0 if self._stop.is_set() else self.batch_size
                        _results, batch = self.processor.run_batch(batch, more)
                finally:
                    with self._busy_lock:
                        self.busy -= 1
            except Exception as exc:  # the database went away, a bug: log, pause, go on
                logger.opt(exception=exc).error("worker error: {}", exc)
                self._stop.wait(1.0)
                continue
            with self._wake:
                if not self._pending and not self._stop.is_set():
                    self._wake.wait(timeout=1.0)
                self._pending = False
