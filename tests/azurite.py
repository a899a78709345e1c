"""Azurite, the Azure Storage emulator, on free loopback ports for the length of a test (or module).

Installed by `make test` from package.json (node_modules/.bin/azurite-blob, azurite). Blob service, or Blob and
Queue; in memory, or persistent in a folder so that a crashed emulator restarted on the same ports and folder
serves the same data.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ALL = REPO / "node_modules" / ".bin" / "azurite"  # blob, queue and table in one process
LOKIJS = REPO / "node_modules" / "lokijs"
# The well-known development account every Azurite serves (Microsoft's Azurite docs): not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# azurite-blob says "Blob service successfully listens on URL", azurite "Blob service is successfully listening at URL".
_LISTENING = re.compile(r"(Blob|Queue|Table) service (?:is )?successfully (?:listens on|listening at) "
                        r"http://127\.0\.0\.1:(\d+)")

# Loaded into node (NODE_OPTIONS=--require) when Azurite persists to a folder. Stock Azurite writes its metadata
# (LokiJS) every 5 s, so a SIGKILL forgets writes it already acknowledged, which no real storage account does.
# With this, every dirty database is saved (synchronously) before any response goes out: an acknowledged write
# survives a crash, and a crash test measures flowd, not the emulator.
_DURABLE_JS = """\
"use strict";
const fs = require("fs");
const http = require("http");
const Loki = require(process.env.FLOWD_TEST_LOKIJS);
const open = new Set();
Loki.LokiFsAdapter.prototype.saveDatabase = function (dbname, dbstring, callback) {
  const tmp = dbname + "~";
  try {
    fs.writeFileSync(tmp, dbstring);
    fs.renameSync(tmp, dbname);
  } catch (err) {
    callback(new Error(err));
    return;
  }
  callback(null);
};
Loki.prototype.autosaveEnable = function () { this.autosave = true; open.add(this); };
Loki.prototype.autosaveDisable = function () { open.delete(this); };
const writeHead = http.ServerResponse.prototype.writeHead;
http.ServerResponse.prototype.writeHead = function (...args) {
  for (const db of open) {
    if (db.autosaveDirty()) db.saveDatabase();
  }
  return writeHead.apply(this, args);
};
"""


@dataclass(frozen=True, slots=True)
class Azurite:
    port: int  # blob port
    pid: int
    queue_port: int | None = None

    @property
    def connection_string(self) -> str:
        text = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.blob_url};")
        if self.queue_port is not None:
            text += f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
        return text

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"


def available() -> bool:
    return all(p.is_file() and os.access(p, os.X_OK) for p in (AZURITE, AZURITE_ALL))


@contextmanager
def running(workdir: Path, timeout: float = 30, *, queue: bool = False,
            location: Path | None = None) -> Iterator[Azurite]:
    """Start Azurite on ports the kernel picks, wait until it listens, stop it afterwards."""
    azurite, proc = start(workdir, queue=queue, location=location, timeout=timeout)
    try:
        yield azurite
    finally:
        stop(proc)


def start(workdir: Path, *, queue: bool = False, location: Path | None = None, blob_port: int = 0,
          queue_port: int = 0, timeout: float = 30) -> tuple[Azurite, subprocess.Popen[bytes]]:
    """Start Azurite and wait for its 'listening' lines. Port 0 lets the kernel pick; to restart after `kill`,
    pass the first start's ports and the same location. The caller ends it with `stop` or `kill`."""
    host = "127.0.0.1"
    if queue:
        args = [str(AZURITE_ALL), "--blobHost", host, "--blobPort", str(blob_port), "--queueHost", host,
                "--queuePort", str(queue_port), "--tableHost", host, "--tablePort", "0"]
    else:
        args = [str(AZURITE), "--blobHost", host, "--blobPort", str(blob_port)]
    env = dict(os.environ)
    if location is None:
        args.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        preload = workdir / "azurite-durable.js"
        preload.write_text(_DURABLE_JS)
        args += ["--location", str(location)]
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} --require {preload}".strip()
        env["FLOWD_TEST_LOKIJS"] = str(LOKIJS)
    args += ["--loose", "--skipApiVersionCheck", "--disableTelemetry"]
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        ports = _wait_for_ports(proc, {"Blob", "Queue"} if queue else {"Blob"}, timeout)
    except BaseException:
        kill(proc)
        raise
    assert proc.stdout is not None
    # Keep draining its output so a chatty emulator never blocks on a full pipe; kept in workdir for a post-mortem.
    threading.Thread(target=_drain, args=(proc.stdout, workdir / "azurite.log"), daemon=True).start()
    return Azurite(ports["Blob"], proc.pid, ports.get("Queue")), proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask it to shut down (SIGTERM to its process group), SIGKILL if it takes more than 10 s."""
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM)  # its own session: node and nothing else we did not start
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Crash it: SIGKILL to its process group at once, then wait until it is gone."""
    if proc.poll() is None:
        _signal(proc, signal.SIGKILL)
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass  # exited (and was reaped) meanwhile


def _drain(stream: IO[bytes], path: Path) -> None:
    with open(path, "ab") as out:
        while chunk := stream.read1(65536):
            out.write(chunk)
            out.flush()


def _wait_for_ports(proc: subprocess.Popen[bytes], services: set[str], timeout: float) -> dict[str, int]:
    """Read its output (unbuffered: several lines may come in one chunk) until every service listens."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    ports: dict[str, int] = {}
    pending = b""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # it exited
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                seen.append(line)
                match = _LISTENING.search(line)
                if match:
                    ports[match.group(1)] = int(match.group(2))
            if services <= ports.keys():
                return ports
    raise RuntimeError(f"Azurite did not start listening for {', '.join(sorted(services - ports.keys()))}; "
                       "its output:\n" + "\n".join(seen[-20:]))
