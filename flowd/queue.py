"""The durable job queue: intake, claims with leases, and the batched writes that finish jobs.

Every write after a claim is conditional on the claim's lease token, so a worker presumed dead that
wakes up cannot finish a job somebody else now owns.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowd.asset import Upload
from flowd.db import Database, jobs, nodes, now, steps, uploads


@dataclass(frozen=True, slots=True)
class Detected:
    """A file the watcher or a scan found stable: becomes one job row."""

    tenant: str
    hotfolder: str
    relpath: str  # str with surrogate escapes for undecodable bytes
    size: int
    mtime_ns: int
    # A stored asset's version (its blob's ETag): one job per version, however many events announce it.
    version: str | None = None
    run_id: int | None = None  # the sweep that listed it
    parent: int | None = None  # the ZIP job it was extracted by

    def dedupe(self) -> str:
        raw = self.relpath.encode("utf-8", "surrogateescape")
        parts = [self.tenant.encode(), self.hotfolder.encode(), raw, str(self.size).encode(),
                 str(self.mtime_ns).encode()]
        if self.version is not None:
            parts.append(self.version.encode())
        if self.hotfolder.startswith("~"):
            # A sweep looks at the same unchanged file again at every firing (it has aged): one job per run.
            parts.append(str(self.run_id).encode())
        return hashlib.sha256(b"\0".join(parts)).hexdigest()


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    tenant: str
    hotfolder: str
    relpath: str
    size: int
    mtime_ns: int
    attempts: int
    created: float
    fate: str | None
    token: str
    version: str | None = None


@dataclass(slots=True)
class Finished:
    """Everything one job's run produced, written in the batch's transactions."""

    job: Claimed
    state: str  # done | waiting | quarantined
    status: str
    fate: str | None = None
    error: str | None = None
    retry_at: float | None = None
    steps: Sequence[tuple[str, str, dict[str, Any]]] = ()
    ledger: Sequence[tuple[str, str, str]] = ()
    trace: dict[str, Any] | None = None
    ruleset: str | None = None
    # Files that go wherever the source goes (a merged sidecar): (relpath, size, mtime_ns).
    companions: Sequence[tuple[str, int, int]] = ()
    # Done once the outputs are durable and journalled, before the source's fate (a JRF's PRF).
    epilogue: Callable[[], None] | None = None


def display(relpath: str) -> str:
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class JobQueue:
    def __init__(self, db: Database, lease_seconds: float = 60, node_name: str | None = None) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        # The name is a label for people (flowd status); the pid and random part make every start unique.
        self.node_id = f"{node_name or socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"[:64]
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        self._insert_ignore = dialect.insert

    # -- nodes ---------------------------------------------------------------------------------------
    def register_node(self) -> int:
        """Announce this process; release claims of dead processes on this host at once (no lease wait)."""
        host, t = socket.gethostname(), now()
        with self.db.write() as conn:
            conn.execute(insert(nodes).values(node_id=self.node_id, hostname=host, pid=os.getpid(),
                                              started=t, heartbeat=t))
            dead = [r.node_id for r in conn.execute(select(nodes.c.node_id, nodes.c.pid)
                                                    .where(nodes.c.hostname == host, nodes.c.node_id != self.node_id))
                    if not _alive(r.pid)]
            released = 0
            if dead:
                released = conn.execute(update(jobs).where(jobs.c.state == "claimed", jobs.c.lease_owner.in_(dead))
                                        .values(state="queued", lease_owner=None, lease_token=None)).rowcount
                conn.execute(nodes.delete().where(nodes.c.node_id.in_(dead)))
            return released

    def heartbeat(self) -> None:
        t = now()
        with self.db.write() as conn:
            conn.execute(update(nodes).where(nodes.c.node_id == self.node_id).values(heartbeat=t))
            conn.execute(update(jobs).where(jobs.c.state == "claimed", jobs.c.lease_owner == self.node_id)
                         .values(lease_until=t + self.lease_seconds))

    def unregister_node(self) -> None:
        with self.db.write() as conn:
            conn.execute(update(jobs).where(jobs.c.state == "claimed", jobs.c.lease_owner == self.node_id)
                         .values(state="queued", lease_owner=None, lease_token=None))
            conn.execute(nodes.delete().where(nodes.c.node_id == self.node_id))

    # -- intake --------------------------------------------------------------------------------------
    def enqueue(self, items: Iterable[Detected]) -> int:
        """Commit job rows; a file already known by (path, size, mtime) is not queued twice.
        Returns how many were offered (duplicates are dropped silently by the unique key)."""
        t = now()
        rows = [{"tenant": d.tenant, "hotfolder": d.hotfolder, "relpath": display(d.relpath),
                 "relpath_raw": d.relpath.encode("utf-8", "surrogateescape"), "size": d.size,
                 "mtime_ns": d.mtime_ns, "version": d.version, "dedupe": d.dedupe(), "state": "queued", "attempts": 0,
                 "created": t, "updated": t, "run_id": d.run_id, "parent": d.parent} for d in items]
        if not rows:
            return 0
        stmt = self._insert_ignore(jobs).on_conflict_do_nothing(index_elements=["dedupe"])
        with self.db.write() as conn:
            conn.execute(stmt, rows)
        return len(rows)

    def enqueue_counted(self, items: Sequence[Detected]) -> int:
        """Like enqueue, in one transaction, returning how many rows were new (not already known)."""
        if not items:
            return 0
        t = now()
        rows = [(d.tenant, d.hotfolder, display(d.relpath), d.relpath.encode("utf-8", "surrogateescape"), d.size,
                 d.mtime_ns, d.version, d.dedupe(), t, t, d.run_id, d.parent) for d in items]
        with self.db.write() as conn:
            cur = self.db.cursor(conn)
            cur.executemany(self.db.sql(_INSERT_JOB), rows)
            added = int(cur.rowcount)  # summed over the rows by both sqlite3 and psycopg
            cur.close()
        return added

    def adopt(self, children: Sequence[Detected], parent: int) -> None:
        """Jobs for a ZIP's entries, each marked with the ZIP's job (also one the watcher queued first)."""
        self.enqueue(children)
        keys = [d.dedupe() for d in children]
        with self.db.write() as conn:
            for i in range(0, len(keys), 500):
                conn.execute(update(jobs).where(jobs.c.dedupe.in_(keys[i:i + 500]), jobs.c.parent.is_(None))
                             .values(parent=parent))

    def children_pending(self, parent: int) -> int:
        """How many of a ZIP's entries have a job that has not ended."""
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.parent == parent, jobs.c.state.in_(("queued", "claimed", "waiting")))).scalar_one())

    def known(self, items: Sequence[Detected]) -> set[str]:
        """Which of these files already have a job (any state): the rescan skips them."""
        keys = [d.dedupe() for d in items]
        out: set[str] = set()
        with self.db.read() as conn:
            for i in range(0, len(keys), 500):
                out.update(r[0] for r in conn.execute(select(jobs.c.dedupe).where(jobs.c.dedupe.in_(keys[i:i + 500]))))
        return out

    def record_uploads(self, rows: Sequence[tuple[Detected, Upload]]) -> None:
        """The facts of uploads, committed before their files take the names these jobs are keyed by."""
        if not rows:
            return
        values = [{"dedupe": d.dedupe(), "tenant": d.tenant, "protocol": u.protocol, "username": u.user,
                   "grp": u.group, "client": u.client, "at": u.at} for d, u in rows]
        stmt = self._insert_ignore(uploads).on_conflict_do_nothing(index_elements=["dedupe"])
        with self.db.write() as conn:
            conn.execute(stmt, values)

    def upload_of(self, job: Claimed) -> Upload | None:
        """Who uploaded this job's file, if it arrived over FTP."""
        key = Detected(job.tenant, job.hotfolder, job.relpath, job.size, job.mtime_ns, job.version).dedupe()
        row = self.db.lookup_row(_UPLOAD, (key,))
        return Upload(*row) if row else None

    # -- claims --------------------------------------------------------------------------------------
    def promote(self) -> int:
        """Waiting jobs whose time has come, and claims whose lease ran out, become claimable."""
        t = now()
        with self.db.write() as conn:
            return conn.execute(update(jobs).where(or_(
                and_(jobs.c.state == "waiting", jobs.c.not_before <= t),
                and_(jobs.c.state == "claimed", jobs.c.lease_until < t),
            )).values(state="queued", updated=t)).rowcount

    def next_wakeup(self) -> float | None:
        with self.db.read() as conn:
            return conn.execute(select(func.min(jobs.c.not_before)).where(jobs.c.state == "waiting")).scalar()

    def claim(self, limit: int, run: int | None = None) -> list[Claimed]:
        """A batch of queued jobs (only those of one sweep run, for `flowd sweep`)."""
        with self.db.write() as conn:
            return self._claim(conn, limit, run)

    def _claim(self, conn: Connection, limit: int, run: int | None = None) -> list[Claimed]:
        t = now()
        token = secrets.token_hex(8)
        pick = select(jobs.c.id).where(jobs.c.state == "queued").order_by(jobs.c.id).limit(limit)
        if run is not None:
            pick = pick.where(jobs.c.run_id == run)
        if not self.db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (update(jobs).where(jobs.c.id.in_(pick.scalar_subquery()))
                .values(state="claimed", lease_owner=self.node_id, lease_token=token,
                        lease_until=t + self.lease_seconds, attempts=jobs.c.attempts + 1, updated=t)
                .returning(jobs.c.id, jobs.c.tenant, jobs.c.hotfolder, jobs.c.relpath_raw, jobs.c.size,
                           jobs.c.mtime_ns, jobs.c.attempts, jobs.c.created, jobs.c.fate, jobs.c.version))
        rows = conn.execute(stmt).all()
        out = [Claimed(r.id, r.tenant, r.hotfolder, bytes(r.relpath_raw).decode("utf-8", "surrogateescape"),
                       r.size, r.mtime_ns, r.attempts, r.created, r.fate, token, r.version) for r in rows]
        out.sort(key=lambda c: c.id)
        return out

    def done_steps(self, job_id: int) -> dict[str, dict[str, Any]]:
        with self.db.read() as conn:
            return {r.step: json.loads(r.record) for r in
                    conn.execute(select(steps.c.step, steps.c.record).where(steps.c.job_id == job_id))}

    def seen_content(self, tenant: str, rule: str, sha256: str) -> int | None:
        value = self.db.lookup("SELECT job_id FROM ledger WHERE tenant = ? AND rule = ? AND sha256 = ?",
                               (tenant, rule, sha256))
        return int(value) if value is not None else None

    # -- finishing (two transactions per batch: journal + fate, then states) -----------------------------
    def journal(self, results: Sequence[Finished]) -> set[int]:
        """Record steps, traces, ledger rows and each job's decided fate. Returns the jobs still ours."""
        t = now()
        ids = {f.job.id for f in results}
        with self.db.write() as conn:
            cur = self.db.cursor(conn)
            owned: set[int] = set()
            for token in {f.job.token for f in results}:  # one per batch: claimed in one statement
                cur.execute(self.db.sql(_OWNED), (token,))
                owned.update(r[0] for r in cur.fetchall() if r[0] in ids)
            mine = [f for f in results if f.job.id in owned]
            steps_rows = [(f.job.id, s, tok, json.dumps(rec), t) for f in mine for s, tok, rec in f.steps]
            if steps_rows:
                cur.executemany(self.db.sql(_INSERT_STEP), steps_rows)
            trace_rows = [(f.job.id, f.job.attempts, f.job.tenant, f.status, t, json.dumps(f.trace))
                          for f in results if f.trace is not None]
            if trace_rows:
                cur.executemany(self.db.sql(_INSERT_TRACE), trace_rows)
            ledger_rows = [(tn, r, sh, f.job.id) for f in mine for tn, r, sh in f.ledger]
            if ledger_rows:
                cur.executemany(self.db.sql(_INSERT_LEDGER), ledger_rows)
            if mine:
                cur.executemany(self.db.sql(_SET_FATE), [(f.fate, f.ruleset, f.job.id, f.job.token) for f in mine])
            cur.close()
        return owned

    def finish(self, results: Sequence[Finished], claim: int = 0) -> list[Claimed]:
        """Mark jobs done/waiting/quarantined and, in the same transaction, claim the next batch."""
        t = now()
        rows = [(f.state, f.status, f.error, f.retry_at, f.fate, t, f.job.id, f.job.token) for f in results]
        # A source the fate took away (deleted, moved) frees its key: the same file dropped again later (same
        # name, bytes and date, as a copy keeping the camera's date is) is new work, as in Color Factory. The
        # fate was applied before this commit, so the watcher cannot meet the old file under a free key.
        gone = [(f.job.id,) for f in results
                if f.state == "done" and f.fate is not None and (f.fate in ("delete", "unmatched")
                                                                  or f.fate.startswith("move:"))]
        with self.db.write() as conn:
            if rows:
                cur = self.db.cursor(conn)
                cur.executemany(self.db.sql(_FINISH), rows)
                if gone:
                    cur.executemany(self.db.sql(_RELEASE), gone)
                cur.close()
            return self._claim(conn, claim) if claim else []


