"""Helpers shared by test_actions.py, test_fates.py and test_webhook.py.

`quick_site` is conftest's `site` fixture, except that the read-only commands the tests poll (`flowd status`,
`flowd trace`) run the real CLI code in-process instead of in a new interpreter: the same output, at a
fraction of the cost (a polling loop of subprocesses costs a second per look on a loaded machine).
Everything that changes state (`run`, `retry`, `check`) still runs as its own process.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import Site, make_site

IN_PROCESS = ("status", "trace")


class QuickSite(Site):
    def cli(self, *args: str, input: bytes | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        if not args or args[0] not in IN_PROCESS or self.env:
            return super().cli(*args, input=input, check=check)
        from flowd.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "-c", str(self.config)])
        result = subprocess.CompletedProcess(["flowd", *args], code, out.getvalue(), err.getvalue())
        if check and code != 0:
            raise AssertionError(f"flowd {' '.join(args)} failed ({code}):\n{result.stderr}")
        return result


def quick_site(tmp_path: Path) -> Iterator[QuickSite]:
    """The body of each module's `site` fixture (conftest's, with QuickSite)."""
    yield from make_site(QuickSite, tmp_path)  # type: ignore[misc]


# -- reading results -----------------------------------------------------------------------------------
def error_notes(site: Site, folder: str = "inbox") -> dict[str, dict[str, Any]]:
    """The `<name>.error.json` notes in a hot folder's errors folder, by relative path."""
    root = site.root / "errors" / folder
    return {p.relative_to(root).as_posix(): json.loads(p.read_text())
            for p in sorted(root.rglob("*.error.json"))} if root.exists() else {}


def quarantined(site: Site) -> list[dict[str, Any]]:
    """`flowd status --json`'s quarantined jobs, each error decoded."""
    return [{**q, "error": json.loads(q["error"])} for q in site.status()["quarantined"]]


def trace_of(site: Site, relpath: str, folder: str = "inbox") -> dict[str, Any]:
    """The latest trace of the one job for this hot-folder path (`flowd trace a/x.jpg` also lists b/x.jpg)."""
    found = [t for t in site.traces(relpath) if t["relpath"] == relpath and t["hotfolder"] == folder]
    assert len(found) == 1, f"expected one job for {folder}/{relpath}, got {found}"
    return found[0]


def all_attempts(site: Site, relpath: str) -> list[dict[str, Any]]:
    """Every attempt's trace for this path, oldest first."""
    lines = site.cli("trace", relpath, "--json", "--all").stdout.splitlines()
    return [t for t in map(json.loads, lines) if t["relpath"] == relpath]


def actions_of(trace: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    [r] = [r for r in trace["rules"] if r["rule"] == rule]
    return r.get("actions", [])


def drop_in_turn(site: Site, files: list[tuple[str, bytes]], already: int = 0) -> None:
    """Drop each file only once the one before it is finished, so their order is certain."""
    for n, (name, data) in enumerate(files, already + 1):
        site.drop(name, data)
        site.settled(n)


# -- a real HTTP endpoint for webhooks ----------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived


@dataclass
class Endpoint:
    """An http.server on 127.0.0.1 that answers with `answers` in turn (the last one repeats)."""

    answers: list[int]
    port: int = 0
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                n = len(endpoint.received)
                endpoint.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                                  time.monotonic()))
                code = endpoint.answers[min(n, len(endpoint.answers) - 1)]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def endpoints() -> Iterator[Any]:
    """The body of the `endpoint` fixture: endpoint(200) / endpoint(500, 200) is a started Endpoint."""
    started: list[Endpoint] = []

    def make(*answers: int, port: int = 0) -> Endpoint:
        e = Endpoint(list(answers) or [200], port).start()
        started.append(e)
        return e

    yield make
    for e in started:
        e.stop()
