"""The command line: run | check | simulate | trace | status | retry | sweep | ftp-user | migrate.

Every user error is one clear message and exit status 1; a traceback means a bug in flowd.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from flowd import __version__, log
from flowd.asset import Asset
from flowd.errors import AlreadyRunningError, ConfigErrors, FlowdError
from flowd.report import render_trace, when

DEFAULT_CONFIG = os.environ.get("FLOWD_CONFIG", "config.example.toml")
_daemon_done = False  # set once `flowd run` has shut down cleanly


def entry() -> None:
    """The `flowd` program. Once `flowd run` has shut down cleanly (jobs finished, database closed,
    threads joined), the interpreter's teardown of its ~600 modules is skipped: it took 0.2-0.4 s and
    does nothing a finished daemon needs (measured with `flowd run --until-idle` on an empty folder)."""
    code = main()
    if _daemon_done:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    log.setup("WARNING" if args.command != "run" else "INFO", getattr(args, "log_format", "human"))
    try:
        return int(args.func(args) or 0)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err.render(), file=sys.stderr)
        print(f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}", file=sys.stderr)
        return 1
    except (AlreadyRunningError, FlowdError) as exc:
        print(f"flowd: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # a database URL naming a driver that is not installed
        print(f"flowd: the database driver is not installed ({exc.name or exc}); "
              "for PostgreSQL: pip install 'psycopg[binary]'", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the database cannot be reached or opened
        print(f"flowd: cannot use the database: {str(exc.orig if isinstance(exc, DBAPIError) else exc)}",
              file=sys.stderr)
        return 1
    except OSError as exc:  # a data dir, lock file or folder that cannot be created or opened
        print(f"flowd: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowd", description="Hot folders -> rules -> storage.")
    parser.add_argument("--version", action="version", version=f"flowd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
        p.set_defaults(func=func)
        return p

    p = command("run", cmd_run, "Run the daemon: watch hot folders and process what arrives.")
    p.add_argument("--log-format", choices=["human", "json"], default="human")
    p.add_argument("--until-idle", action="store_true",
                   help="process what is in the hot folders now, then exit (batch mode)")
    command("check", cmd_check, "Validate the config and every rule file; exit 1 on any error.")
    p = command("simulate", cmd_simulate, "Show what each rule would do with these files, touching nothing.")
    p.add_argument("paths", nargs="+")
    p.add_argument("--hotfolder", help="treat the files as if dropped into this hot folder")
    p.add_argument("--events", help="for STORAGE:container/path: the events stream whose rules to run "
                                    "(default: the one stream of that storage)")
    p.add_argument("--ftp-user", help="simulate the files as this FTP user's upload (their group's rules, "
                                      "{ftp.user}, the ftp condition)")
    p.add_argument("--json", action="store_true")
    p = command("trace", cmd_trace, "Show the decision trace of a job or of the jobs of a file.")
    p.add_argument("target", help="a job id, or a path (or file name) of a detected file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="every attempt, not only the latest")
    p = command("status", cmd_status, "Queue counts, waiting and quarantined jobs, recent outcomes.")
    p.add_argument("--json", action="store_true")
    p = command("retry", cmd_retry, "Re-queue quarantined work (the file goes back into its hot folder).")
    p.add_argument("job", nargs="?", type=int)
    p.add_argument("--all", action="store_true")
    p = command("sweep", cmd_sweep, "Run a sweep rule (one with over:) now, or list what it would do.")
    p.add_argument("rule", help="the sweep rule's name")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted or moved; touch nothing")
    p.add_argument("--tenant", help="the rule's tenant, when several tenants have a rule of that name")
    p.add_argument("--json", action="store_true", help="--dry-run: as JSON")
    p = command("ftp-user", cmd_ftp_user, "Manage the FTP server's users: add, passwd, remove, list.")
    p.add_argument("action", choices=["add", "passwd", "remove", "list"])
    p.add_argument("name", nargs="?", help="the user name (all actions but list)")
    p.add_argument("--group", help="add: the [[ftp.groups]] group the user belongs to")
    p.add_argument("--perm", action="append", choices=["upload", "read", "delete"],
                   help="add: a permission (repeat for more; default: upload only, a write-only drop box)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--json", action="store_true", help="list: as JSON")
    from flowd.migrate.command import add_parsers

    add_parsers(sub)
    return parser


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from flowd.config import load_config
    from flowd.daemon import Daemon

    global _daemon_done
    config = load_config(args.config)
    log.setup(config.settings.flowd.log_level, args.log_format)
    code = Daemon(args.config, until_idle=args.until_idle, log_format=args.log_format).run()
    _daemon_done = True
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from flowd.runtime import load_runtime

    rt = load_runtime(args.config)
    streams = len(rt.config.settings.events)
    ftp = rt.config.settings.ftp
    print(f"{args.config}: OK ({len(rt.config.settings.hotfolders)} hot folder(s), {len(rt.storages)} storage(s), "
          + (f"{streams} events stream(s), " if streams else "")
          + (f"FTP on {ftp.listen} with {len(ftp.groups)} group(s), " if ftp else "")
          + f"{len(rt.rules.rules)} rule(s) in {len(rt.rules.files)} file(s))")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from flowd.actions.webhook import post_json
    from flowd.context import RunContext
    from flowd.runtime import load_runtime
    from flowd.trace import RunTrace

    rt = load_runtime(args.config)
    status = 0
    upload = _simulated_upload(args, rt) if args.ftp_user else None
    if args.ftp_user and upload is None:
        return 1
    for raw in args.paths:
        if _stored_target(raw, rt):
            status |= _simulate_stored(raw, rt, args)
            continue
        given = Path(raw).absolute()
        path = given.parent.resolve() / given.name  # a hot folder reached through a symlinked parent
        folder = rt.folders.get(args.hotfolder) if args.hotfolder else next(
            (f for f in rt.folders.values() if path.is_relative_to(f.root)), None)
        if folder is None:
            known = ", ".join(f"{f.name} ({f.root})" for f in rt.folders.values())
            what = f"no hot folder named {args.hotfolder!r}" if args.hotfolder else "not inside any hot folder"
            print(f"{raw}: {what}; hot folders: {known} (use --hotfolder NAME)", file=sys.stderr)
            status = 1
            continue
        try:
            st = os.lstat(path)
        except OSError as exc:
            print(f"{raw}: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        if path.is_relative_to(folder.root):
            root, rel = folder.root, path.relative_to(folder.root).as_posix()
        else:
            root, rel = path.parent, path.name
        now = datetime.now()
        asset = Asset(0, folder.spec.tenant, folder.name, root, rel, st.st_size, st.st_mtime_ns, now,
                      folder.spec.output, path.name, upload=upload)
        with tempfile.TemporaryDirectory(prefix="flowd-simulate-") as work:
            # Metadata and pixel actions run for real on private copies, so later conditions and
            # placeholders see their results; nothing is written to any storage.
            ctx = RunContext(now=now, storages=rt.storages, simulate=True, post_json=post_json,
                             seen_content=lambda _rule, _sha: None, workdir=Path(work), fields=rt.rules.fields)
            trace = RunTrace(0, 0, rt.digest, upload=upload.to_dict() if upload else None)
            outcome = rt.engine.run(asset, ctx, trace)
        trace.fate = folder.fate(outcome.matched, outcome.consumes, outcome.status == "quarantined") \
            if not outcome.transient else "retry later"
        if args.json:
            print(json.dumps({"path": raw, **trace.to_dict()}, ensure_ascii=False))
        else:
            print(render_trace(trace.to_dict(), f"{raw} (simulated in {folder.name})"))
    return status


def _simulated_upload(args: argparse.Namespace, rt: Any) -> Any:
    """`--ftp-user NAME`: the files are simulated as that user's FTP upload (their group's rules run, the
    {ftp.*} placeholders and the ftp condition see them), landing where the group's uploads land."""
    from flowd.asset import Upload
    from flowd.db import Database
    from flowd.ftp import users
    from flowd.hotfolder import ftp_source

    user = users.get(Database(rt.config.database_url), args.ftp_user)
    groups = {g.name: g for g in rt.config.settings.ftp.groups} if rt.config.settings.ftp else {}
    if user is None or user.group not in groups:
        print(f"flowd simulate: no FTP user {args.ftp_user!r}" if user is None else
              f"flowd simulate: FTP user {args.ftp_user!r} belongs to group {user.group!r}, which is not in the config",
              file=sys.stderr)
        return None
    if not args.hotfolder:
        args.hotfolder = groups[user.group].hotfolder or ftp_source(user.group)
    return Upload("ftp", user.name, user.group, "127.0.0.1", time.time())