# The hot path's batch statements as plain SQL on the DBAPI cursor: building and binding SQLAlchemy
# statements row by row was most of the time these writes took. `?` becomes `%s` for PostgreSQL.
_INSERT_JOB = ("INSERT INTO jobs (tenant, hotfolder, relpath, relpath_raw, size, mtime_ns, version, dedupe, state, "
               "attempts, created, updated, run_id, parent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?) "
               "ON CONFLICT DO NOTHING")
_UPLOAD = "SELECT protocol, username, grp, client, at FROM uploads WHERE dedupe = ?"
_OWNED = "SELECT id FROM jobs WHERE lease_token = ? AND state = 'claimed'"
_INSERT_STEP = ("INSERT INTO steps (job_id, step, token, record, done) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING")
_INSERT_TRACE = "INSERT INTO traces (job_id, attempt, tenant, status, created, body) VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_LEDGER = "INSERT INTO ledger (tenant, rule, sha256, job_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
_SET_FATE = "UPDATE jobs SET fate = ?, ruleset = ? WHERE id = ? AND lease_token = ?"
_RELEASE = "UPDATE jobs SET dedupe = NULL WHERE id = ? AND state = 'done' AND lease_token IS NULL"
_FINISH = ("UPDATE jobs SET state = ?, status = ?, error = ?, not_before = ?, fate = ?, lease_owner = NULL, "
           "lease_token = NULL, lease_until = NULL, updated = ? WHERE id = ? AND lease_token = ?")


def backoff(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: many jobs failing together do not retry in lockstep."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempts - 1)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
