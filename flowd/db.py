"""The database: jobs (the durable queue), steps (the effect journal), traces, audit, ledger.

SQLAlchemy Core, not the ORM: the hot path inserts and updates thousands of rows a second in batches.
SQLite runs in WAL mode; PostgreSQL is the same schema with SKIP LOCKED claims.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

HEAD_REVISION = "0004"  # the newest file in flowd/migrations/versions; tests check they agree
metadata = MetaData()

meta = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))

nodes = Table(
    "nodes", metadata,
    Column("node_id", String(64), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    # The source: a hot folder's name, "ftp:GROUP", "@EVENTS", or a sweep rule's "~TENANT/RULE"
    Column("hotfolder", String(255), nullable=False),
    Column("relpath", Text, nullable=False),  # for people: undecodable bytes shown escaped
    Column("relpath_raw", LargeBinary, nullable=False),  # for the file system: the exact bytes
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("version", Text),  # a stored asset's version (its blob's ETag); NULL for hot folder files
    # (tenant, hot folder, path, size, mtime) hashed; NULL once a quarantined job was retried.
    Column("dedupe", String(64), unique=True),
    Column("state", String(16), nullable=False),  # queued | claimed | waiting | done | quarantined
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", Float),
    Column("lease_owner", String(64)),
    Column("lease_token", String(32)),
    Column("lease_until", Float),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("status", String(16)),  # how it ended: finished | unmatched | quarantined | vanished | superseded
    Column("fate", Text),  # what happens to the source, decided once every step is journalled
    Column("error", Text),
    Column("ruleset", String(64)),
    Column("run_id", Integer),  # the sweep (scheduled or by hand) that queued it, for the run's counts
    Column("parent", Integer),  # the ZIP job whose entry this file is: the ZIP waits for its entries
    Index("ix_jobs_state_id", "state", "id"),
    Index("ix_jobs_hotfolder_relpath", "hotfolder", "relpath"),
    Index("ix_jobs_run_id", "run_id"),
    Index("ix_jobs_parent", "parent"),
)

# One row per firing of a schedule (and per `flowd sweep`): the unique (schedule, slot) is what runs a
# firing once across every daemon sharing the database, and the row is the run's record.
runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule", String(255), nullable=False),  # "rule:TENANT/NAME#i", "hotfolder:NAME", "sweep:..."
    Column("slot", String(64), nullable=False),  # the firing's time (UTC), or "manual-..." for a sweep by hand
    Column("tenant", String(64), nullable=False),
    Column("why", String(16), nullable=False),  # schedule | catch-up | once | manual
    Column("node", String(64), nullable=False),
    Column("started", Float, nullable=False),
    Column("listed", Float),  # when the listing ended (every candidate queued)
    Column("finished", Float),  # when its last job ended
    Column("state", String(16), nullable=False),  # listing | running | done | failed
    Column("seen", Integer, nullable=False, default=0),  # entries listed
    Column("queued", Integer, nullable=False, default=0),  # of which became jobs
    Column("counts", Text),  # JSON: outcomes of its jobs, and why listed entries were passed over
    Column("error", Text),
    UniqueConstraint("schedule", "slot", name="uq_runs_slot"),
)

# What a schedule remembers between starts: when it was first seen (a firing before that is not "missed"),
# and for a hot folder with run = "once", that it ran.
schedules = Table(
    "schedules", metadata,
    Column("schedule", String(255), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("done", Float),  # run = "once": when it ran (the folder stays disabled)
)

steps = Table(
    "steps", metadata,
    Column("job_id", Integer, primary_key=True),
    Column("step", String(300), primary_key=True),  # rule name / action index
    Column("token", String(96), nullable=False),
    Column("record", Text, nullable=False),
    Column("done", Float, nullable=False),
)

traces = Table(
    "traces", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created", Float, nullable=False),
    Column("body", Text, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # config | rules
    Column("digest", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("at", Float, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

ledger = Table(
    "ledger", metadata,
    Column("tenant", String(64), nullable=False),
    Column("rule", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("job_id", Integer, nullable=False),
    UniqueConstraint("tenant", "rule", "sha256", name="uq_ledger"),
)

# FTP users: a name belongs to exactly one group; the password only as a salted scrypt hash.
ftp_users = Table(
    "ftp_users", metadata,
    Column("name", String(64), primary_key=True),
    Column("grp", String(64), nullable=False),
    Column("perms", String(64), nullable=False),  # upload,read,delete
    Column("hash", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
)

# The facts of an upload (who, from where, when), keyed like the job its file becomes (jobs.dedupe).
# Written before the file takes its final name, so whichever detector queues the job, the facts are there.
uploads = Table(
    "uploads", metadata,
    Column("dedupe", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("protocol", String(8), nullable=False),  # ftp | ftps
    Column("username", String(64), nullable=False),
    Column("grp", String(64), nullable=False),
    Column("client", String(64), nullable=False),
    Column("at", Float, nullable=False),
)


class Database:
    """One engine per process. SQLite allows one writer: in-process writers take `write()` in turn
    instead of spinning on SQLITE_BUSY."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._write_lock = threading.RLock()
        self._local = threading.local()
        migrate(self.engine)
        self.install_id = self._install_id()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def sql(self, statement: str) -> str:
        """Plain SQL is written with `?`; PostgreSQL's drivers want `%s`."""
        return statement if self.is_sqlite else statement.replace("?", "%s")

    @staticmethod
    def cursor(conn: Connection) -> Any:
        """A DBAPI cursor inside the SQLAlchemy transaction `conn` is running."""
        return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def lookup(self, sql: str, params: tuple[Any, ...]) -> Any:
        """One value by a tiny hot-path query on this thread's own DBAPI connection: no pool checkout and
        no statement compilation per call (the per-asset ledger lookup was a fifth of all CPU time)."""
        row = self.lookup_row(sql, params)
        return row[0] if row else None

    def lookup_row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a tiny hot-path query (see `lookup`)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.engine.raw_connection()
        cur = conn.cursor()
        try:
            cur.execute(sql if self.is_sqlite else sql.replace("?", "%s"), params)
            row = cur.fetchone()
        finally:
            cur.close()
            conn.rollback()  # end the read at once: never hold a snapshot or a lock between calls
        return tuple(row) if row else None

    def secret(self, name: str) -> bytes:
        """A random key kept in the database, made on first use (the FTP upload facts' signing key)."""
        with self.write() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == name)).first()
            if row:
                return bytes.fromhex(str(row[0]))
            value = secrets.token_hex(32)
            conn.execute(insert(meta).values(key=name, value=value))
            return bytes.fromhex(value)

    def _install_id(self) -> str:
        # Tokens on outputs include this, so a fresh database never mistakes an old output for its own.
        with self.write() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == "install_id")).first()
            if row:
                return str(row[0])
            value = secrets.token_hex(6)
            conn.execute(insert(meta).values(key="install_id", value=value))
            return value

    def close(self) -> None:
        self.engine.dispose()


def migrate(engine: Engine) -> None:
    """Bring the schema to HEAD_REVISION with Alembic. Alembic is imported only when there is work to do:
    every CLI command opens the database, and a current schema costs one SELECT."""
    with engine.connect() as conn:
        try:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            current = None
        conn.rollback()
    if current == HEAD_REVISION:
        return
    if current is None and not inspect(engine).get_table_names():
        # A new database: build the current schema directly and stamp it, as Alembic advises.
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                              "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD_REVISION})
        return
    from alembic import command
    from alembic.config import Config

    import flowd.migrations

    config = Config()
    config.set_main_option("script_location", os.path.dirname(flowd.migrations.__file__))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives any process crash; only an OS crash can lose the last commits.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def now() -> float:
    return time.time()
