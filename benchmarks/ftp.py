#!/usr/bin/env python3
"""flowd FTP benchmark: many 1 MB uploads from concurrent clients, into flowd vs into a bare pyftpdlib server.

    .venv/bin/python benchmarks/ftp.py                                   # 500 x 1 MB, 8 clients, 3 rounds, README.md
    .venv/bin/python benchmarks/ftp.py --files 100 --rounds 1 --no-readme  # a quick iteration

Contenders, each a separate server process on a free loopback port, fresh for every round:
- bare pyftpdlib: a minimal pyftpdlib 2.2 `FTPServer` (the async one, as flowd's), `DummyAuthorizer`
  with one user, writing into an empty folder; pyftpdlib's logger at WARNING, as flowd sets it (its
  default logs every command).
- flowd: `flowd run -c flowd.toml` on a fresh site (SQLite, local storage "lake" with fsync on, hot folder
  "inbox" with stable_seconds = 0 and after = delete, 4 workers, `[ftp] listen = "127.0.0.1:0"`, one
  group landing in inbox, one user added with `flowd ftp-user add`), and one rule
  `move: {to: "lake:assets/{name}"}`. Its FTP server is the daemon's child process; the port is read from
  var/ftp.json. flowd's `226` means the upload is checked, attributed and under its final name (its job is queued
  a few milliseconds later).

Client load (this script, the same for both): N threads, each with one ftplib connection logged in before
the clock starts; together, from a shared queue, they upload M distinct files (`STOR bench_NNNNN.bin`) of
S random bytes each (slices of one random buffer, so no two are alike; generated once, in memory).
Throughput: bytes / (last 226 - first STOR). For flowd, per file, the client's time.time() when
`storbinary` returned (226 received) is compared with the database afterwards: *stored* is the
`steps.done` of the job's move step (journalled once the output is durably in the lake), *finished* is
`jobs.updated` (the job done: the source removed, its trace committed). Both are epoch times of the same
clock on the same machine; a negative figure means a worker stored the file before the client thread
got to record its 226 (8 client threads share one GIL).

Checked after each run: every upload present with the right size (bare: in its folder; flowd: in
lake/assets, the hot folder empty, exactly M jobs, all done/finished, one per name), a sample's bytes.
Peak RSS is the sum of the server's process tree (flowd: the daemon and its FTP child) sampled every
50 ms with psutil; server CPU s is the tree's user + system time during the load (flowd: until every job
is done). Rounds alternate the order of the contenders; the table shows each one's median round, the
latency percentiles are over every round's uploads together.
Run folders are under benchmarks/work/ftp/, removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run.py is a sibling module
    sys.path.insert(0, str(HERE))

from run import PY, ROOT, WORK, flowd_config, flowd_digest, machine_info, tail, write_section  # noqa: E402

BASE = WORK / "ftp"
README = ROOT / "README.md"
MARK_START = "<!-- bench:ftp:start -->"
MARK_END = "<!-- bench:ftp:end -->"
USER, PASSWORD = "bench", "bench-horse-battery-1"
GROUP = "uploaders"
WORKERS = 4  # flowd's default
BLOCKSIZE = 256 * 1024  # the clients' storbinary block size
SAMPLE = 20
TARGETS = {"x_bare": 0.85, "p99_ms": 150.0}
FLOWD = Path(PY).parent / "flowd"

BARE_SERVER = """
import json, logging, os, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
root, state, user, password = sys.argv[1:5]
logging.basicConfig(level=logging.WARNING)
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
auth = DummyAuthorizer()
auth.add_user(user, password, root, perm="elradfmwMT")
class Handler(FTPHandler):
    pass
Handler.authorizer = auth
server = FTPServer(("127.0.0.1", 0), Handler)
tmp = state + ".tmp"
with open(tmp, "w") as fh:
    json.dump({"port": server.address[1]}, fh)