def _stored_target(raw: str, rt: Any) -> bool:
    """`lake:incoming/a.jpg` names a stored asset when `lake` is a storage and no such local file exists."""
    name, sep, _ = raw.partition(":")
    return bool(sep) and name in rt.storages and not os.path.lexists(raw)


def _simulate_stored(raw: str, rt: Any, args: argparse.Namespace) -> int:
    """Run the rules of the storage's events stream on a blob, as if its BlobCreated event had arrived."""
    from flowd.actions.webhook import post_json
    from flowd.context import RunContext
    from flowd.errors import StepError
    from flowd.rules import events_source
    from flowd.stored import blob_storage, stored_asset
    from flowd.target import TargetError, parse_target
    from flowd.trace import RunTrace

    try:
        target = parse_target(raw)
    except TargetError as exc:
        print(f"{raw}: {exc}", file=sys.stderr)
        return 1
    storage = blob_storage(rt.storages[target.storage])
    streams = [n for n, ev in rt.config.settings.events.items() if ev.storage == target.storage]
    name = args.events or (streams[0] if len(streams) == 1 else None)
    source = rt.sources.get(events_source(name)) if name else None
    if storage is None or source is None or source.storage != target.storage:
        why = (f"storage '{target.storage}' holds no blobs to process in place" if storage is None else
               f"name the events stream with --events ({', '.join(streams)})" if len(streams) > 1 and not name else
               f"no [events.NAME] stream of storage '{target.storage}' is named {name!r}" if name else
               f"no [events.NAME] stream announces storage '{target.storage}': rules run on stored assets "
               "through `on: [{storage_events: NAME}]`")
        print(f"{raw}: {why}", file=sys.stderr)
        return 1
    try:
        info = storage.stat(target.key)
    except StepError as exc:
        print(f"{raw}: {exc}", file=sys.stderr)
        return 1
    if info is None:
        print(f"{raw}: no blob {target.key} in storage '{target.storage}'", file=sys.stderr)
        return 1
    now = datetime.now()
    with tempfile.TemporaryDirectory(prefix="flowd-simulate-") as work:
        made: list[Path] = []
        ctx = RunContext(now=now, storages=rt.storages, simulate=True, post_json=post_json,
                         seen_content=lambda _rule, _sha: None, workdir=Path(work), fields=rt.rules.fields, made=made)
        asset = stored_asset(0, source, storage, target.key, info, now, Path(work), made, ctx.released)
        trace = RunTrace(0, 0, rt.digest)
        outcome = rt.engine.run(asset, ctx, trace)
    trace.fate = source.fate(outcome.consumes, outcome.status == "quarantined") if not outcome.transient \
        else "retry later"
    if args.json:
        print(json.dumps({"path": raw, **trace.to_dict()}, ensure_ascii=False))
    else:
        print(render_trace(trace.to_dict(), f"{raw} (simulated as announced by events stream {source.name})"))
    return 0


