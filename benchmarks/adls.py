#!/usr/bin/env python3
"""flowd upload benchmark: a big file and many small files into Azurite, flowd vs the Azure SDK directly.

    .venv/bin/python benchmarks/adls.py                                  # 1 GiB + 2,000 x 100 KiB, rewrites README.md
    .venv/bin/python benchmarks/adls.py --big-mib 64 --small 200 --no-readme   # a quick iteration

A fresh Azurite (blob service only, in memory; node_modules/.bin/azurite-blob, `make test` installs it)
on a free loopback port for each contender's run, started before and stopped after it (neither timed).
One Azurite for the whole run made every upload slower than the one before it (the same SDK upload of
1 GiB took 4.7 s, then 6.2 s, then 7.3 s in one Azurite, its containers deleted in between), which
penalised whichever contender ran later. Azurite's own memory grows with what is uploaded: only the
contenders' processes are measured, never Azurite's.

Inputs, cached in benchmarks/work/adls/inputs/ (a folder per size): one big file of random bytes (one
8 MiB os.urandom block written over and over, each copy stamped with its index, so no two blocks are
alike) and N small files of os.urandom bytes, all with old mtimes (flowd's startup scan takes them at once).

Contenders, each its own process, each into a fresh container:
- SDK direct: one Python process reading copies of the inputs staged exactly as flowd's are (copied,
  then os.sync), `BlobServiceClient.from_connection_string(...)` with flowd's own
  client options (flowd.storage.adls.client_options: max_block_size = max_single_put_size = 8 MiB), then
  `upload_blob(fh, length=..., max_concurrency=4, overwrite=False)` file after file; for the small files
  also thread pools of 4 and of 8 doing the same (the fastest SDK row is the one flowd is compared with).
- flowd, twice: `python -m flowd run --until-idle -c flowd.toml` over a hot folder with one rule,
  `[storage.cloud] kind = "adls"`, the connection string in an environment variable; the files are
  copied into the hot folder (mtimes kept) before it starts.
  - store: rule `store: {to: "cloud:CONTAINER/{relpath}"}`, hot folder after = keep. The same work as
    the SDK contender (upload every file, leave the sources): the row the target is judged on.
  - move: rule `move: {...}`, after = delete: also deletes every source once its upload is durable, as a
    hot folder usually does (on this ext4 with `discard`, unlinking 1 GiB costs 0.3-0.9 s by itself).
  Both with flowd's default 4 workers; for the small files also with 8 (workers = 8), matching the SDK's
  8-thread row. The target is judged on the faster store row against the fastest SDK row.
  flowd's modules are byte-compiled first, as `pip install` does (this machine sets
  PYTHONDONTWRITEBYTECODE, which would otherwise make every flowd start compile them again).

Checked after each: every blob exists with the right size, a sample (the big file, and 20 small files)
downloaded has the right sha256; for flowd also every job done/finished, and the hot folder empty
(move) or untouched (store).
Timing and memory with run.py's `measure` (spawn to exit; peak RSS the larger of 10 ms psutil samples of
the process tree and wait4's ru_maxrss), run from a small helper process (`--measure-child`) so this
script's own high-water mark does not leak into a contender's ru_maxrss (see images.py).
Each round runs every contender once, in an order that rotates from round to round, and each run's staged
copies are removed as it ends: with a fixed order and copies kept to the end of the round, flowd (always
last) measured ~2 s slower per GiB than when the same runs were rotated (the aftermath of the previous
1 GiB run: freed memory, discarded blocks). --rounds N keeps each contender's median.
Run folders are under benchmarks/work/adls/runs/, removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run.py is a sibling module
    sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    MTIME_FROM,
    PY,
    README,
    ROOT,
    WORK,
    Measured,
    Run,
    flowd_config,
    flowd_digest,
    machine_info,
    measure_clean,
    median_run,
    tail,
    write_section,
)

BASE = WORK / "adls"
INPUTS = BASE / "inputs"
RUNS = BASE / "runs"
MARK_START = "<!-- adls:start -->"
MARK_END = "<!-- adls:end -->"
CONN_ENV = "BENCH_ADLS_CONNECTION"  # the variable flowd's config names (Azurite's well-known dev account)
BLOCK = 8 * 1024 * 1024  # flowd's default block_size (flowd/config.py AdlsStorageSpec)
CONCURRENCY = 4  # flowd's default max_concurrency
WORKERS = 4  # flowd's default workers, and the SDK's thread pool
MORE = 8  # small files also with 8 of each: uploads are latency-bound, more in flight hides each job's own time
SAMPLE = 20
TARGETS = {"x_sdk": 0.9, "big_rss_mb": 150.0}


# -- inputs ---------------------------------------------------------------------------------------
def big_input(mib: int) -> Path:
    folder = INPUTS / f"big-{mib}m"
    path, stamp = folder / f"big_{mib}m.bin", folder / "ready"
    if stamp.exists() and path.is_file() and path.stat().st_size == mib * 2**20:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    print(f"writing {mib:,} MiB to {path.relative_to(ROOT)} ...", flush=True)
    t = time.perf_counter()
    block = bytearray(os.urandom(BLOCK))
    with open(path, "wb") as fh:
        left = mib * 2**20
        i = 0
        while left > 0:
            block[:8] = i.to_bytes(8, "little")  # every 8 MiB block differs
            n = min(left, BLOCK)
            fh.write(memoryview(block)[:n])
            left -= n
            i += 1
    os.utime(path, (MTIME_FROM, MTIME_FROM))
    stamp.write_text("ok")
    print(f"  done in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def small_inputs(n: int, kib: int) -> list[Path]:
    """The first n files of a folder per size; a larger n extends it."""
    folder = INPUTS / f"small-{kib}k"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "ready"
    ready = int(stamp.read_text()) if stamp.exists() else 0
    paths = [folder / f"f{i // 1000:02d}" / f"small_{i:05d}.bin" for i in range(n)]
    if ready < n:
        print(f"writing {n - ready:,} files of {kib} KiB to {folder.relative_to(ROOT)} ...", flush=True)
        for i in range(ready, n):
            paths[i].parent.mkdir(exist_ok=True)
            paths[i].write_bytes(os.urandom(kib * 1024))
            os.utime(paths[i], (MTIME_FROM + i, MTIME_FROM + i))
        stamp.write_text(str(n))
    return paths


def stage(files: list[Path], root: Path, dst: Path) -> None:
    """Copies (mtimes kept) into dst, relative paths under root kept, flushed before the contender starts."""
    for p in files:
        out = dst / p.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, out)
    os.sync()


# -- the SDK contender (a child process) ----------------------------------------------------------------
def sdk_child(container: str, listing: str, threads: str) -> int:
    """Upload every file of the listing (root, then relative paths) with the SDK, as flowd's client would."""
    from azure.storage.blob import BlobServiceClient

    from flowd.storage.adls import client_options

    lines = Path(listing).read_text().splitlines()
    root, names = Path(lines[0]), lines[1:]
    service = BlobServiceClient.from_connection_string(os.environ[CONN_ENV], **client_options(BLOCK))
    client = service.get_container_client(container)
    client.create_container()

    def upload(name: str) -> None:
        with open(root / name, "rb") as fh:
            client.upload_blob(name, fh, length=os.fstat(fh.fileno()).st_size, max_concurrency=CONCURRENCY,
                               overwrite=False)

    if int(threads) > 1:
        with ThreadPoolExecutor(int(threads)) as pool:
            for _ in pool.map(upload, names):
                pass
    else:
        for name in names:
            upload(name)
    return 0


