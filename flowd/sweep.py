"""Sweeps: a listing (a folder, a hot folder, a storage prefix) streamed into jobs, as one recorded run.

A sweep rule's listing is filtered by the rule's cheap conditions (name, extension, size, age ...) as it
streams, so the files a purge leaves alone never become jobs; whatever passes becomes a job of the rule's
own source ("~TENANT/RULE"), and the workers run the full rule on it like on any job (trace, journal,
retries). Jobs are queued in batches of a thousand: memory stays bounded whatever the folder's size, except
for `keep_newest: N`, which holds the newest N entries (two passes over the listing).

Each run is a row in `runs`: the firing's unique (schedule, slot), when it started, when its listing ended,
and, once its last job ended, the counts by outcome.
"""

from __future__ import annotations

import heapq
import json
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flowd import unlinker
from flowd.actions.delete import Delete
from flowd.asset import Asset
from flowd.condition import Condition
from flowd.conditions.facts import Age, HotFolderIs, Size
from flowd.conditions.logic import All, Any_, Not
from flowd.conditions.names import Extension, Name, Regex
from flowd.context import RunContext
from flowd.db import jobs, runs
from flowd.errors import StepError
from flowd.hotfolder import Folder, apply_fate, sweep_folder
from flowd.queue import _FINISH, _INSERT_TRACE, Detected, JobQueue, display
from flowd.rules import Rule
from flowd.runtime import Runtime
from flowd.storage.base import BlobInfo
from flowd.trace import RunTrace
from flowd.watch import has_writer, scan

BATCH = 1000
T = TypeVar("T")
UNFINISHED = ("queued", "claimed", "waiting")
# Conditions that need nothing but the listing's name, size and time: evaluated while listing.
_CHEAP = (Name, Regex, Extension, Size, Age, HotFolderIs)


@dataclass(frozen=True, slots=True)
class Listed:
    """One listing entry. `relpath`: the job's (a path under the swept folder, or a blob's whole key);
    `shown`: the asset's relpath (under the swept folder or prefix)."""

    relpath: str
    shown: str
    size: int
    mtime_ns: int
    version: str | None = None


@dataclass(slots=True)
class Tally:
    """What a listing did with what it saw."""

    seen: int = 0
    queued: int = 0
    passed: Counter[str] = field(default_factory=Counter)  # why entries did not become jobs

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "queued": self.queued, "passed": dict(self.passed)}


def prefilter(cond: Condition | None, asset: Asset, ctx: RunContext) -> bool | None:
    """The rule's verdict from cheap conditions alone: True or False when they settle it, None when a
    condition that reads the file (format, metadata, pixels) is needed. Three-valued, so `any` and `not`
    never drop an entry the full rule would have matched."""
    if cond is None:
        return True
    if isinstance(cond, _CHEAP):
        return cond.check(asset, ctx, [])
    if isinstance(cond, All):
        result: bool | None = True
        for item in cond.items:
            value = prefilter(item, asset, ctx)
            if value is False:
                return False
            if value is None:
                result = None
        return result
    if isinstance(cond, Any_):
        result = False
        for item in cond.items:
            value = prefilter(item, asset, ctx)
            if value is True:
                return True
            if value is None:
                result = None
        return result
    if isinstance(cond, Not):
        value = prefilter(cond.item, asset, ctx)
        return None if value is None else not value
    return None


def listing(rt: Runtime, rule: Rule) -> Iterator[Listed]:
    """Every entry `over:` names, streamed (symlinks and the daemon's own temp files never)."""
    over = rule.over
    assert over is not None
    if over.root is not None:
        folder = sweep_folder(rule.source, rule.tenant, over)
        for relpath, st in scan(folder):
            yield Listed(relpath, relpath, st.st_size, st.st_mtime_ns)
        return
    storage = rt.storages.get(over.storage or "")
    list_info: Callable[[str], Iterable[tuple[str, BlobInfo]]] | None = getattr(storage, "list_info", None)
    if list_info is None:
        raise ValueError(f"storage '{over.storage}' cannot be listed")
    strip = over.prefix
    for key, info in list_info(over.prefix):
        shown = key[len(strip):].lstrip("/") if strip and key.startswith(strip) else key
        if not over.recursive and "/" in shown:
            continue
        yield Listed(key, shown, info.size, info.mtime_ns, info.etag.strip('"'))