def _db(args: argparse.Namespace) -> Any:
    from flowd.config import load_config
    from flowd.db import Database

    config = load_config(args.config)
    config.data_dir.mkdir(parents=True, exist_ok=True)  # status on a site that never ran: an empty queue
    return config, Database(config.database_url)


def cmd_trace(args: argparse.Namespace) -> int:
    from flowd.db import jobs, traces

    config, db = _db(args)
    with db.read() as conn:
        if args.target.isdigit():
            job_rows = conn.execute(select(jobs).where(jobs.c.id == int(args.target))).all()
        else:
            target = Path(args.target)
            inside = [(hf.name, target.absolute().relative_to(root).as_posix())
                      for hf in config.settings.hotfolders
                      if target.absolute().is_relative_to(root := config.path(hf.path).resolve())]
            if inside and target.exists():  # a file in a hot folder: exactly that file's jobs
                query = or_(*[(jobs.c.hotfolder == name) & (jobs.c.relpath == rel) for name, rel in inside])
            else:  # a name or a relative path as shown by flowd status: match it as a path suffix
                suffix = args.target.strip("/")
                escaped = suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = or_(jobs.c.relpath == suffix, jobs.c.relpath.like(f"%/{escaped}", escape="\\"),
                            *[(jobs.c.hotfolder == name) & (jobs.c.relpath == rel) for name, rel in inside])
            job_rows = conn.execute(select(jobs).where(query).order_by(jobs.c.id)).all()
        if not job_rows:
            print(f"no job found for {args.target!r}", file=sys.stderr)
            return 1
        for job in job_rows:
            q = select(traces.c.body).where(traces.c.job_id == job.id).order_by(traces.c.id)
            bodies = [json.loads(r[0]) for r in conn.execute(q)]
            if not args.all:
                bodies = bodies[-1:]
            for body in bodies:
                if args.json:
                    print(json.dumps({"tenant": job.tenant, "hotfolder": job.hotfolder, "relpath": job.relpath,
                                      "state": job.state, **body},
                                     ensure_ascii=False))
                else:
                    print(render_trace(body, f"job {job.id} {job.hotfolder}/{job.relpath} [{job.state}] "
                                             f"detected {when(job.created)}"))
            if not bodies:
                print(f"job {job.id} {job.hotfolder}/{job.relpath} [{job.state}]: no trace yet")
    return 0