# -- measuring ------------------------------------------------------------------------------------
def measured(cmd: list[str], cwd: Path, log: Path, conn: str) -> Measured:
    """One contender, measured from run.py's small helper process, with the connection string set."""
    return measure_clean([(cmd, cwd, log)], RUNS, **{CONN_ENV: conn})[0]


# -- checks -------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


def check_blobs(service: object, container: str, files: list[Path], root: Path) -> list[str]:
    """Every file a blob of the same size under its relative path, nothing else; a sample's sha256."""
    from azure.core.exceptions import ResourceNotFoundError

    client = service.get_container_client(container)  # type: ignore[attr-defined]
    want = {p.relative_to(root).as_posix(): p for p in files}
    try:
        got = {b.name: b.size for b in client.list_blobs()}
    except ResourceNotFoundError:
        return [f"no container {container}"]
    problems = []
    missing = sorted(set(want) - set(got))
    if missing:
        problems.append(f"{len(missing)} of {len(want)} blobs missing, e.g. {missing[0]}")
    extra = sorted(set(got) - set(want))
    if extra:
        problems.append(f"{len(extra)} unexpected blobs, e.g. {extra[0]}")
    wrong = [n for n in want if n in got and got[n] != want[n].stat().st_size]
    if wrong:
        problems.append(f"{len(wrong)} blobs with the wrong size, e.g. {wrong[0]} ({got[wrong[0]]} bytes)")
    present = sorted(n for n in want if n in got)
    sample = present if len(present) <= SAMPLE else random.Random(7).sample(present, SAMPLE)
    bad = []
    for name in sample:
        h = hashlib.sha256()
        for chunk in client.get_blob_client(name).download_blob(max_concurrency=CONCURRENCY).chunks():
            h.update(chunk)
        if h.hexdigest() != sha256_file(want[name]):
            bad.append(name)
    if bad:
        problems.append(f"{len(bad)} of {len(sample)} sampled blobs with the wrong bytes, e.g. {bad[0]}")
    return problems


