"""The FTP server process: `python -m flowd.ftp.server CONFIG` (started by `flowd run`, never by hand).

It tells its parent on stdout: `ready PORT` once it listens, `queued N` after each batch of jobs it
queued (so workers start at once). It stops on SIGTERM or when its stdin closes (the daemon is gone):
no new connections, transfers in progress get a few seconds to finish, every upload already received is
queued, then it exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from loguru import logger

from flowd import log
from flowd.config import load_config
from flowd.db import Database
from flowd.errors import ConfigErrors
from flowd.ftp._lib import FTPServer, IOLoop
from flowd.ftp.intake import Group, Intake, TempNames, purge_partials, recover
from flowd.ftp.session import Authorizer, Bans, Mailbox, ServerContext, make_handler
from flowd.hotfolder import build_folders, ftp_source
from flowd.queue import JobQueue
from flowd.upload_facts import FACTS_KEY

DRAIN_SECONDS = 5.0  # how long transfers in progress may still run after a stop


class _ToLoguru(logging.Handler):
    """pyftpdlib's own warnings and errors (an exception in a handler), in flowd's log."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.opt(depth=0).log("ERROR" if record.levelno >= logging.ERROR else "WARNING",
                                "FTP server: {}", record.getMessage())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowd.ftp.server")
    parser.add_argument("config")
    parser.add_argument("--log-format", choices=["human", "json"], default="human")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err.render(), file=sys.stderr)
        return 1
    log.setup(config.settings.flowd.log_level, args.log_format)
    pyftpd = logging.getLogger("pyftpdlib")
    pyftpd.setLevel(logging.WARNING)
    pyftpd.addHandler(_ToLoguru())
    pyftpd.propagate = False
    settings = config.settings.ftp
    if settings is None:
        logger.error("no [ftp] table in {}", args.config)
        return 1

    db = Database(config.database_url)
    queue = JobQueue(db, node_name="ftp")
    folders = build_folders(config)
    groups = {g.name: Group(g.name, g.tenant, folders[g.hotfolder or ftp_source(g.name)]) for g in settings.groups}
    for group in groups.values():
        group.root.mkdir(parents=True, exist_ok=True)
    done, kept, removed = recover(list(groups.values()), queue, settings)
    if done or kept or removed:
        logger.info("FTP: interrupted uploads at start: {} queued, {} partial kept for resume, {} removed",
                    done, kept, removed)

    out = sys.stdout
    out_lock = threading.Lock()

    def tell(line: str) -> None:
        with out_lock:
            out.write(line + "\n")
            out.flush()

    ioloop = IOLoop()
    mailbox = Mailbox(ioloop)
    intake = Intake(queue, settings, db.secret(FACTS_KEY), lambda n: tell(f"queued {n}"))
    ctx = ServerContext(settings, db, groups, intake, mailbox, Bans(settings.ban_after, settings.ban_seconds),
                        Authorizer(groups))
    handler = make_handler(ctx, TempNames(settings.temp_names))
    try:
        server = FTPServer((settings.host, settings.port), handler, ioloop=ioloop)
    except OSError as exc:
        logger.error("FTP server cannot listen on {}: {}", settings.listen, exc.strerror or exc)
        return 2
    server.max_cons = settings.max_connections
    server.max_cons_per_ip = settings.max_connections_per_ip
    port = server.address[1]
    intake.start()
    state = config.data_dir / "ftp.json"
    state.write_text(json.dumps({"pid": os.getpid(), "host": settings.host, "port": port,
                                 "tls": settings.tls_cert is not None}) + "\n")
    if settings.tls_cert is None and settings.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("FTP on {} without TLS: passwords and files cross the network in clear text; "
                       "set tls_cert (and tls_key) in [ftp]", settings.listen)
    logger.info("FTP{} server listening on {}:{} for {} group(s): {}", "S" if settings.tls_cert else "",
                settings.host, port, len(groups), ", ".join(groups) or "(none)")

    stopping = threading.Event()

    def stop(*_args: object) -> None:
        if not stopping.is_set():
            stopping.set()
            mailbox.post(begin_stop)

    def begin_stop() -> None:
        server.close()  # no new connections
        deadline = time.monotonic() + DRAIN_SECONDS

        def check() -> None:
            busy = any(getattr(h, "data_channel", None) is not None for h in list(ioloop.socket_map.values()))
            if busy and time.monotonic() < deadline:
                ioloop.call_later(0.1, check)
            else:
                ioloop.close()

        check()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop()

    def parent_gone() -> None:
        try:
            while os.read(0, 4096):  # b"" at EOF: the daemon closed its end (it stopped, or died)
                pass
        except OSError:
            pass
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=parent_gone, name="parent", daemon=True).start()

    def hourly() -> None:
        while not stopping.wait(3600):
            n = purge_partials(list(groups.values()), settings, set(ctx.writing))
            if n:
                logger.info("FTP: removed {} partial upload(s) older than {} h", n, settings.keep_partial_hours)

    threading.Thread(target=hourly, name="ftp-purge", daemon=True).start()
    tell(f"ready {port}")
    try:
        ioloop.loop(timeout=None, blocking=True)  # polls until the next timer (login delays, drains) is due
    finally:
        intake.stop()  # every upload already received is queued before the process ends
        ctx.verifier.shutdown(wait=False, cancel_futures=True)
        db.close()
        try:
            state.unlink()
        except FileNotFoundError:
            pass
        logger.info("FTP server stopped")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # daemon threads (the stdin watch) must not hold up or break interpreter teardown