def _health(config: Any) -> list[dict[str, Any]]:
    """Each remote storage and events queue asked once, now, with a short timeout: what `flowd status` shows
    while jobs wait on an outage."""
    from flowd.errors import ConfigErrors
    from flowd.storage import build_storages

    out: list[dict[str, Any]] = []
    if not any(spec.kind != "local" for spec in config.settings.storage.values()):
        return out
    try:
        storages = build_storages(config)
    except ConfigErrors as exc:
        return [{"name": "storage", "kind": "config", "ok": False, "reason": "; ".join(map(str, exc.errors))}]
    for name, storage in storages.items():
        probe = getattr(storage, "probe", None)
        if probe is None:
            continue
        reason = probe(3)
        out.append({"name": name, "kind": "storage", "where": getattr(storage, "host", ""), "ok": reason is None,
                    "reason": reason or ""})
    if config.settings.events:
        from flowd.events.azure_queue import build_listeners

        for listener in build_listeners(config.settings, lambda _items: None, frozenset()):
            entry: dict[str, Any] = {"name": listener.name, "kind": "events", "where": f"queue {listener.spec.queue}"}
            try:
                props = listener.queue.get_queue_properties(retry_total=0, connection_timeout=3, read_timeout=3)
                entry.update(ok=True, reason="", messages=props.approximate_message_count)
            except Exception as exc:  # noqa: BLE001  (any failure is the answer here)
                from azure.core.exceptions import AzureError

                from flowd.events.azure_queue import _why
                entry.update(ok=False, reason=_why(exc) if isinstance(exc, AzureError) else type(exc).__name__)
            out.append(entry)
    return out