def check_flowd_db(db: Path, n: int) -> list[str]:
    import sqlite3

    if not db.exists():
        return [f"no database at {db}"]
    con = sqlite3.connect(db)
    try:
        states = dict(con.execute("select state || '/' || coalesce(status, ''), count(*) from jobs group by 1"))
    finally:
        con.close()
    return [] if states == {"done/finished": n} else [f"jobs by state/status: {states}, expected {{'done/finished': {n}}}"]


def drop_container(service: object, container: str) -> None:
    """Free Azurite's memory once a run is checked."""
    try:
        service.delete_container(container)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass


# -- contenders ---------------------------------------------------------------------------------------
def run_sdk(name: str, files: list[Path], root: Path, container: str, threads: int, site: Path,
            conn: str, service: object) -> Run:
    site.mkdir(parents=True, exist_ok=True)
    # The SDK reads copies made the way flowd's hot folder gets its files (copied, then synced): reading
    # a file just written measured up to a second slower per GiB than re-reading the cached original.
    staged = site / "src"
    stage(files, root, staged)
    listing = site / "files.txt"
    listing.write_text(str(staged) + "\n" + "".join(p.relative_to(root).as_posix() + "\n" for p in files))
    log = site / "sdk.log"
    m = measured([PY, str(Path(__file__).resolve()), "--sdk-child", container, str(listing), str(threads)],
                      ROOT, log, conn)
    problems = [] if m.status == 0 else [f"{name} exited with {m.status}:\n{tail(log)}"]
    problems += check_blobs(service, container, files, root)
    drop_container(service, container)
    how = "file after file" if threads == 1 else f"a thread pool of {threads}"
    note = (f"one Python process, `upload_blob(fh, length=..., max_concurrency={CONCURRENCY}, overwrite=False)`, "
            f"{how}; client options as flowd's (8 MiB blocks, single put up to 8 MiB)")
    return Run(name, len(files), m.wall, m.peak_rss, m.cpu, not problems, problems, note, m.others)


FLOWD_STORAGE = f"""
[storage.cloud]
kind = "adls"
connection_string_env = "{CONN_ENV}"
create_containers = true
max_concurrency = {CONCURRENCY}
block_size = {BLOCK}
"""


FLOWD_ROWS = {"store": "flowd, store (uploads only, as the SDK does)",
              "move": "flowd, move (uploads, then deletes each source)"}


def flowd_row(action: str, workers: int) -> str:
    name = FLOWD_ROWS[action]
    return name if workers == WORKERS else name.replace("flowd,", f"flowd ({workers} workers),", 1)