os.replace(tmp, state)
server.serve_forever(timeout=1.0, handle_exit=True)
"""


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B")
    units = {"K": 1000, "M": 1000**2, "G": 1000**3, "KI": 1024, "MI": 1024**2, "GI": 1024**3}
    for suffix in sorted(units, key=len, reverse=True):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * units[suffix])
    return int(t)


# -- the payload ------------------------------------------------------------------------------------
class Payload:
    """M distinct files of S bytes: file i is buffer[i * STRIDE : i * STRIDE + S] of one random buffer."""

    STRIDE = 64

    def __init__(self, files: int, size: int) -> None:
        self.files, self.size = files, size
        self.buffer = memoryview(os.urandom(size + files * self.STRIDE))
        self.names = [f"bench_{i:05d}.bin" for i in range(files)]

    def data(self, i: int) -> memoryview:
        return self.buffer[i * self.STRIDE: i * self.STRIDE + self.size]

    def sha256(self, i: int) -> str:
        return hashlib.sha256(self.data(i)).hexdigest()


class Reader:
    """A file-like view of a memoryview for storbinary (no copy of the whole file)."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> memoryview:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        out = self.data[self.pos: end]
        self.pos = end
        return out


# -- the load -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Load:
    start: float = 0.0  # first STOR (time.time())
    end: float = 0.0  # last 226
    sent: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (STOR, 226)
    errors: list[str] = field(default_factory=list)

    def reply_ms(self) -> list[float]:
        return [(t1 - t0) * 1000 for t0, t1 in self.sent.values()]


def upload(port: int, payload: Payload, clients: int) -> Load:
    import ftplib

    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(payload.files):
        work.put(i)
    barrier = threading.Barrier(clients + 1)
    load = Load()
    lock = threading.Lock()

    def client() -> None:
        ftp: ftplib.FTP | None = None
        try:
            ftp = ftplib.FTP(timeout=60)
            ftp.connect("127.0.0.1", port)
            ftp.login(USER, PASSWORD)
        except Exception as exc:  # noqa: BLE001
            with lock:
                load.errors.append(f"login: {exc!r}")
            ftp = None
        barrier.wait()
        if ftp is None:
            return
        mine: dict[str, tuple[float, float]] = {}
        try:
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    break
                name = payload.names[i]
                t0 = time.time()
                try:
                    reply = ftp.storbinary(f"STOR {name}", Reader(payload.data(i)), blocksize=BLOCKSIZE)
                except ftplib.Error as exc:
                    with lock:
                        load.errors.append(f"{name}: {exc}")
                    continue
                t1 = time.time()
                if not reply.startswith("226"):
                    with lock:
                        load.errors.append(f"{name}: {reply}")
                mine[name] = (t0, t1)
        except Exception as exc:  # noqa: BLE001
            with lock:
                load.errors.append(f"client: {exc!r}")
        finally:
            with lock:
                load.sent.update(mine)
            try:
                ftp.quit()
            except Exception:  # noqa: BLE001
                ftp.close()

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    if load.sent:
        load.start = min(t0 for t0, _ in load.sent.values())
        load.end = max(t1 for _, t1 in load.sent.values())
    return load


# -- watching the server process tree ------------------------------------------------------------------
class Watch:
    """Peak RSS (sum over the process tree, psutil every 50 ms) and CPU seconds of a server's tree."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self.cpu0 = self.cpu()

    def procs(self) -> list:  # type: ignore[type-arg]
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        import psutil

        total = 0.0
        for p in self.procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def sample(self) -> None:
        import psutil

        rss = 0
        for p in self.procs():
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, rss)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.sample()

    def __enter__(self) -> Watch:
        self.cpu0 = self.cpu()
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self.cpu_used = self.cpu() - self.cpu0
        self.stop.set()
        self.thread.join()


# -- servers --------------------------------------------------------------------------------------------
def wait_port(state: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            port = int(json.loads(state.read_text())["port"])
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.recv(256)  # the banner: the server answers
            return port
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise RuntimeError(f"no port in {state} after {timeout} s:\n{tail(log)}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM by PID, then SIGKILL (and the children we know of) if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    for child in children:
        try:
            child.wait(5)
        except psutil.TimeoutExpired:
            child.kill()
        except psutil.Error:
            pass


# run.py's site (SQLite, local storage "lake" with fsync, hot folder "inbox"), with stable_seconds = 0 and
# one FTP group landing in the inbox.
FLOWD_CONFIG = "# Generated by benchmarks/ftp.py from run.py's site\n" + flowd_config(0, WORKERS).split("\n", 1)[1] + f"""
[ftp]
listen = "127.0.0.1:0"