def beyond_newest(entries: Callable[[], Iterator[Listed]], keep: int, tally: Tally) -> Iterator[Listed]:
    """What lies beyond the newest `keep` entries (by modification time, then name): a first pass keeps a
    heap of the newest `keep`, a second yields everything older than the oldest of them."""
    if keep == 0:
        yield from entries()
        return
    heap: list[tuple[int, str]] = []
    for item in entries():
        key = (item.mtime_ns, item.relpath)
        if len(heap) < keep:
            heapq.heappush(heap, key)
        elif key > heap[0]:
            heapq.heapreplace(heap, key)
    if len(heap) < keep:
        tally.passed[f"among the newest {keep:,}"] += len(heap)
        tally.seen += len(heap)
        return
    cut = heap[0]
    del heap
    for item in entries():
        if (item.mtime_ns, item.relpath) < cut:
            yield item
        else:
            tally.seen += 1
            tally.passed[f"among the newest {keep:,}"] += 1


class Sweeper:
    """Runs sweeps: claims a firing's slot, lists, queues, and closes runs whose jobs have all ended."""

    def __init__(self, queue: JobQueue, notify: Callable[[], None] = lambda: None) -> None:
        self.queue = queue
        self.db = queue.db
        self.notify = notify
        # Set on shutdown: a listing stops at its next batch with InterruptedError, its run left "listing"
        # for the next start to resume.
        self.stopping = threading.Event()

    # -- runs ----------------------------------------------------------------------------------------
    def claim(self, schedule: str, slot: str, tenant: str, why: str) -> int | None:
        """The run for this firing, if this process is the one to run it (the unique (schedule, slot) row:
        every other daemon sharing the database gets None)."""
        try:
            with self.db.write() as conn:
                result = conn.execute(insert(runs).values(
                    schedule=schedule, slot=slot, tenant=tenant, why=why, node=self.queue.node_id,
                    started=time.time(), state="listing", seen=0, queued=0))
                return int(result.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            return None

    def manual(self, schedule: str, tenant: str) -> int:
        """A run by hand (`flowd sweep`): a slot of its own, never a firing's."""
        slot = f"manual-{datetime.now().astimezone().strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        run = self.claim(schedule, slot, tenant, "manual")
        assert run is not None
        return run

    def listed(self, run: int, tally: Tally, error: str | None = None) -> None:
        """The listing ended: the run waits for its jobs (or, with none queued, is done already)."""
        t = time.time()
        with self.db.write() as conn:
            busy = error is None and conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.run_id == run)).scalar_one() > 0
            conn.execute(update(runs).where(runs.c.id == run).values(
                listed=t, state="failed" if error else "running" if busy else "done", seen=tally.seen,
                queued=tally.queued, counts=json.dumps({"passed": dict(tally.passed), **({} if busy else {"outcomes": {}})}),
                error=error, **({} if busy else {"finished": t})))

    def progress(self, run: int) -> tuple[int, int]:
        """(jobs ended, jobs queued) of a run."""
        with self.db.read() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).where(jobs.c.run_id == run)
                                .group_by(jobs.c.state)).all()
        total = sum(int(n) for _, n in rows)
        return total - sum(int(n) for s, n in rows if s in UNFINISHED), total

    def close_finished(self, rt: Runtime) -> list[dict[str, Any]]:
        """Runs whose listing ended and whose every job has ended: their counts, and state done."""
        with self.db.read() as conn:
            open_runs = conn.execute(select(runs).where(runs.c.state == "running")).all()
        closed = []
        for row in open_runs:
            with self.db.read() as conn:
                busy = conn.execute(select(func.count()).select_from(jobs).where(
                    jobs.c.run_id == row.id, jobs.c.state.in_(UNFINISHED))).scalar_one()
                if busy:
                    continue
                outcomes = conn.execute(select(jobs.c.status, jobs.c.fate, func.count())
                                        .where(jobs.c.run_id == row.id).group_by(jobs.c.status, jobs.c.fate)).all()
            counts = json.loads(row.counts or "{}")
            counts["outcomes"] = dict(_outcomes(rt, row.schedule, outcomes))
            with self.db.write() as conn:
                done = conn.execute(update(runs).where(runs.c.id == row.id, runs.c.state == "running").values(
                    state="done", finished=time.time(), counts=json.dumps(counts))).rowcount
            if done:
                record = {**row._asdict(), "counts": counts, "finished": time.time()}
                closed.append(record)
                self._prune(rt, row.schedule)
        return closed

    @staticmethod
    def _prune(rt: Runtime, schedule: str) -> None:
        """`remove_empty_folders`: what the run left empty goes (a scheduled hot folder's, or a sweep's)."""
        from flowd.worker import prune_tree

        if schedule.startswith("rule:"):
            tenant, _, rest = schedule[5:].partition("/")
            rule = rt.rules.sweep(tenant, rest.rpartition("#")[0])
            over = rule.over if rule is not None else None
            if over is not None and over.root is not None and over.remove_empty_folders:
                prune_tree(over.root, 0)
        elif schedule.startswith("hotfolder:"):
            folder = rt.folders.get(schedule.partition(":")[2])
            if folder is not None and folder.spec.remove_empty_folders:
                prune_tree(folder.root, 0)

    # -- listing into jobs ---------------------------------------------------------------------------
    def in_flight(self, sources: Iterable[str]) -> set[str]:
        """Relative paths with a job not yet ended in any of these sources: never queued twice."""
        with self.db.read() as conn:
            return {bytes(r[0]).decode("utf-8", "surrogateescape") for r in conn.execute(
                select(jobs.c.relpath_raw).where(jobs.c.hotfolder.in_(list(sources)), jobs.c.state.in_(UNFINISHED)))}

    def run_rule(self, rt: Runtime, rule: Rule, run: int, tick: Callable[[Tally], None] | None = None) -> Tally:
        """List `over:`, queue a job per candidate. The run's row says when the listing ended."""
        tally = Tally()
        try:
            if decided_by_listing(rule) and rule.source in rt.sweeps:
                Purge(self, rt, rule, run, tally, tick).run()
            else:
                for batch in self.candidates(rt, rule, tally, run):
                    tally.queued += self.queue.enqueue_counted(batch)
                    self.notify()
                    if tick is not None:
                        tick(tally)
        except InterruptedError:
            raise
        except Exception as exc:  # the storage went away mid-listing: what was queued is processed
            logger.opt(exception=exc).debug("sweep {} failed while listing", rule.name)
            self.listed(run, tally, f"listing failed after {tally.seen:,} entries: {exc}")
            raise
        self.listed(run, tally)
        return tally

    def entries(self, rt: Runtime, rule: Rule, tally: Tally) -> Iterator[tuple[Listed, Asset, RunContext]]:
        """The listing, less what is in a job already, each entry as an asset its conditions can read."""
        over = rule.over
        assert over is not None
        busy = self.in_flight([rule.source] + ([over.hotfolder] if over.hotfolder else []))
        spec = rt.folders[over.hotfolder].spec if over.hotfolder and over.hotfolder in rt.folders else None
        ctx = _context(rt)
        root = over.root or Path("/")
        items = (beyond_newest(lambda: listing(rt, rule), over.keep_newest, tally)
                 if over.keep_newest is not None else listing(rt, rule))
        for item in items:
            tally.seen += 1
            if item.relpath in busy:
                tally.passed["already in a job"] += 1
                continue
            yield item, Asset(0, rule.tenant, rule.source, root, item.shown, item.size, item.mtime_ns, ctx.now,
                              spec.output if spec else None, item.shown.rsplit("/", 1)[-1]), ctx

    def candidates(self, rt: Runtime, rule: Rule, tally: Tally, run: int | None) -> Iterator[list[Detected]]:
        """Batches of jobs for what the listing holds and the cheap conditions do not rule out."""
        def found() -> Iterator[Detected]:
            for item, asset, ctx in self.entries(rt, rule, tally):
                if prefilter(rule.condition, asset, ctx) is False:
                    tally.passed["conditions not met"] += 1
                    continue
                yield Detected(rule.tenant, rule.source, item.relpath, item.size, item.mtime_ns, item.version,
                               run_id=run)

        yield from self.batches(found())

    def batches(self, items: Iterable[T]) -> Iterator[list[T]]:
        """Lists of BATCH items; a shutdown stops it between two (InterruptedError)."""
        batch: list[T] = []
        for item in items:
            batch.append(item)
            if len(batch) >= BATCH:
                if self.stopping.is_set():
                    raise InterruptedError
                yield batch
                batch = []
        if batch:
            yield batch

    def run_hotfolder(self, rt: Runtime, folder: Folder, run: int) -> Tally:
        """A scheduled hot folder's firing: every file waiting in it (and no longer being written) becomes a
        job, processed by the folder's rules as if it had just arrived."""
        tally = Tally()
        stable = folder.spec.stable_seconds
        now = time.time()
        batch: list[Detected] = []
        try:
            for relpath, st in scan(folder):
                tally.seen += 1
                if now - st.st_mtime < stable or has_writer(folder.root / relpath):
                    tally.passed["still being written (taken at the next firing)"] += 1
                    continue
                batch.append(Detected(folder.spec.tenant, folder.name, relpath, st.st_size, st.st_mtime_ns,
                                      run_id=run))
                if len(batch) >= BATCH:
                    if self.stopping.is_set():
                        raise InterruptedError
                    tally.queued += self.queue.enqueue_counted(batch)
                    self.notify()
                    batch = []
            tally.queued += self.queue.enqueue_counted(batch)
            self.notify()
        except InterruptedError:
            raise
        except Exception as exc:
            self.listed(run, tally, f"scan failed after {tally.seen:,} files: {exc}")
            raise
        known = tally.seen - sum(tally.passed.values()) - tally.queued
        if known:
            tally.passed["already processed or in a job"] += known
        self.listed(run, tally)
        return tally

    # -- dry run -------------------------------------------------------------------------------------
    def plan(self, rt: Runtime, rule: Rule, tally: Tally) -> Iterator[tuple[Listed, RunTrace]]:
        """What a sweep would do to each candidate, touching nothing: the full rule in simulate mode."""
        over = rule.over
        assert over is not None
        from flowd.worker import Processor

        processor = Processor(self.queue, lambda: rt)
        for batch in self.candidates(rt, rule, tally, None):
            for d in batch:
                yield _listed(d, over.prefix if over.root is None else None), processor.simulate_sweep(rt, rule, d)