def run_flowd(files: list[Path], root: Path, container: str, site: Path, conn: str, service: object,
              action: str = "move", workers: int = WORKERS) -> Run:
    (site / "rules").mkdir(parents=True, exist_ok=True)
    hot = site / "hot" / "inbox"
    hot.mkdir(parents=True, exist_ok=True)
    (site / "rules" / "bench.yaml").write_text(
        "# Generated by benchmarks/adls.py\nrules:\n  - name: to-the-lake\n    do:\n"
        f"      - {action}: {{to: \"cloud:{container}/{{relpath}}\"}}\n")
    config = site / "flowd.toml"
    text = flowd_config(2, workers).replace("benchmarks/run.py", "benchmarks/adls.py") + FLOWD_STORAGE
    if action == "store":  # the sources stay, as the SDK contender's do
        text = text.replace('after = "delete"', 'after = "keep"')
        assert 'after = "keep"' in text, "flowd_config no longer sets after = delete"
    config.write_text(text)
    stage(files, root, hot)
    log = site / "flowd.log"
    m = measured([PY, "-m", "flowd", "run", "--until-idle", "-c", str(config)], site, log, conn)
    problems = [] if m.status == 0 else [f"flowd exited with {m.status}:\n{tail(log)}"]
    left = sorted(str(p.relative_to(hot)) for p in hot.rglob("*") if p.is_file())
    if action == "move" and left:
        problems.append(f"{len(left)} files left in the hot folder, e.g. {left[0]}")
    if action == "store" and len(left) != len(files):
        problems.append(f"{len(files) - len(left)} sources gone from the hot folder; store keeps them")
    problems += check_flowd_db(site / "var" / "flowd.db", len(files))
    problems += check_blobs(service, container, files, root)
    drop_container(service, container)
    after = "keep" if action == "store" else "delete"
    note = (f"`flowd run --until-idle`, {workers} workers, SQLite, hot folder after = {after}, rule "
            f"`{action}: {{to: \"cloud:{container.rsplit('-', 1)[0]}-N/{{relpath}}\"}}`, storage max_concurrency "
            f"{CONCURRENCY}, block_size 8 MiB; includes start-up, the hot-folder scan and shutdown")
    return Run(flowd_row(action, workers), len(files), m.wall, m.peak_rss, m.cpu, not problems, problems, note, m.others)


def finish(r: Run, unit_bytes: int | None = None) -> Run:
    r.ok = not r.problems
    speed = f"{unit_bytes / 2**20 / r.seconds:,.1f} MiB/s" if unit_bytes and r.seconds else f"{r.rate:,.1f} files/s"
    print(f"  {r.name}: {r.seconds:.2f} s, {speed}, peak RSS {r.peak_rss / 2**20:.0f} MB, CPU {r.cpu:.1f} s, "
          f"others' load {r.others:.0%}" + ("" if r.ok else "  PROBLEMS:\n    " + "\n    ".join(r.problems)),
          flush=True)
    return r


@dataclass(slots=True)
class Case:
    key: str  # big | small
    title: str
    files: list[Path]
    root: Path
    total: int  # bytes
    runs: list[Run] = field(default_factory=list)

    def sdk_best(self) -> Run | None:
        sdk = [r for r in self.runs if r.name.startswith("SDK") and r.ok]
        return min(sdk, key=lambda r: r.seconds) if sdk else None

    def flowd(self) -> Run | None:
        """The row the target is judged on: the same work as the SDK's (uploads; sources stay), at the
        faster of the concurrencies measured (as the SDK's faster row is its reference)."""
        rows = [r for r in self.runs if r.name.startswith("flowd") and "store" in r.name and r.ok]
        return min(rows, key=lambda r: r.seconds) if rows else None


@contextmanager
def fresh_azurite(site: Path) -> Iterator[tuple[str, object]]:
    """A new, empty Azurite for one contender's run: (connection string, a BlobServiceClient for the checks)."""
    import azurite as emulator
    from azure.storage.blob import BlobServiceClient

    site.mkdir(parents=True, exist_ok=True)
    with emulator.running(site) as az:
        yield az.connection_string, BlobServiceClient.from_connection_string(az.connection_string)