[[ftp.groups]]
name = "{GROUP}"
tenant = "default"
hotfolder = "inbox"
"""

FLOWD_RULES = """\
# Generated by benchmarks/ftp.py
rules:
  - name: to-the-lake
    on: [{hotfolder: inbox}]
    do:
      - move: {to: "lake:assets/{name}"}
"""


def flowd_cmd(*args: str) -> list[str]:
    return [str(FLOWD), *args] if FLOWD.exists() else [PY, "-m", "flowd", *args]


@dataclass(slots=True)
class Run:
    name: str
    files: int
    nbytes: int
    seconds: float
    peak_rss: int
    cpu: float
    problems: list[str]
    latency: dict[str, list[float]] = field(default_factory=dict)  # stored | finished -> ms per file
    reply: list[float] = field(default_factory=list)  # ms from STOR to 226, per file

    @property
    def mbs(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def rate(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def run_bare(site: Path, payload: Payload, clients: int) -> Run:
    root = site / "root"
    root.mkdir(parents=True)
    state, log = site / "port.json", site / "server.log"
    proc = None
    try:
        with open(log, "wb") as fh:
            proc = subprocess.Popen([PY, "-c", BARE_SERVER, str(root), str(state), USER, PASSWORD],
                                    cwd=site, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        port = wait_port(state, proc, log)
        with Watch(proc.pid) as watch:
            load = upload(port, payload, clients)
        problems = list(load.errors[:5])
        problems += check_files(root, payload, load)
        if proc.poll() is not None:
            problems.append(f"the server died ({proc.returncode}):\n{tail(log)}")
    finally:
        stop(proc)
    return Run("bare pyftpdlib", len(load.sent), len(load.sent) * payload.size, load.end - load.start,
               watch.peak, watch.cpu_used, problems, reply=load.reply_ms())


PAUSED = "flowd, daemon paused (the FTP front alone)"


def run_flowd(site: Path, payload: Payload, clients: int, timeout: float, paused: bool = False) -> Run:
    (site / "rules").mkdir(parents=True)
    (site / "hot" / "inbox").mkdir(parents=True)
    (site / "rules" / "bench.yaml").write_text(FLOWD_RULES)
    config = site / "flowd.toml"
    config.write_text(FLOWD_CONFIG)
    log = site / "flowd.log"
    subprocess.run(flowd_cmd("ftp-user", "add", USER, "--group", GROUP, "--password-stdin", "-c", str(config)),
                   cwd=site, input=(PASSWORD + "\n").encode(), check=True, capture_output=True)
    proc = None
    try:
        with open(log, "wb") as fh:
            proc = subprocess.Popen(flowd_cmd("run", "-c", str(config)), cwd=site, stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        port = wait_port(site / "var" / "ftp.json", proc, log)
        db = site / "var" / "flowd.db"
        with Watch(proc.pid) as watch:
            if paused:  # the daemon (workers, watcher) stopped: its FTP child alone takes and queues the uploads
                os.kill(proc.pid, signal.SIGSTOP)
            try:
                load = upload(port, payload, clients)
            finally:
                if paused:
                    os.kill(proc.pid, signal.SIGCONT)
            wait_done(db, len(load.sent), proc, log, timeout)
        problems = list(load.errors[:5])
        latency, more = flowd_latency(db, load)
        problems += more
        problems += check_files(site / "lake" / "assets", payload, load)
        left = sorted(p.name for p in (site / "hot" / "inbox").rglob("*") if p.is_file())
        if left:
            problems.append(f"{len(left)} files left in the hot folder, e.g. {left[0]}")
        if proc.poll() is not None:
            problems.append(f"flowd died ({proc.returncode}):\n{tail(log)}")
    finally:
        stop(proc)
    return Run(PAUSED if paused else "flowd", len(load.sent), len(load.sent) * payload.size, load.end - load.start,
               watch.peak, watch.cpu_used, problems, {} if paused else latency, load.reply_ms())


def done_count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("select count(*) from jobs where state in ('done', 'quarantined')").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def wait_done(db: Path, n: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done_count(db) >= n:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"flowd exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"only {done_count(db)} of {n} jobs done after {timeout:.0f} s:\n{tail(log)}")


def flowd_latency(db: Path, load: Load) -> tuple[dict[str, list[float]], list[str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        states = dict(con.execute("select state || '/' || coalesce(status, ''), count(*) from jobs group by 1"))
        rows = con.execute("select j.relpath, j.updated, max(s.done), count(s.step) from jobs j "
                           "left join steps s on s.job_id = j.id where j.state = 'done' group by j.id").fetchall()
    finally:
        con.close()
    problems = []
    n = len(load.sent)
    if states != {"done/finished": n}:
        problems.append(f"jobs by state/status: {states}, expected {{'done/finished': {n}}}")
    seen: dict[str, int] = {}
    stored, finished = [], []
    for relpath, updated, step_done, steps in rows:
        seen[relpath] = seen.get(relpath, 0) + 1
        if relpath not in load.sent:
            continue
        if steps != 1 or step_done is None:
            problems.append(f"{relpath}: {steps} journalled steps, expected 1")
            continue
        t226 = load.sent[relpath][1]
        stored.append((step_done - t226) * 1000)
        finished.append((updated - t226) * 1000)
    twice = [k for k, v in seen.items() if v > 1]
    if twice:
        problems.append(f"{len(twice)} names processed more than once, e.g. {twice[0]}")
    missing = sorted(set(load.sent) - set(seen))
    if missing:
        problems.append(f"{len(missing)} uploads without a done job, e.g. {missing[0]}")
    return {"stored": stored, "finished": finished}, problems


def check_files(folder: Path, payload: Payload, load: Load) -> list[str]:
    problems = []
    if len(load.sent) != payload.files:
        problems.append(f"{payload.files - len(load.sent)} of {payload.files} uploads not confirmed")
    got = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    want = set(payload.names)
    missing = sorted(want - set(got))
    if missing:
        problems.append(f"{len(missing)} of {len(want)} files missing in {folder.name}, e.g. {missing[0]}")
    extra = sorted(set(got) - want)
    if extra:
        problems.append(f"{len(extra)} unexpected files in {folder.name}, e.g. {extra[0]}")
    wrong = [n for n in want if n in got and got[n] != payload.size]
    if wrong:
        problems.append(f"{len(wrong)} files with the wrong size, e.g. {wrong[0]}")
    step = max(1, payload.files // SAMPLE)
    bad = [payload.names[i] for i in range(0, payload.files, step) if payload.names[i] in got
           and hashlib.sha256((folder / payload.names[i]).read_bytes()).hexdigest() != payload.sha256(i)]
    if bad:
        problems.append(f"{len(bad)} sampled files with the wrong bytes, e.g. {bad[0]}")
    return problems


# -- report -----------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank (p99 of 500 is the 495th smallest)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))
    return s[int(k)]


def median_run(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.ok] or runs
    return sorted(ok, key=lambda r: r.seconds)[len(ok) // 2]


def table(medians: dict[str, Run], rounds: dict[str, list[Run]]) -> str:
    bare = medians.get("bare pyftpdlib")
    lines = ["| contender | files | seconds | MB/s | files/s | x bare | MB/s per round | STOR to 226 p50 / p99 ms | "
             "server CPU s | peak RSS MB | ok |", "|---|" + "---:|" * 9 + "---|"]
    for name, r in medians.items():
        ratio = f"{r.mbs / bare.mbs:.2f}" if bare and bare.mbs else "-"
        per = ", ".join(f"{x.mbs:.0f}" for x in rounds[name])
        all_ok = all(x.ok for x in rounds[name])
        lines.append(f"| {name} | {r.files:,} | {r.seconds:.2f} | {r.mbs:,.1f} | {r.rate:,.0f} | {ratio} | {per} | "
                     f"{pct(r.reply, 50):.0f} / {pct(r.reply, 99):.0f} | {r.cpu:.1f} | {max(x.peak_rss for x in rounds[name]) / 1e6:.0f} | "
                     f"{'yes' if all_ok else 'NO'} |")
    return "\n".join(lines)


def latency_table(runs: list[Run]) -> str:
    lines = ["| flowd, ms after 226 | uploads | p50 | p95 | p99 | max | min |", "|---|" + "---:|" * 6]
    for key, label in (("stored", "stored (move step journalled)"), ("finished", "finished (job done)")):
        for n, r in enumerate(runs):
            v = r.latency.get(key, [])
            lines.append(f"| {label}, round {n + 1} | {len(v)} | {pct(v, 50):.0f} | {pct(v, 95):.0f} | "
                         f"{pct(v, 99):.0f} | {max(v, default=float('nan')):.0f} | {min(v, default=float('nan')):.0f} |")
        v = [x for r in runs for x in r.latency.get(key, [])]
        lines.append(f"| **{label}, all rounds** | {len(v)} | {pct(v, 50):.0f} | {pct(v, 95):.0f} | "
                     f"**{pct(v, 99):.0f}** | {max(v, default=float('nan')):.0f} | {min(v, default=float('nan')):.0f} |")
    return "\n".join(lines)


def verdicts(medians: dict[str, Run], flowd_runs: list[Run]) -> list[str]:
    out = []
    bare, flowd = medians.get("bare pyftpdlib"), medians.get("flowd")
    ok = all(r.ok for r in flowd_runs)
    if bare and flowd and bare.mbs:
        x = flowd.mbs / bare.mbs
        out.append(f"flowd's upload throughput {x:.2f} x the bare server's (medians, {flowd.mbs:.1f} vs "
                   f"{bare.mbs:.1f} MB/s; target >= {TARGETS['x_bare']:g} x): "
                   + ("MET" if x >= TARGETS["x_bare"] and ok else "NOT MET"))
    stored = [x for r in flowd_runs for x in r.latency.get("stored", [])]
    if stored:
        p99 = pct(stored, 99)
        out.append(f"p99 from `226 Transfer complete` to the asset stored {p99:.0f} ms over {len(stored):,} uploads "
                   f"(target <= {TARGETS['p99_ms']:g} ms): " + ("MET" if p99 <= TARGETS["p99_ms"] and ok else "NOT MET"))
    return out


def results_markdown(args: argparse.Namespace, medians: dict[str, Run], rounds: dict[str, list[Run]],
                     info: dict[str, str]) -> str:
    cmd = (f"benchmarks/ftp.py --files {args.files} --size {args.size} --clients {args.clients} "
           f"--rounds {args.rounds}")
    flowd_runs = rounds.get("flowd", [])
    parts = [f"Run {info['date']} on flowd {info['code']} with `{cmd}`.", "",
             f"Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}, {info['filesystem']} under "
             f"benchmarks/work; {info['python']}; pyftpdlib {info.get('pyftpdlib', '?')}; {info['load']} at the end. "
             "The clients (one Python process, "
             f"{args.clients} threads) and the servers share these cores; the machine may be shared with other "
             "jobs, so wall times vary from round to round.", "",
             f"**{args.files:,} uploads of {parse_size(args.size) / 1e6:g} MB, {args.clients} concurrent clients, "
             "loopback.**", "", table(medians, rounds), "",
             "- bare pyftpdlib: a minimal `FTPServer` (async), `DummyAuthorizer`, one user, writes into a folder; "
             "logging at WARNING (as flowd sets it).",
             f"- flowd: `flowd run`, {WORKERS} workers, SQLite, local storage with fsync, one rule "
             "`move: {to: \"lake:assets/{name}\"}`; its FTP server is the daemon's child; 226 once the upload "
             "is checked, attributed and under its final name. Server CPU s includes processing every upload into the lake.",
             f"- {PAUSED}: the same, with the daemon stopped (SIGSTOP) during the uploads and resumed after: "
             "what the FTP server itself costs, without the workers processing the uploads on the same two cores "
             "(its server CPU includes that processing, after the uploads).",
             "- seconds: first STOR to last 226; the median round by seconds; peak RSS the highest of the rounds "
             "(the sum over the server's process tree); STOR to 226: each upload's time as its client saw it. "
             "The bare server only puts the bytes in the page cache; flowd also makes them durable (fsync) "
             "before a job is done. The contenders' files are removed and the file "
             "system synced between runs.", "",
             "**flowd latency, per upload, from the client's 226 to the asset stored and to the job finished.**", "",
             latency_table(flowd_runs), ""]
    for name, runs in rounds.items():
        for n, r in enumerate(runs):
            for p in r.problems:
                parts.append(f"- **{name} round {n + 1} problem:** " + p.replace("\n", " / ")[:600])
    parts += ["Targets:", ""] if parts[-1] == "" else ["", "Targets:", ""]
    parts += [f"- {v}" for v in verdicts(medians, flowd_runs)] + [""]
    return "\n".join(parts).rstrip() + "\n"


def show(r: Run) -> None:
    lat = ""
    if r.latency.get("stored"):
        v = r.latency["stored"]
        lat = f", 226->stored p50 {pct(v, 50):.0f} p99 {pct(v, 99):.0f} max {max(v):.0f} ms"
    print(f"  {r.name}: {r.files} files in {r.seconds:.2f} s, {r.mbs:.1f} MB/s, {r.rate:.0f} files/s, "
          f"STOR->226 p50 {pct(r.reply, 50):.0f} ms, "
          f"server CPU {r.cpu:.1f} s, peak RSS {r.peak_rss / 1e6:.0f} MB{lat}"
          + ("" if r.ok else "  PROBLEMS:\n    " + "\n    ".join(r.problems)), flush=True)


# -- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=500, help="uploads per run (default %(default)s)")
    p.add_argument("--size", default="1MB", help="bytes per upload: 1MB = 10^6, 1MiB = 2^20 (default %(default)s)")
    p.add_argument("--clients", type=int, default=8, help="concurrent FTP clients (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each contender's median kept (default %(default)s)")
    p.add_argument("--only", choices=["bare", "flowd", "paused"], help="run one contender only (README left alone)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for flowd's jobs (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the run folders in benchmarks/work/ftp/")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the FTP section of README.md")
    args = p.parse_args(argv)
    size = parse_size(args.size)
    if min(args.files, args.clients, args.rounds, size) < 1:
        p.error("files, clients, rounds and size must be at least 1")
    try:
        import psutil  # noqa: F401
        import pyftpdlib
    except ImportError as exc:
        raise SystemExit(f"ftp.py: {exc}: install the bench extras into the venv (psutil) and flowd") from None

    digest = flowd_digest()
    compileall.compile_dir(ROOT / "flowd", quiet=1)  # as an installed flowd is (see adls.py)
    payload = Payload(args.files, size)
    contenders = ["bare", "flowd", "paused"] if args.only is None else [args.only]
    if BASE.exists():
        shutil.rmtree(BASE)
    BASE.mkdir(parents=True)
    rounds: dict[str, list[Run]] = {}
    try:
        for n in range(args.rounds):
            order = contenders if n % 2 == 0 else contenders[::-1]
            print(f"-- round {n + 1} of {args.rounds}: {', '.join(order)}", flush=True)
            for kind in order:
                site = BASE / f"{kind}-{n}"
                site.mkdir(parents=True)
                print(f"running {kind} ...", flush=True)
                if kind == "bare":
                    r = run_bare(site, payload, args.clients)
                else:
                    r = run_flowd(site, payload, args.clients, args.timeout, paused=kind == "paused")
                show(r)
                rounds.setdefault(r.name, []).append(r)
                if not args.keep:
                    shutil.rmtree(site, ignore_errors=True)
                os.sync()  # the next contender does not share this one's writeback (not timed)
        rounds = {k: rounds[k] for k in ("bare pyftpdlib", "flowd", PAUSED) if k in rounds}
        medians = {k: median_run(v) for k, v in rounds.items()}
        info = machine_info()
        info["pyftpdlib"] = pyftpdlib.__ver__
        if flowd_digest() != digest:
            info["code"] += " (flowd/ CHANGED while this ran)"
        body = results_markdown(args, medians, rounds, info)
        print("\n" + body)
        (BASE / "results.md").write_text(body)
        if not args.no_readme and args.only is None:
            write_section(body, MARK_START, MARK_END, README)
            print(f"wrote {README.relative_to(ROOT)}")
        return 1 if any(not r.ok for rs in rounds.values() for r in rs) else 0
    finally:
        if not args.keep:
            for site in BASE.glob("*-*"):
                shutil.rmtree(site, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