def cmd_status(args: argparse.Namespace) -> int:
    from flowd.db import jobs, nodes

    config, db = _db(args)
    health = _health(config)
    with db.read() as conn:
        counts = dict(conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all())
        outcomes = dict(conn.execute(select(jobs.c.status, func.count()).where(jobs.c.state == "done")
                                     .group_by(jobs.c.status)).all())
        waiting = conn.execute(select(jobs).where(jobs.c.state == "waiting").order_by(jobs.c.not_before).limit(20)).all()
        quarantined = conn.execute(select(jobs).where(jobs.c.state == "quarantined").order_by(jobs.c.id.desc())
                                   .limit(20)).all()
        recent = conn.execute(select(jobs).where(jobs.c.state == "done").order_by(jobs.c.updated.desc()).limit(10)).all()
        alive = conn.execute(select(nodes).where(nodes.c.heartbeat > time.time() - 120)).all()
        for entry in health:
            if entry["kind"] == "storage":  # jobs held up by this storage: their error names it first
                entry["waiting"] = conn.execute(select(func.count()).select_from(jobs).where(
                    jobs.c.state == "waiting", jobs.c.error.like(f"{entry['name']}:%"))).scalar_one()
    ftp = _ftp_state(config)
    scheduled = _schedules(args, db)
    if args.json:
        print(json.dumps({"states": counts, "outcomes": outcomes, "nodes": [n.node_id for n in alive],
                          "health": health, "ftp": ftp, "schedules": scheduled,
                          "quarantined": [{"job": q.id, "tenant": q.tenant, "file": f"{q.hotfolder}/{q.relpath}",
                                           "error": q.error} for q in quarantined],
                          "waiting": [{"job": w.id, "tenant": w.tenant, "file": f"{w.hotfolder}/{w.relpath}",
                                       "error": w.error, "retry_at": w.not_before} for w in waiting]}))
        return 0
    print("daemon: " + (", ".join(f"{n.node_id} (since {when(n.started)})" for n in alive) or "not running"))
    print("queue:  " + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("queued", "claimed", "waiting", "quarantined", "done")))
    if outcomes:
        print("done:   " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items(), key=lambda kv: str(kv[0]))))
    if ftp is not None:
        print("ftp:    " + (f"listening on {ftp['host']}:{ftp['port']} ({'FTPS' if ftp['tls'] else 'FTP'}, pid {ftp['pid']})"
                            if ftp.get("running") else "not running"))
    for entry in scheduled:
        print(f"schedule: {entry['schedule']} {entry['when']}; " + (entry["next"] and f"next {when(entry['next'])}; " or "")
              + (f"last run {entry['last']['id']} ({entry['last']['why']}) {entry['last']['state']} "
                 f"{when(entry['last']['started'])}: {entry['last']['said']}" if entry.get("last") else "never run yet"))
    for entry in health:
        what = f"{entry['kind']} {entry['name']}" + (f" ({entry['where']})" if entry.get("where") else "")
        if entry["ok"]:
            extra = f", {entry['messages']} message(s) queued" if entry.get("messages") is not None else ""
            print(f"health: {what}: reachable{extra}")
        else:
            held = f"; {entry['waiting']} job(s) waiting for it" if entry.get("waiting") else ""
            print(f"health: {what}: UNREACHABLE: {entry['reason']}{held}")
    for w in waiting:
        print(f"  waiting  job {w.id} {w.hotfolder}/{w.relpath}: retry at {when(w.not_before)}: {w.error}")
    for q in quarantined:
        reason = _reason(q.error)
        print(f"  quarantined  job {q.id} {q.hotfolder}/{q.relpath}: {reason}")
    if recent:
        print("recent:")
        for r in recent:
            print(f"  {when(r.updated)}  job {r.id} {r.hotfolder}/{r.relpath}: {r.status}")
    return 0


