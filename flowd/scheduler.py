"""The daemon's schedules on APScheduler 3.11: sweep rules' `on: [{schedule: ...}]` and hot folders' `run`.

Every daemon keeps its own in-memory APScheduler (3.x job stores must never be shared: three schedulers on
one SQLAlchemy store ran each firing three times). What makes a firing run once across daemons is the
database: the first to insert the (schedule, slot) row runs it, the others see the row and skip.

A firing missed while no daemon ran (the slot is due, no row has it, and the schedule was known before it)
runs once at start: coalesced, however many were missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger
from sqlalchemy import insert, select, update

from flowd.db import nodes, runs, schedules
from flowd.hotfolder import Folder
from flowd.runtime import Runtime
from flowd.schedule import FlowdTrigger, Schedule, slot_of
from flowd.sweep import Sweeper, Tally


@dataclass(frozen=True, slots=True)
class Planned:
    """One schedule the daemon runs: a sweep rule's, or a hot folder's `run`."""

    id: str  # "rule:TENANT/NAME#i" or "hotfolder:NAME"
    tenant: str
    schedule: Schedule
    rule: str | None = None  # the sweep rule's name
    hotfolder: str | None = None


def planned(rt: Runtime) -> dict[str, Planned]:
    out = {}
    for rule in rt.rules.sweeps():
        if rule.enabled:
            for i, schedule in enumerate(rule.schedules):
                out[rule.schedule_id(i)] = Planned(rule.schedule_id(i), rule.tenant, schedule, rule=rule.name)
    for folder in rt.folders.values():
        run = folder.spec.schedule if folder.spec.enabled else None
        if run is not None:
            pid = hotfolder_schedule(folder.name)
            out[pid] = Planned(pid, folder.spec.tenant, run, hotfolder=folder.name)
    return out


def hotfolder_schedule(name: str) -> str:
    return f"hotfolder:{name}"


class Scheduler:
    def __init__(self, sweeper: Sweeper, get_runtime: Callable[[], Runtime]) -> None:
        self.sweeper = sweeper
        self.db = sweeper.db
        self.get_runtime = get_runtime
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(2)}, timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1})
        self._plans: dict[str, Planned] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, rt: Runtime) -> None:
        self._aps.start()
        self.apply(rt)
        threading.Thread(target=self._after_start, args=(rt,), name="catch-up", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.sweeper.stopping.set()
        self._aps.shutdown(wait=True)  # a listing in progress stops at its next batch (sweeper.stopping)

    def apply(self, rt: Runtime) -> None:
        """Schedule what the runtime plans; drop what it no longer does (at start and on SIGHUP)."""
        wanted = planned(rt)
        with self._lock:
            for pid in set(self._plans) - set(wanted):
                self._aps.remove_job(_job_id(pid))
            for pid, plan in wanted.items():
                if self._plans.get(pid) == plan:
                    continue
                self._aps.add_job(self._fire, FlowdTrigger(plan.schedule), args=[pid, "schedule"], id=_job_id(pid),
                                  name=pid, replace_existing=True, misfire_grace_time=max(1, int(plan.schedule.period())))
            self._plans = wanted
        self._remember(wanted.values())

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.name: job.next_run_time for job in self._aps.get_jobs()}

    # -- firing --------------------------------------------------------------------------------------
    def _fire(self, pid: str, why: str, slot: str | None = None) -> None:
        plan = self._plans.get(pid)
        if plan is None or self.stopping.is_set():
            return
        if slot is None:
            last = plan.schedule.last_at_or_before(datetime.now(UTC))
            if last is None:
                return
            slot = slot_of(last)
        run = self.sweeper.claim(pid, slot, plan.tenant, why)
        if run is None:
            logger.debug("{} slot {}: run by another node", pid, slot)
            return
        self.execute(plan, run, why)

    def execute(self, plan: Planned, run: int, why: str) -> None:
        rt = self.get_runtime()
        started = time.monotonic()
        try:
            if plan.rule is not None:
                rule = rt.rules.sweep(plan.tenant, plan.rule)
                if rule is None:
                    self.sweeper.listed(run, _empty(), "the rule is no longer configured")
                    return
                tally = self.sweeper.run_rule(rt, rule, run)
                what = f"sweep {rule.name}"
            else:
                folder = rt.folders.get(plan.hotfolder or "")
                if folder is None:
                    self.sweeper.listed(run, _empty(), "the hot folder is no longer configured")
                    return
                tally = self.sweeper.run_hotfolder(rt, folder, run)
                what = f"hot folder {folder.name}"
        except InterruptedError:
            logger.info("{} ({}): listing interrupted by shutdown; it resumes at the next start", plan.id, why)
            return
        except Exception as exc:  # recorded in the run's row (state failed, error) by the sweeper
            logger.error("{} ({}): the listing failed: {}", plan.id, why, exc)
            return
        # A frequent schedule that finds nothing would fill the log: said at DEBUG.
        logger.log("INFO" if tally.queued else "DEBUG", "{} ({}): {:,} listed, {:,} queued in {:.1f}s", what, why,
                   tally.seen, tally.queued, time.monotonic() - started)

    # -- start: once, catch-up, resume -----------------------------------------------------------------
    def _after_start(self, rt: Runtime) -> None:
        try:
            self._resume(rt)
            self._catch_up()
        except Exception as exc:
            logger.opt(exception=exc).error("schedules: catch-up failed: {}", exc)

    def _catch_up(self) -> None:
        """A firing due while no daemon ran: once, now (the latest of them: missed firings coalesce)."""
        now = datetime.now(UTC)
        with self.db.read() as conn:
            seen = {r.schedule: r.first_seen for r in conn.execute(select(schedules))}
        for pid, plan in list(self._plans.items()):
            first = datetime.fromtimestamp(seen.get(pid, time.time()), UTC)
            last = plan.schedule.last_at_or_before(now, since=first)
            if last is None or self.stopping.is_set():
                continue
            with self.db.read() as conn:
                done = conn.execute(select(runs.c.id).where(runs.c.schedule == pid, runs.c.slot == slot_of(last))).first()
            if done is None:
                logger.info("{}: the firing due at {} was missed while flowd was down; running it now", pid,
                            last.astimezone().isoformat(timespec="seconds"))
                self._fire(pid, "catch-up", slot_of(last))

    def _resume(self, rt: Runtime) -> None:
        """Listings a stopped or crashed daemon left unfinished: listed again under the same run (its jobs
        are keyed by the run, so what was queued is not queued twice)."""
        with self.db.read() as conn:
            alive = {r[0] for r in conn.execute(select(nodes.c.node_id))}
            stale = conn.execute(select(runs).where(runs.c.state == "listing")).all()
        for row in stale:
            if row.node in alive:
                continue
            with self.db.write() as conn:
                took = conn.execute(update(runs).where(runs.c.id == row.id, runs.c.node == row.node)
                                    .values(node=self.sweeper.queue.node_id)).rowcount
            plan = self._plans.get(row.schedule)
            if took and plan is not None:
                logger.info("{}: resuming the listing of run {} (slot {})", row.schedule, row.id, row.slot)
                self.execute(plan, row.id, row.why)
            elif took:
                self.sweeper.listed(row.id, _empty(), "interrupted, and its schedule is no longer configured")

    def _remember(self, plans: Iterable[Planned]) -> None:
        """When each schedule was first seen: a firing before that was never due."""
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = sqlite if self.db.is_sqlite else postgresql
        rows = [{"schedule": p.id, "tenant": p.tenant, "first_seen": time.time()} for p in plans]
        if rows:
            with self.db.write() as conn:
                conn.execute(dialect.insert(schedules).on_conflict_do_nothing(index_elements=["schedule"]), rows)


def run_once_folders(sweeper: Sweeper, rt: Runtime) -> list[Folder]:
    """Hot folders with run = "once" that have not run: each processes what it holds now, once across every
    daemon, and is disabled from then on (persisted). Returns the folders it ran."""
    ran = []
    for folder in rt.folders.values():
        if not folder.spec.enabled or folder.spec.run != "once":
            continue
        pid = hotfolder_schedule(folder.name)
        with sweeper.db.read() as conn:
            row = conn.execute(select(schedules.c.done).where(schedules.c.schedule == pid)).first()
        if row is not None and row.done is not None:
            continue
        run = sweeper.claim(pid, "once", folder.spec.tenant, "once")
        if run is not None:
            tally = sweeper.run_hotfolder(rt, folder, run)
            logger.info("hot folder {} (run once): {:,} files queued; the folder is now disabled", folder.name,
                        tally.queued)
            ran.append(folder)
        mark_once_done(sweeper, pid, folder.spec.tenant)
    return ran


def mark_once_done(sweeper: Sweeper, pid: str, tenant: str) -> None:
    t = time.time()
    with sweeper.db.write() as conn:
        if not conn.execute(update(schedules).where(schedules.c.schedule == pid, schedules.c.done.is_(None))
                            .values(done=t)).rowcount:
            exists = conn.execute(select(schedules.c.schedule).where(schedules.c.schedule == pid)).first()
            if exists is None:
                conn.execute(insert(schedules).values(schedule=pid, tenant=tenant, first_seen=t, done=t))


def once_done(sweeper: Sweeper, name: str) -> float | None:
    with sweeper.db.read() as conn:
        row = conn.execute(select(schedules.c.done).where(schedules.c.schedule == hotfolder_schedule(name))).first()
    return float(row.done) if row is not None and row.done is not None else None


def _job_id(pid: str) -> str:
    return pid


def _empty() -> Tally:
    return Tally()
