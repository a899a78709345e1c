"""Shared builders: a real flowd daemon as a subprocess on real folders, with real inotify.

`flowd_env` gives a fresh site (config, rules, hot folders) in a temporary directory; `site.start()` runs
`python -m flowd run` and waits for READY=1 on a test NOTIFY_SOCKET, exactly as systemd would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable

BASE_CONFIG = """\
[flowd]
data_dir = "var"
database_url = "sqlite:///var/flowd.db"
workers = {workers}
rules = ["rules/*.yaml"]
rescan_seconds = {rescan_seconds}
lease_seconds = 30
retry_base_seconds = 0.2
retry_max_seconds = 2

[storage.lake]
kind = "local"
root = "lake"
"""

HOTFOLDER = """
[[hotfolders]]
name = "{name}"
tenant = "{tenant}"
path = "hot/{name}"
output = "lake:assets"
stable_seconds = {stable_seconds}
after = "{after}"
unmatched = "{unmatched}"
errors = "errors/{name}"
poll_seconds = {poll_seconds}
recursive = {recursive}
"""

# A valid site with two tenants (each with its own storage and hot folder), for rule and config checks.
TWO_TENANT_SITE = """\
[flowd]
data_dir = "var"
database_url = "sqlite:///var/flowd.db"
workers = 2
rules = ["rules/*.yaml"]

[storage.lake]
kind = "local"
root = "lake"
tenants = ["default"]

[storage.vault]
kind = "local"
root = "vault"
tenants = ["acme"]

[[hotfolders]]
name = "inbox"
path = "hot/inbox"
output = "lake:assets"
errors = "errors/inbox"

[[hotfolders]]
name = "acme-in"
tenant = "acme"
path = "hot/acme"
output = "vault:acme"
errors = "errors/acme"
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root (relative posix path -> bytes), symlinks and flowd temp files included."""
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if path.is_file() or path.is_symlink():
            rel = path.relative_to(root).as_posix()
            out[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else b"<symlink>"
    return out


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
# Structurally complete (flowd holds back files whose format says they are cut short): IHDR ... IEND.
PNG = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\x00" * 17 + b"\x00" * 32
       + b"\x00\x00\x00\x00IEND\xaeB`\x82")
PDF = b"%PDF-1.7\n" + b"x" * 64 + b"\n%%EOF\n"


class Site:
    """One flowd installation in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify_path = root / "notify.sock"
        self.notify: socket.socket | None = None
        self.messages: list[str] = []
        self.log_path = root / "flowd.log"
        self.env: dict[str, str] = {}

    # -- set-up --------------------------------------------------------------------------------------
    def configure(self, *, hotfolders: list[dict[str, Any]] | None = None, workers: int = 2,
                  rescan_seconds: float = 300, extra: str = "") -> Path:
        text = BASE_CONFIG.format(workers=workers, rescan_seconds=rescan_seconds)
        for hf in hotfolders if hotfolders is not None else [{}]:
            values = {"name": "inbox", "tenant": "default", "stable_seconds": 0, "after": "delete",
                      "unmatched": "leave", "poll_seconds": 0, "recursive": "true", **hf}
            if isinstance(values["recursive"], bool):
                values["recursive"] = str(values["recursive"]).lower()
            text += HOTFOLDER.format(**values)
        text += extra
        (self.root / "flowd.toml").write_text(text)
        return self.root / "flowd.toml"

    def rules(self, text: str, name: str = "rules.yaml") -> Path:
        folder = self.root / "rules"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_text(textwrap.dedent(text))
        return path

    @property
    def config(self) -> Path:
        return self.root / "flowd.toml"

    def hot(self, name: str = "inbox") -> Path:
        path = self.root / "hot" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    def drop(self, relpath: str, data: bytes = JPEG, folder: str = "inbox") -> Path:
        """Write a file the way most clients do: a temp name in the same folder, then rename."""
        path = self.hot(folder) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.part"
        tmp.write_bytes(data)
        os.rename(tmp, path)
        return path

    # -- the daemon ----------------------------------------------------------------------------------
    def start(self, *args: str, wait_ready: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if self.notify is None:
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(str(self.notify_path))
            self.notify.settimeout(0.1)
        full_env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), **self.env, **(env or {})}
        full_env.pop("WATCHDOG_USEC", None)
        self.messages.clear()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PY, "-m", "flowd", "run", "-c", str(self.config), *args],
                                     cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        log.close()
        if wait_ready:
            self.wait_message("READY=1", timeout=20)
        return self.proc

    def read_notify(self) -> None:
        assert self.notify is not None
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return

    def wait_message(self, text: str, timeout: float = 10) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"flowd exited with {self.proc.returncode}:\n{self.log()}")
            self.read_notify()
            return any(text in m for m in self.messages)
        wait_for(seen, timeout, message=f"{text!r} on NOTIFY_SOCKET")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"flowd did not stop on SIGTERM within {timeout}s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the CLI -------------------------------------------------------------------------------------
    def cli(self, *args: str, input: bytes | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PY, "-m", "flowd", *args, "-c", str(self.config)], cwd=self.root,
                                capture_output=True, text=True, input=input.decode() if input else None,
                                env={**os.environ, **self.env}, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"flowd {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json", check=True).stdout)

    def traces(self, target: str) -> list[dict[str, Any]]:
        result = self.cli("trace", target, "--json")
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def states(self) -> dict[str, int]:
        """Job counts by state, read straight from the database (no CLI process per poll)."""
        db = self.root / "var" / "flowd.db"
        if not db.exists():
            return {}
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
        finally:
            conn.close()

    def settled(self, done: int, timeout: float = 20) -> dict[str, int]:
        """Wait until `done` jobs are finished (done or quarantined), nothing is in flight and flowd runs."""
        def check() -> dict[str, int] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"flowd exited with {self.proc.returncode}:\n{self.log()}")
            states = self.states()
            finished = states.get("done", 0) + states.get("quarantined", 0)
            busy = sum(states.get(s, 0) for s in ("queued", "claimed", "waiting"))
            return states if finished >= done and busy == 0 else None
        return wait_for(check, timeout, interval=0.1, message=f"{done} finished jobs")


def make_site(cls: type[Site], tmp_path: Path) -> Iterator[Site]:
    """A configured site of class `cls`, its daemon killed and notify socket closed afterwards."""
    s = cls(tmp_path)
    s.configure()
    yield s
    s.kill()
    if s.notify is not None:
        s.notify.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(Site, tmp_path)