def _schedules(args: argparse.Namespace, db: Any) -> list[dict[str, Any]]:
    """Each schedule of the config (sweep rules, scheduled and run-once hot folders): when it fires next,
    and its last run with counts. Empty when the rules do not load (`flowd check` says why)."""
    from datetime import UTC

    from flowd.db import runs, schedules
    from flowd.runtime import load_runtime
    from flowd.scheduler import hotfolder_schedule, planned

    try:
        rt = load_runtime(args.config)
    except ConfigErrors:
        return []
    items: list[tuple[str, str, float | None]] = [
        (p.id, p.schedule.describe(), p.schedule.next_after(datetime.now(UTC)).timestamp()) for p in planned(rt).values()]
    items += [(hotfolder_schedule(f.name), "run once", None) for f in rt.folders.values() if f.spec.run == "once"]
    out = []
    with db.read() as conn:
        for pid, what, nxt in items:
            last = conn.execute(select(runs).where(runs.c.schedule == pid).order_by(runs.c.id.desc()).limit(1)).first()
            entry: dict[str, Any] = {"schedule": pid, "when": what, "next": nxt}
            if what == "run once":
                done = conn.execute(select(schedules.c.done).where(schedules.c.schedule == pid)).scalar()
                entry["when"] = f"run once: done {when(done)}, folder disabled" if done else "run once: not yet run"
                entry["disabled"] = bool(done)
            if last is not None:
                counts = json.loads(last.counts or "{}")
                said = ", ".join(f"{n} {k}" for k, n in sorted(counts.get("outcomes", {}).items())) or (
                    f"{last.queued} queued" if last.state != "done" else "nothing to do")
                if last.error:
                    said += f" ({last.error})"
                entry["last"] = {"id": last.id, "slot": last.slot, "why": last.why, "state": last.state,
                                 "started": last.started, "finished": last.finished, "seen": last.seen,
                                 "queued": last.queued, "counts": counts, "said": said}
            out.append(entry)
    return out


def _ftp_state(config: Any) -> dict[str, Any] | None:
    """The FTP server's own note of where it listens (var/ftp.json), if [ftp] is configured."""
    if config.settings.ftp is None:
        return None
    try:
        state = json.loads((config.data_dir / "ftp.json").read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return {"running": False}
    return {"running": True, **state}


def cmd_sweep(args: argparse.Namespace) -> int:
    from flowd.db import Database
    from flowd.runtime import load_runtime
    from flowd.sweep_cli import dry_run, find_rule, sweep_now

    rt = load_runtime(args.config)
    log.setup(rt.config.settings.flowd.log_level if not args.dry_run else "WARNING", "human")
    rule = find_rule(rt, args.rule, args.tenant)
    if not rule.enabled:
        print(f"flowd: rule '{rule.name}' is disabled (enabled: false); enable it to sweep", file=sys.stderr)
        return 1
    rt.config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(rt.config.database_url)
    from flowd.engine import Engine

    rt = dataclasses.replace(rt, engine=Engine(rt.rules, db.install_id))
    try:
        if args.dry_run:
            return dry_run(rt, db, rule, sys.stdout, args.json)
        with tempfile.TemporaryDirectory(prefix="sweep-", dir=rt.config.data_dir) as work:
            return sweep_now(rt, db, rule, sys.stdout, Path(work))
    finally:
        db.close()


def cmd_retry(args: argparse.Namespace) -> int:
    from flowd.db import jobs
    from flowd.hotfolder import build_folders
    from flowd.queue import Detected, JobQueue

    config, db = _db(args)
    if args.job is None and not args.all:
        print("flowd retry: name a JOB id or use --all", file=sys.stderr)
        return 1
    folders = build_folders(config)
    q = select(jobs).where(jobs.c.state == "quarantined")
    if not args.all:
        q = q.where(jobs.c.id == args.job)
    with db.read() as conn:
        rows = conn.execute(q).all()
    if not rows:
        print(f"no quarantined job {'' if args.all else args.job}".rstrip(), file=sys.stderr)
        return 1
    queue = JobQueue(db)
    retried = 0
    for row in rows:
        if row.hotfolder.startswith("@"):  # a stored asset stays where it is: its job simply runs again
            with db.write() as conn:
                conn.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == "quarantined").values(
                    state="queued", status=None, fate=None, error=None, not_before=None, updated=time.time()))
            retried += 1
            print(f"job {row.id}: {row.hotfolder}/{row.relpath} re-queued")
            continue
        folder = folders.get(row.hotfolder)
        relpath = bytes(row.relpath_raw).decode("utf-8", "surrogateescape")
        if folder is None:
            print(f"job {row.id}: hot folder {row.hotfolder!r} is no longer configured", file=sys.stderr)
            continue
        source = folder.root / relpath
        error = _error(row.error)
        held = Path(error["quarantined"]) if error.get("quarantined") else None
        if held is not None and held.exists() and not source.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            os.replace(held, source)
            note = held.parent / (held.name + ".error.json")
            note.unlink(missing_ok=True)
        if not source.exists():
            print(f"job {row.id}: the file is neither in {held or folder.errors} nor at {source}", file=sys.stderr)
            continue
        st = os.lstat(source)
        if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
            # The same file: resume this job, so steps that succeeded are not redone (a second write of
            # its own output would conflict with the first) and only what failed runs again.
            with db.write() as conn:
                conn.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == "quarantined").values(
                    state="queued", status=None, fate=None, error=None, not_before=None, updated=time.time()))
        else:  # the file was replaced: new bytes are a new job
            with db.write() as conn:
                conn.execute(update(jobs).where(jobs.c.id == row.id).values(state="done", status="retried",
                                                                            dedupe=None))
            queue.enqueue([Detected(row.tenant, row.hotfolder, relpath, st.st_size, st.st_mtime_ns)])
        retried += 1
        print(f"job {row.id}: {row.hotfolder}/{row.relpath} re-queued")
    return 0 if retried else 1


