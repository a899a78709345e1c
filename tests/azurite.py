"""Azurite, the Azure Storage emulator, on a free loopback port for the length of a test module.

Installed by `make test` from package.json (node_modules/.bin/azurite-blob). Blob service only, in memory.
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

REPO = Path(__file__).resolve().parent.parent
AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
# The well-known development account every Azurite serves (Microsoft's Azurite docs): not a secret.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"successfully listens on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True, slots=True)
class Azurite:
    port: int
    pid: int

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};")


def available() -> bool:
    return AZURITE.is_file() and os.access(AZURITE, os.X_OK)


@contextmanager
def running(workdir: Path, timeout: float = 30) -> Iterator[Azurite]:
    """Start azurite-blob on a port the kernel picks, wait for its 'listens on' line, stop it by PID."""
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence", "--loose",
         "--skipApiVersionCheck", "--disableTelemetry"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    assert proc.stdout is not None
    try:
        port = _wait_for_port(proc, timeout)
        # Keep draining its output so a chatty emulator never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield Azurite(port, proc.pid)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: node and nothing else we did not start
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_for_port(proc: subprocess.Popen[bytes], timeout: float) -> int:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline().decode(errors="replace")
            if not line:
                break  # it exited
            seen.append(line.rstrip())
            match = _LISTENING.search(line)
            if match:
                return int(match.group(1))
    raise RuntimeError("Azurite did not start listening; its output:\n" + "\n".join(seen[-20:]))
