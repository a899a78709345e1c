"""Read-only looks into a running site's SQLite database: far cheaper than spawning `flowd status` in a
polling loop (each CLI start costs a second of CPU on a loaded machine)."""

from __future__ import annotations

import sqlite3
from typing import Any

from conftest import Site


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
    return site.states()


def settle(site: Site, done: int, timeout: float = 20) -> dict[str, int]:
    return site.settled(done, timeout)