def cmd_ftp_user(args: argparse.Namespace) -> int:
    from flowd.ftp import users

    config, db = _db(args)
    groups = {g.name: g for g in config.settings.ftp.groups} if config.settings.ftp else {}
    if args.action == "list":
        found = users.all_users(db)
        if args.json:
            print(json.dumps([{"name": u.name, "group": u.group, "perms": sorted(u.perms)} for u in found]))
        for u in [] if args.json else found:
            known = "" if u.group in groups else "  (group not in the config: cannot log in)"
            print(f"{u.name}  group {u.group}  {','.join(p for p in users.PERMS if p in u.perms)}{known}")
        if not found and not args.json:
            print("no FTP users")
        return 0
    if not args.name:
        print(f"flowd ftp-user {args.action}: name the user", file=sys.stderr)
        return 1
    if args.action == "remove":
        users.remove(db, args.name)
        print(f"FTP user {args.name} removed (sessions already open end when they disconnect)")
        return 0
    if args.action == "add":
        if not args.group:
            print("flowd ftp-user add: --group GROUP is required", file=sys.stderr)
            return 1
        if args.group not in groups:
            print(f"flowd ftp-user add: no FTP group {args.group!r} in {args.config} "
                  f"(groups: {', '.join(groups) or 'none; add [[ftp.groups]] to [ftp]'})", file=sys.stderr)
            return 1
        users.check_name(args.name)
    password = _password(args)
    if password is None:
        return 1
    if args.action == "add":
        perms = set(args.perm or ["upload"])
        users.add(db, args.name, args.group, perms, password)
        print(f"FTP user {args.name} added to group {args.group} ({', '.join(p for p in users.PERMS if p in perms)})")
    else:
        users.set_password(db, args.name, password)
        print(f"password of FTP user {args.name} changed")
    return 0


def _password(args: argparse.Namespace) -> str | None:
    """From stdin (--password-stdin: scripts, secrets managers) or typed twice at a terminal; never argv."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print(f"flowd ftp-user {args.action}: use --password-stdin when stdin is not a terminal", file=sys.stderr)
        return None
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("the passwords differ", file=sys.stderr)
        return None
    return first


def _error(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
        return value if isinstance(value, dict) else {"reason": str(value)}
    except ValueError:
        return {"reason": text}


def _reason(text: str | None) -> str:
    err = _error(text)
    where = f"rule {err['rule']} step {err.get('step')} ({err.get('action')}): " if err.get("rule") else ""
    return where + str(err.get("reason", ""))


if __name__ == "__main__":  # pragma: no cover
    logger.remove()
    raise SystemExit(main())