def bench_case(case: Case, rounds: int) -> None:
    """Every contender once per round, in an order that rotates from round to round: whoever runs right
    after a 1 GiB run shares the machine with its aftermath (memory given back, blocks discarded), and a
    fixed order would always hand that to the same contender. Each run's staged copies go as it ends."""
    contenders: list[tuple[str, str, int]] = [("sdk", "SDK direct, sequential", 1)]
    if case.key == "small":
        contenders += [("sdk", f"SDK direct, {WORKERS} threads", WORKERS), ("sdk", f"SDK direct, {MORE} threads", MORE)]
    contenders += [("flowd", "store", WORKERS), ("flowd", "move", WORKERS)]
    if case.key == "small":
        contenders += [("flowd", "store", MORE), ("flowd", "move", MORE)]
    by_name: dict[str, list[Run]] = {}
    for n in range(rounds):
        order = contenders[n % len(contenders):] + contenders[:n % len(contenders)]
        print(f"-- {case.title} round {n + 1} of {rounds}", flush=True)
        base = RUNS / f"{case.key}-{n}"
        for i, (kind, name, threads) in enumerate(order):
            print(f"running {kind} {name} ...", flush=True)
            site = base / f"{kind}{i}"
            with fresh_azurite(base / f"azurite-{i}") as (conn, service):
                if kind == "sdk":
                    r = run_sdk(name, case.files, case.root, f"sdk{i}-{case.key}-{n}", threads, site, conn, service)
                else:
                    r = run_flowd(case.files, case.root, f"flowd-{name}{threads}-{case.key}-{n}", site, conn, service,
                                  name, threads)
            by_name.setdefault(r.name, []).append(finish(r, case.total if case.key == "big" else None))
            shutil.rmtree(site, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    order_of = [c[1] if c[0] == "sdk" else flowd_row(c[1], c[2]) for c in contenders]
    by_name = {k: by_name[k] for k in order_of if k in by_name}  # the table in the usual order
    case.runs = [median_run(rs) for rs in by_name.values()]


# -- report -------------------------------------------------------------------------------------------
def case_table(case: Case) -> str:
    best = case.sdk_best()
    big = case.key == "big"
    lines = [f"| contender | seconds | {'MiB/s' if big else 'files/s'} | {'' if big else 'MiB/s | '}x SDK | "
             "peak RSS MB | CPU s | others' load | ok |",
             "|---|" + "---:|" * (6 if big else 7) + "---|"]
    for r in case.runs:
        mibs = case.total / 2**20 / r.seconds if r.seconds else 0
        ratio = f"{best.seconds / r.seconds:.2f}" if best and r.seconds else "-"
        mark = " (the SDK reference)" if r is best and len(case.runs) > 2 else \
            " (judged)" if r is case.flowd() and len(case.runs) > 3 else ""
        cols = [r.name + mark, f"{r.seconds:.2f}"]
        cols += [f"{mibs:,.1f}"] if big else [f"{r.rate:,.1f}", f"{mibs:,.1f}"]
        cols += [ratio, f"{r.peak_rss / 2**20:.0f}", f"{r.cpu:.1f}", f"{r.others:.0%}", "yes" if r.ok else "NO"]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def verdicts(cases: list[Case]) -> list[str]:
    out = []
    for case in cases:
        flowd, best = case.flowd(), case.sdk_best()
        ok = bool(flowd and flowd.ok)
        if flowd and best and flowd.seconds:
            x = best.seconds / flowd.seconds
            out.append(f"{case.title}: flowd's throughput {x:.2f} x the SDK's ({flowd.name} vs {best.name}; target >= "
                       f"{TARGETS['x_sdk']:g} x): " + ("MET" if x >= TARGETS["x_sdk"] and ok else "NOT MET"))
        else:
            out.append(f"{case.title}: flowd >= {TARGETS['x_sdk']:g} x the SDK's throughput: not measured")
        if case.key == "big" and flowd:
            mb = flowd.peak_rss / 2**20
            out.append(f"{case.title}: flowd's peak RSS {mb:.0f} MB (target <= {TARGETS['big_rss_mb']:g} MB): "
                       + ("MET" if mb <= TARGETS["big_rss_mb"] and ok else "NOT MET"))
    return out


def results_markdown(args: argparse.Namespace, cases: list[Case], info: dict[str, str]) -> str:
    cmd = f"benchmarks/adls.py --big-mib {args.big_mib} --small {args.small} --small-kib {args.small_kib}" + \
        f" --rounds {args.rounds}"
    parts = [f"Run {info['date']} on flowd {info['code']} with `{cmd}`.", "",
             f"Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}, {info['filesystem']} under "
             f"benchmarks/work; {info['python']}; {info.get('tools', '?')}; {info['load']} at the end. "
             "Azurite (blob, in memory) runs on the same machine and shares its cores; each contender's run "
             "gets a fresh one (in one shared Azurite every upload was slower than the one before it, which "
             "penalised whoever ran later); its own memory is not "
             f"counted. Peak RSS is measured from a small helper process (floor: {info.get('rss_floor', '?')}, "
             "what `/bin/true` measures).", ""]
    for case in cases:
        parts += [f"**{case.title}.**", "", case_table(case), ""]
        for r in case.runs:
            if r.note:
                parts.append(f"- {r.name}: {r.note}")
            for p in r.problems:
                parts.append(f"- **{r.name} problem:** " + p.replace("\n", " / ")[:600])
        if case.key == "small":
            parts.append(f"- x SDK compares with the fastest SDK row (to be strict); the target is judged on the faster "
                         f"flowd store row. Both sides also ran with {MORE} in flight: small uploads are latency-bound, "
                         f"and {WORKERS} flowd workers each spend part of every cycle on the job's own bookkeeping.")
        parts.append("")
    parts += ["Checked after each run: every blob present under its relative path with the right size and "
              f"nothing else in the container; the sha256 of up to {SAMPLE} downloaded blobs (the big file "
              "included) equals the source's; for flowd, the hot folder empty and every job done/finished.", ""]
    parts += ["Targets:", ""] + [f"- {v}" for v in verdicts(cases)] + [""]
    return "\n".join(parts).rstrip() + "\n"


def write_readme(body: str, readme: Path = README) -> None:
    write_section(body, MARK_START, MARK_END, readme)


def tool_versions() -> str:
    out = []
    try:
        from importlib.metadata import version
        out.append(f"azure-storage-blob {version('azure-storage-blob')}")
    except Exception:  # noqa: BLE001
        pass
    try:
        pkg = json.loads((ROOT / "node_modules" / "azurite" / "package.json").read_text())
        out.append(f"Azurite {pkg['version']}")
    except (OSError, ValueError, KeyError):
        pass
    return ", ".join(out) or "?"


# -- main ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--sdk-child"]:
        return sdk_child(*argv[1:4])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--big-mib", type=int, default=1024, help="size of the big file in MiB (default %(default)s)")
    p.add_argument("--small", type=int, default=2000, help="number of small files (default %(default)s)")
    p.add_argument("--small-kib", type=int, default=100, help="size of each small file in KiB (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each contender's median kept (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the run folders in benchmarks/work/adls/runs/")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the adls section of README.md")
    args = p.parse_args(argv)
    if min(args.big_mib, args.small, args.small_kib, args.rounds) < 1:
        p.error("sizes, counts and rounds must be at least 1")
    sys.path.insert(0, str(ROOT / "tests"))
    import azurite as emulator
    try:
        import azure.storage.blob  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"adls.py: {exc}: install the dev extras into the venv (azure-storage-blob, psutil)") from None
    if not emulator.available():
        raise SystemExit(f"adls.py: {emulator.AZURITE} not found: install it with `make test` (npm)")

    digest = flowd_digest()
    # flowd is measured as installed: pip byte-compiles a package when it installs it, but a checkout run
    # with PYTHONDONTWRITEBYTECODE (as on the machine these figures come from) would compile flowd's
    # sources again at every start, a cost no installed flowd pays and the SDK contender never pays.
    compileall.compile_dir(ROOT / "flowd", quiet=1)
    big = big_input(args.big_mib)
    small = small_inputs(args.small, args.small_kib)
    small_root = INPUTS / f"small-{args.small_kib}k"
    cases = [Case("big", f"One {args.big_mib:,} MiB file", [big], big.parent, big.stat().st_size),
             Case("small", f"{args.small:,} x {args.small_kib} KiB files", small, small_root,
                  args.small * args.small_kib * 1024)]
    if RUNS.exists():
        shutil.rmtree(RUNS)
    RUNS.mkdir(parents=True)
    try:
        for case in cases:
            bench_case(case, args.rounds)
        info = machine_info()
        info["tools"] = tool_versions()
        log = RUNS / "true.log"
        info["rss_floor"] = f"{measured(['/bin/true'], RUNS, log, '').peak_rss / 2**20:.0f} MB"
        if flowd_digest() != digest:
            info["code"] += " (flowd/ CHANGED while this ran)"
        body = results_markdown(args, cases, info)
        print("\n" + body)
        (BASE / "results.md").write_text(body)
        if not args.no_readme:
            write_readme(body)
            print(f"wrote {README.relative_to(ROOT)}")
        return 1 if any(not r.ok for c in cases for r in c.runs) else 0
    finally:
        if not args.keep:
            shutil.rmtree(RUNS, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
