"""`flowd run`: wire watchers, intake, queue and workers together; handle signals; tell systemd."""

from __future__ import annotations

import dataclasses
import fcntl
import getpass
import os
import queue as stdqueue
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from loguru import logger
from sqlalchemy import func, insert, select

from flowd.db import Database, audit, jobs
from flowd.engine import Engine
from flowd.errors import AlreadyRunningError, ConfigErrors, FlowdError
from flowd.hotfolder import Folder
from flowd.notify import sd_notify, watchdog_interval
from flowd.queue import Detected, JobQueue
from flowd.runtime import Runtime, load_runtime
from flowd.scheduler import Scheduler, hotfolder_schedule, planned, run_once_folders
from flowd.sweep import Sweeper
from flowd.watch import Tracker, Watcher, reconcile
from flowd.worker import Processor, WorkerPool

if TYPE_CHECKING:
    from flowd.events.azure_queue import QueueListener
    from flowd.ftp.supervisor import FtpSupervisor


class Daemon:
    def __init__(self, config_file: str, *, until_idle: bool = False, log_format: str = "human") -> None:
        self.config_file = config_file
        self.until_idle = until_idle
        self.log_format = log_format
        self.ftp: FtpSupervisor | None = None
        self._wake = threading.Event()
        self._reload = False
        self._stop = False
        self._intake: stdqueue.Queue[list[Detected]] = stdqueue.Queue()
        self._scanning = 0
        self._scan_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self) -> int:
        runtime = load_runtime(self.config_file)  # ConfigErrors propagate to the CLI: exit 1
        core = runtime.config.settings.flowd
        data_dir = runtime.config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_data_dir(data_dir)
        # Work files of jobs a crash interrupted: their jobs redo the work, so nothing here is needed.
        shutil.rmtree(data_dir / "work", ignore_errors=True)
        self.db = Database(runtime.config.database_url)
        # The same config and rules, now with the install id their step tokens carry (read from the
        # database, which the first load had to locate): built once, not parsed and connected twice.
        self.runtime = dataclasses.replace(runtime, engine=Engine(runtime.rules, self.db.install_id))
        self.queue = JobQueue(self.db, core.lease_seconds, core.node_name)
        released = self.queue.register_node()
        if released:
            logger.info("released {} jobs claimed by a flowd process that is gone", released)
        self._audit("start")
        self.processor = Processor(self.queue, lambda: self.runtime)
        self.pool = WorkerPool(self.processor, core.workers, core.batch_size)
        self.processor.pool_notify = self.pool.notify
        self.tracker = Tracker(self._promote, self._fresh_upload)
        self.watcher = Watcher(self.tracker, self._new_dir)
        for sig, handler in ((signal.SIGHUP, self._on_hup), (signal.SIGTERM, self._on_term),
                             (signal.SIGINT, self._on_term)):
            signal.signal(sig, handler)
        threading.Thread(target=self._intake_loop, name="intake", daemon=True).start()
        self.pool.start()
        self.sweeper = Sweeper(self.queue, self.pool.notify)
        self.scheduler: Scheduler | None = None
        self.listeners: list[QueueListener] = []
        self._start_listeners()
        self.tracker.start()
        try:
            self._start_ftp()
        except FlowdError:  # e.g. its port is taken: say so and stop, rather than run without it
            self._shutdown()
            raise
        folders = _watched(self.runtime)
        for folder in folders:
            self.watcher.watch(folder)
        self._scan_in_background(folders)
        self._in_background("run-once", lambda: run_once_folders(self.sweeper, self.runtime))
        if not self.until_idle:
            self.scheduler = Scheduler(self.sweeper, lambda: self.runtime)
            self.scheduler.start(self.runtime)
        else:  # batch mode processes what is in the hot folders now, scheduled ones included
            self._in_background("scheduled", self._run_scheduled_now)
        sd_notify("READY=1\nSTATUS=watching " + ", ".join(f.name for f in folders))
        logger.info("flowd watching {} hot folder(s) with {} workers; rules {} ({} rules); {} schedule(s)",
                    len(folders), core.workers, self.runtime.rules.digest[:12], len(self.runtime.rules.rules),
                    len(planned(self.runtime)) if self.scheduler else 0)
        try:
            self._main_loop()
        finally:
            self._shutdown()
        return 0

    def _main_loop(self) -> None:
        core = self.runtime.config.settings.flowd
        ping = watchdog_interval()
        last_ping = last_beat = last_promote = last_runs = time.monotonic()
        last_rescan = time.monotonic()
        while not self._stop:
            self._wake.wait(0.05 if self.until_idle else 0.25)  # batch mode: notice the end at once
            self._wake.clear()
            if self._reload:
                self._reload = False
                self.reload()
            now = time.monotonic()
            if ping and now - last_ping >= ping:
                sd_notify("WATCHDOG=1")
                last_ping = now
            if now - last_promote >= 0.5:
                last_promote = now
                if self.queue.promote():
                    self.pool.notify()
            if now - last_beat >= core.lease_seconds / 3:
                last_beat = now
                self.queue.heartbeat()
            if core.rescan_seconds and now - last_rescan >= core.rescan_seconds:
                last_rescan = now
                self._scan_in_background(_watched(self.runtime))
            if now - last_runs >= 1.0:
                last_runs = now
                self._close_runs()
                self.processor.prune_empty_folders()
            if self.until_idle and self._idle():
                logger.info("all work done; exiting (--until-idle)")
                return

    def _shutdown(self) -> None:
        sd_notify("STOPPING=1")
        logger.info("stopping: no new files are taken; finishing the jobs in hand")
        self._stop_listeners()
        self.sweeper.stopping.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.ftp is not None:
            self.ftp.stop()  # uploads already received are queued before it exits
        self.watcher.stop()
        self.tracker.stop()
        self._drain_intake()
        self.pool.stop()
        self.queue.unregister_node()
        self.db.close()
        logger.info("stopped")

    # -- signals -------------------------------------------------------------------------------------
    def _on_hup(self, _sig: int, _frame: FrameType | None) -> None:
        self._reload = True
        self._wake.set()

    def _on_term(self, _sig: int, _frame: FrameType | None) -> None:
        self._stop = True
        self._wake.set()

    def reload(self) -> None:
        """Build the new config and rules beside the old; swap only if all of it is valid."""
        sd_notify("RELOADING=1")
        try:
            new = load_runtime(self.config_file, self.db.install_id)
        except ConfigErrors as exc:
            for err in exc.errors:
                logger.error("reload rejected: {}", err)
            logger.error("reload rejected ({} errors); still running rules {}", len(exc.errors),
                         self.runtime.rules.digest[:12])
            sd_notify("READY=1")
            return
        old = self.runtime
        if new.config.settings.flowd != old.config.settings.flowd:
            logger.warning("[flowd] settings changed: they take effect at the next restart")
        self.runtime = new  # one reference: jobs in hand finish under the rule set they started with
        changed = [n for n, f in old.folders.items() if new.folders.get(n) != f]
        for name in changed:
            self.watcher.unwatch(name)
        started = []
        for folder in _watched(new):
            if folder.name not in self.watcher.names():
                self.watcher.watch(folder)
                started.append(folder)
        self._scan_in_background(started)
        if self.scheduler is not None:
            self.scheduler.apply(new)
        self._in_background("run-once", lambda: run_once_folders(self.sweeper, new))
        if (new.config.settings.events, new.config.settings.storage, _wanted(new)) != \
                (old.config.settings.events, old.config.settings.storage, _wanted(old)):
            self._stop_listeners()
            self._start_listeners()
        if (new.config.settings.ftp, new.config.settings.hotfolders) != \
                (old.config.settings.ftp, old.config.settings.hotfolders):
            self._restart_ftp()
        self._audit("SIGHUP")
        logger.info("reloaded: rules {} ({} rules), {} hot folder(s) restarted", new.rules.digest[:12],
                    len(new.rules.rules), len(started))
        sd_notify("READY=1")

    # -- FTP server ----------------------------------------------------------------------------------
    def _start_ftp(self) -> None:
        if self.runtime.config.settings.ftp is None:
            return
        if self.until_idle:
            logger.info("[ftp] is configured; no FTP server in batch mode (--until-idle)")
            return
        from flowd.ftp.supervisor import FtpSupervisor

        self.ftp = FtpSupervisor(self.config_file, self.log_format, self.pool.notify, self._ftp_crashed)
        self.ftp.start()

    def _fresh_upload(self, _folder: Folder, path: Path) -> bool:
        """Put in place by the FTP server within the last minute: its job is queued by the server."""
        from flowd import upload_facts

        key = getattr(self, "_facts_key", None)
        if key is None:
            key = self._facts_key = self.db.secret(upload_facts.FACTS_KEY)
        upload = upload_facts.read(path, key)
        return upload is not None and time.time() - upload.at < 60

    def _ftp_crashed(self) -> None:
        """Uploads the server had put in place but not yet queued when it died: the scan queues them."""
        self._scan_in_background([f for f in _watched(self.runtime) if f.ftp])

    def _restart_ftp(self) -> None:
        try:
            if self.ftp is not None:
                self.ftp.stop()
                self.ftp = None
            self._start_ftp()
        except FlowdError as exc:
            logger.error("{}; the daemon goes on without FTP until the next reload", exc)
            self.ftp = None

    # -- storage events ------------------------------------------------------------------------------------
    def _start_listeners(self) -> None:
        settings = self.runtime.config.settings
        if not settings.events:
            return
        from flowd.events.azure_queue import build_listeners

        self.listeners = build_listeners(settings, self._commit_events, _wanted(self.runtime))
        for listener in self.listeners:
            listener.start()
        logger.info("listening to {} events stream(s): {}", len(self.listeners),
                    ", ".join(f"{ln.name} (queue {ln.spec.queue})" for ln in self.listeners))

    def _stop_listeners(self) -> None:
        for listener in self.listeners:
            listener.stop()
        self.listeners = []

    def _commit_events(self, items: Sequence[Detected]) -> None:
        """Jobs for announced blobs, committed before the listener deletes their message."""
        self.queue.enqueue(items)
        self.pool.notify()

    # -- intake --------------------------------------------------------------------------------------
    def _promote(self, items: list[Detected]) -> None:
        self._intake.put(items)

    def _intake_loop(self) -> None:
        while True:
            batch = list(self._intake.get())
            gets = 1
            while len(batch) < 2000:
                try:
                    batch.extend(self._intake.get_nowait())
                    gets += 1
                except stdqueue.Empty:
                    break
            self._commit(batch, gets)

    def _commit(self, batch: list[Detected], gets: int) -> None:
        for attempt in range(1000):
            try:
                self.queue.enqueue(batch)
                break
            except Exception as exc:  # database busy or gone: the files stay put, so retrying is safe
                logger.warning("cannot queue {} files yet: {}", len(batch), exc)
                time.sleep(min(30, 0.5 * 2 ** attempt))
        for _ in range(gets):
            self._intake.task_done()
        self.pool.notify()

    def _drain_intake(self) -> None:
        deadline = time.monotonic() + 10
        while self._intake.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _scan_in_background(self, folders: list[Folder]) -> None:
        if not folders:
            return

        def work() -> None:
            for folder in folders:
                n = reconcile(folder, self.tracker, self._promote, self.queue.known)
                if n:
                    logger.info("scan of {} queued {} file(s)", folder.name, n)

        self._in_background("scan", work)

    def _in_background(self, name: str, work: Callable[[], object]) -> None:
        """Work that queues jobs off the main thread; --until-idle waits for it like for a scan."""
        with self._scan_lock:
            self._scanning += 1

        def run() -> None:
            try:
                work()
            except Exception as exc:
                logger.opt(exception=exc).error("{} failed: {}", name, exc)
            finally:
                with self._scan_lock:
                    self._scanning -= 1

        threading.Thread(target=run, name=name, daemon=True).start()

    def _run_scheduled_now(self) -> None:
        for folder in self.runtime.folders.values():
            if folder.spec.enabled and folder.spec.schedule is not None:
                run = self.sweeper.manual(hotfolder_schedule(folder.name), folder.spec.tenant)
                tally = self.sweeper.run_hotfolder(self.runtime, folder, run)
                logger.info("hot folder {} (scheduled; --until-idle takes it now): {:,} files queued", folder.name,
                            tally.queued)

    def _close_runs(self) -> None:
        """Sweeps whose last job ended: their record is completed and said in the log."""
        try:
            for run in self.sweeper.close_finished(self.runtime):
                outcomes = run["counts"].get("outcomes", {})
                passed = run["counts"].get("passed", {})
                said = ", ".join(f"{n:,} {what}" for what, n in sorted(outcomes.items())) or "nothing to do"
                if passed:
                    said += "; passed over: " + ", ".join(f"{n:,} {why}" for why, n in sorted(passed.items()))
                logger.log("INFO" if outcomes else "DEBUG", "{} run {} ({}) done in {:.1f}s: {}", run["schedule"],
                           run["id"], run["why"], run["finished"] - run["started"], said)
        except Exception as exc:
            logger.warning("cannot close finished sweeps yet: {}", exc)

    def _new_dir(self, folder: Folder, path: Path) -> None:
        reconcile(folder, self.tracker, self._promote, self.queue.known, start=path)

    def _idle(self) -> bool:
        if self._scanning or self._intake.unfinished_tasks or len(self.tracker):
            return False
        with self.db.read() as conn:
            busy = conn.execute(select(func.count()).select_from(jobs)
                                .where(jobs.c.state.in_(("queued", "claimed", "waiting")))).scalar_one()
        return busy == 0

    def _audit(self, cause: str) -> None:
        rt = self.runtime
        actor = f"{_user()}@{socket.gethostname()} ({cause}, pid {os.getpid()})"
        tenants = {f.spec.tenant for f in rt.folders.values()} | {r.tenant for r in rt.rules.rules} or {"default"}
        with self.db.write() as conn:
            for tenant in sorted(tenants):
                for kind, digest, source in (("config", rt.config.digest, str(rt.config.file)),
                                             ("rules", rt.rules.digest, ", ".join(rt.rules.files))):
                    last = conn.execute(select(audit.c.digest).where(audit.c.tenant == tenant, audit.c.kind == kind)
                                        .order_by(audit.c.id.desc()).limit(1)).scalar()
                    if last != digest:
                        conn.execute(insert(audit).values(tenant=tenant, kind=kind, digest=digest, source=source,
                                                          actor=actor, at=time.time(), detail=cause))


def _watched(rt: Runtime) -> list[Folder]:
    """Hot folders processed on arrival. A scheduled one is listed at its firings, a "once" one at start."""
    return [f for f in rt.folders.values() if f.spec.enabled and f.spec.run == "always"]


def _wanted(rt: Runtime) -> frozenset[str]:
    """The events sources some enabled rule listens to: others' events are dropped at intake."""
    return frozenset(src for rule in rt.rules.rules if rule.enabled for src in rule.hotfolders if src.startswith("@"))


def _lock_data_dir(data_dir: Path) -> int:
    """One daemon per data dir: two would fight over the same SQLite file and the same leases."""
    fd = os.open(data_dir / "flowd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunningError(f"another flowd (pid {other}) is already running with data_dir {data_dir}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())