def _spawn_unlinker() -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen([sys.executable, "-m", "flowd.unlinker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, close_fds=True)
    except OSError as exc:
        logger.warning("cannot start the unlinker process ({}); purging in line", exc)
        return None


def decided_by_listing(rule: Rule) -> bool:
    """A local purge whose every condition reads only the listing (name, size, age ...) and whose one
    action removes the source: the listing decides it all, so the sweep carries it out itself (Purge)."""
    return (rule.over is not None and rule.over.root is not None and rule.once is None
            and rule.kinds == ("delete",) and isinstance(rule.actions[0], Delete) and _cheap(rule.condition))


def _cheap(cond: Condition | None) -> bool:
    if cond is None or isinstance(cond, _CHEAP):
        return True
    if isinstance(cond, All | Any_):
        return all(_cheap(c) for c in cond.items)
    if isinstance(cond, Not):
        return _cheap(cond.item)
    return False


class Purge:
    """A purge carried out by the sweep itself: per batch of 1,000 decided files, their jobs are committed
    as claimed with the fate `delete` already decided (nothing acts on a file without a job row), the files
    are removed, and the jobs are finished with their traces in one transaction.

    The files are removed by a child process (flowd.unlinker) while this one lists and records the next batch:
    the unlinks are most of a purge's time, and they wait on the file system. Threads could not overlap
    them: removing in 1-4 threads took 11.3-12.3 s for 100,000 files (50,000 removed) against 8.7 s in line,
    measured, each unlink waiting for the GIL after its system call.

    A crash in between leaves claimed jobs whose lease runs out: a worker then applies the recorded fate
    like any job's, idempotently (a file already gone was done before). A job per file at a worker's pace
    would cost ten times the CPU for the same decisions."""

    def __init__(self, sweeper: Sweeper, rt: Runtime, rule: Rule, run: int, tally: Tally,
                 tick: Callable[[Tally], None] | None) -> None:
        self.sweeper, self.rt, self.rule, self.run_id, self.tally, self.tick = sweeper, rt, rule, run, tally, tick
        self.db = sweeper.db
        self.folder = rt.sweeps[rule.source]
        self.real_dirs: dict[str, bool] = {}
        self.where = f"{rule.file}:{rule.line}"

    def run(self) -> None:
        child = _spawn_unlinker()
        if child is None:  # no child process (a restricted sandbox): in line, one file after another
            for batch in self._decided():
                claimed = self._claim(batch)
                self._finish(claimed, self._remove_all(claimed))
            return
        assert child.stdin is not None and child.stdout is not None
        root = str(self.folder.root)
        pending: list[tuple[int, str, Detected, Any]] | None = None
        try:
            for batch in self._decided():
                claimed = self._claim(batch)
                unlinker.write_frame(child.stdin, (root, [(d.relpath, d.size, d.mtime_ns) for _i, _t, d, _r in claimed]))
                if pending is not None:  # the child removes this batch while the previous one is recorded
                    self._finish(pending, self._outcomes(child, pending))
                pending = claimed
            if pending is not None:
                self._finish(pending, self._outcomes(child, pending))
        finally:
            child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child.stdout.close()

    def _outcomes(self, child: subprocess.Popen[bytes], claimed: list[tuple[int, str, Detected, Any]]) -> list[str]:
        """The child's word on a batch; if it died, the batch is removed here instead (idempotent)."""
        assert child.stdout is not None
        got = unlinker.read_frame(child.stdout)
        if isinstance(got, list) and len(got) == len(claimed):
            return [str(x) for x in got]
        logger.warning("purge {}: the unlinker process ended early (exit {}); removing in line",
                       self.rule.name, child.poll())
        return self._remove_all(claimed)

    def _remove_all(self, claimed: list[tuple[int, str, Detected, Any]]) -> list[str]:
        return [self._remove(item) for item in claimed]

    def _decided(self) -> Iterator[list[tuple[Detected, list[dict[str, Any]]]]]:
        """Batches of what the rule matches, each with its condition records (the trace's)."""
        rule = self.rule

        def matched() -> Iterator[tuple[Detected, list[dict[str, Any]]]]:
            for item, asset, ctx in self.sweeper.entries(self.rt, rule, self.tally):
                records: list[dict[str, Any]] = []
                if rule.condition is not None and not rule.condition.check(asset, ctx, records):
                    self.tally.passed["conditions not met"] += 1
                    continue
                yield Detected(rule.tenant, rule.source, item.relpath, item.size, item.mtime_ns,
                               run_id=self.run_id), records

        yield from self.sweeper.batches(matched())

    def _claim(self, batch: list[tuple[Detected, list[dict[str, Any]]]]) -> list[tuple[int, str, Detected, Any]]:
        """The batch's jobs, committed as claimed by this process with the fate decided."""
        t = time.time()
        token = secrets.token_hex(8)
        owner = self.sweeper.queue.node_id
        until = t + self.sweeper.queue.lease_seconds
        digest = self.rt.digest
        by_key = {}
        params: list[Any] = []
        for d, records in batch:
            key = d.dedupe()
            by_key[key] = (d, records)
            params += [d.tenant, d.hotfolder, display(d.relpath), d.relpath.encode("utf-8", "surrogateescape"), d.size,
                       d.mtime_ns, key, t, t, d.run_id, digest, owner, token, until]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, 'claimed', 1, ?, ?, ?, 'delete', ?, ?, ?, ?)"] * len(batch))
        sql = (f"INSERT INTO jobs (tenant, hotfolder, relpath, relpath_raw, size, mtime_ns, dedupe, state, attempts, "
               f"created, updated, run_id, fate, ruleset, lease_owner, lease_token, lease_until) VALUES {values} "
               "ON CONFLICT DO NOTHING RETURNING id, dedupe")
        with self.db.write() as conn:
            cur = self.db.cursor(conn)
            cur.execute(self.db.sql(sql), params)
            rows = cur.fetchall()
            cur.close()
        self.tally.queued += len(rows)
        return [(int(r[0]), token, *by_key[r[1]]) for r in rows]

    def _remove(self, item: tuple[int, str, Detected, Any]) -> str:
        d = item[2]
        try:
            return apply_fate(self.folder, d.relpath, d.size, d.mtime_ns, "delete", None, self.real_dirs)
        except StepError as exc:
            return f"error: {exc}"

    def _finish(self, claimed: list[tuple[int, str, Detected, Any]], removing: Iterable[str]) -> None:
        """Each job done with what happened to its file, and its trace; one that failed is left claimed
        (its lease runs out and a worker retries the fate, with backoff and a reason if it keeps failing)."""
        t = time.time()
        finish, traces = [], []
        rule = self.rule
        for (job_id, token, d, records), outcome in zip(claimed, removing, strict=True):
            if outcome.startswith("error: "):
                logger.warning("purge {}: {}: {}; a worker retries it", rule.name, display(d.relpath), outcome[7:])
                continue
            status = {"deleted": "finished", "already gone": "vanished"}.get(outcome, "superseded")
            finish.append(("done", status, None, None, "delete" if status == "finished" else "keep", t, job_id, token))
            trace = {"job": job_id, "attempt": 1, "ruleset": self.rt.digest, "status": status,
                     "rules": [{"rule": rule.name, "file": self.where, "matched": True, "conditions": records,
                                "actions": [{"step": 0, "action": "delete", "outcome": "source removal requested"}]}],
                     "fate": "delete" if status == "finished" else f"keep ({outcome})", "sweep": self.run_id,
                     "ms": 0}
            traces.append((job_id, 1, d.tenant, status, t, json.dumps(trace)))
        with self.db.write() as conn:
            cur = self.db.cursor(conn)
            cur.executemany(self.db.sql(_FINISH), finish)
            cur.executemany(self.db.sql(_INSERT_TRACE), traces)
            cur.close()


def _listed(d: Detected, prefix: str | None) -> Listed:
    shown = d.relpath[len(prefix):].lstrip("/") if prefix and d.relpath.startswith(prefix) else d.relpath
    return Listed(d.relpath, shown, d.size, d.mtime_ns, d.version)


def _context(rt: Runtime) -> RunContext:
    def no_posting(*_args: object) -> int:
        raise RuntimeError("no webhooks while listing")

    return RunContext(now=datetime.now(), storages=rt.storages, simulate=True, post_json=no_posting,
                      seen_content=lambda _rule, _sha: None, fields=rt.rules.fields)


def _outcomes(rt: Runtime, schedule: str, rows: Iterable[Any]) -> Counter[str]:
    """Job endings as people say them: deleted, moved, processed, not matching, failed ..."""
    moves = False
    if schedule.startswith("rule:"):
        tenant, _, rest = schedule[5:].partition("/")
        rule = rt.rules.sweep(tenant, rest.rpartition("#")[0])
        moves = rule is not None and any(k in ("move", "store") for k in rule.kinds)
    out: Counter[str] = Counter()
    for status, fate, n in rows:
        if status == "finished" and fate == "delete" and schedule.startswith("rule:"):
            label = "moved" if moves else "deleted"
        else:
            label = {"finished": "processed", "unmatched": "not matching", "quarantined": "failed",
                     "vanished": "gone before processing", "superseded": "changed before processing",
                     "ignored": "ignored"}.get(status or "", status or "unknown")
        out[label] += int(n)
    return out
