"""Read-only looks into a running site's SQLite database: far cheaper than spawning `flowd status` in a
polling loop (each CLI start costs a second of CPU on a loaded machine)."""

from __future__ import annotations

import sqlite3
from typing import Any

from conftest import Site, wait_for


def query(site: Site, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = site.root / "var" / "flowd.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def job_rows(site: Site) -> list[tuple[str, str, str | None]]:
    """(relpath, state, status) of every job, oldest first."""
    return query(site, "SELECT relpath, state, status FROM jobs ORDER BY id")  # type: ignore[return-value]


def states(site: Site) -> dict[str, int]:
    return dict(query(site, "SELECT state, count(*) FROM jobs GROUP BY state"))


def settle(site: Site, done: int, timeout: float = 20) -> dict[str, int]:
    """Like site.settled: `done` jobs finished (done or quarantined), none in flight, daemon alive."""
    def check() -> dict[str, int] | None:
        if site.proc is not None and site.proc.poll() is not None:
            raise AssertionError(f"flowd exited with {site.proc.returncode}:\n{site.log()}")
        st = states(site)
        finished = st.get("done", 0) + st.get("quarantined", 0)
        busy = sum(st.get(s, 0) for s in ("queued", "claimed", "waiting"))
        return st if finished >= done and busy == 0 else None
    return wait_for(check, timeout, interval=0.1, message=f"{done} finished jobs")

