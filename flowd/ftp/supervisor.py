"""The daemon's side of the FTP server: start it as a child process, restart it when it dies or its
configuration changes, stop it with the daemon."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

from loguru import logger

from flowd.errors import FlowdError

START_TIMEOUT = 20.0


class FtpSupervisor:
    def __init__(self, config_file: str, log_format: str, on_queued: Callable[[], None],
                 on_crash: Callable[[], None] | None = None) -> None:
        self.config_file = config_file
        self.log_format = log_format
        self.on_queued = on_queued
        self.on_crash = on_crash
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._failures = 0
        self._starting = False

    def start(self) -> None:
        """Start the server and wait until it listens. Raises FlowdError when it cannot (a port in use)."""
        self._stopping = False
        self._starting = True
        self._spawn()
        self._ready.wait(START_TIMEOUT)  # set by "ready", or by the process ending first
        self._starting = False
        if self.port is None:
            proc = self._proc
            self.stop()
            code = proc.poll() if proc else None
            raise FlowdError("the FTP server did not start" + (f" (exit status {code})" if code is not None else "")
                             + "; its error is in the log above")

    def restart(self) -> None:
        logger.info("FTP server restarting for the new configuration")
        self.stop()
        self.start()

    def stop(self, timeout: float = 15) -> None:
        with self._lock:
            self._stopping = True
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("FTP server did not stop within {} s; killing it", timeout)
            proc.kill()
            proc.wait()

    def _spawn(self) -> None:
        self._ready.clear()
        self.port = None
        cmd = [sys.executable, "-m", "flowd.ftp.server", self.config_file, "--log-format", self.log_format]
        # stdin: a pipe this process never writes; it closes when the daemon dies, and the server stops.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        with self._lock:
            self._proc = proc
        threading.Thread(target=self._read, args=(proc,), name="ftp-supervisor", daemon=True).start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("queued"):
                self.on_queued()
            elif line.startswith("ready"):
                self.port = int(line.split()[1])
                self._failures = 0
                self._ready.set()
        code = proc.wait()
        if self._starting:  # it ended before listening: start() reports why, the daemon does not start
            self._ready.set()
            return
        with self._lock:
            if self._stopping or proc is not self._proc:
                return
        self._failures += 1
        if self.on_crash is not None:
            self.on_crash()
        delay = min(60.0, 2.0 ** self._failures)
        logger.error("FTP server exited unexpectedly (status {}); restarting in {:.0f} s", code, delay)
        time.sleep(delay)
        with self._lock:
            if self._stopping or proc is not self._proc:
                return
        self._spawn()
