#!/usr/bin/env python3
"""flowd purge benchmark: a sweep that deletes what is older than 30 days, against organize 3.3 and find.

    .venv/bin/python benchmarks/purge.py                     # 100,000 files, one round
    .venv/bin/python benchmarks/purge.py --files 10000       # a quick iteration
    .venv/bin/python benchmarks/purge.py --rounds 3 --write-readme

The tree: N small files (1-4 KB, `dNNN/fNNNNNN.jpg`, spread over 100 subfolders), deterministic (fixed
seed); a random half of them get an mtime 40 days ago (os.utime), the other half keep the time they were
written. Each contender gets its own freshly built tree (real files, no copies sharing inodes; `os.sync()`
afterwards, so nobody pays for writing back another's tree) and purges what is older than 30 days:

- find (the floor): `find DIR -mtime +30 -delete`;
- organize 3.3: `organize run CONFIG -F errorsonly`, one rule over the folder with `subfolders: true`,
  filter `lastmodified: {days: 30, mode: older}`, action `delete`;
- flowd: `flowd sweep purge -c CONFIG` (a fresh process: config and rules loading, its SQLite database
  created, the listing, a job and a trace per old file committed before the file is removed, the run's
  record and the summary table), a site config with the rule `over: {folder: data, recursive: true}`,
  `if: age > 30d`, `do: delete`.

Timing and memory with run.py's `measure`, from its small helper process (`measure_clean`): each
contender timed from spawn to exit, peak RSS the larger of psutil samples of the process tree every
10 ms and wait4's ru_maxrss (the helper's own high-water mark is the floor of that reading: what
`/bin/true` measures is printed with the results), CPU s its user + system time. files/s is the whole
folder (N listed) over the wall seconds, as the issue counts it.

Checked after each run: exactly the old files are gone and every fresh one is still there (a contender
that deletes a wrong file, or leaves an old one, fails the run and the exit status is 1); for flowd, exit
status 0 and its summary saying `deleted` for exactly the old ones. With several rounds the order of the
contenders rotates and the table shows each one's median round (peak RSS: the highest of all rounds).

Work folders are under benchmarks/work/purge/ (git-ignored), removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sqlite3
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run.py is a sibling module
    sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    PY,
    README,
    ROOT,
    WORK,
    Run,
    flowd_digest,
    machine_info,
    measure_clean,
    median_run,
    tail,
    write_section,
)

RUNS = WORK / "purge"
SEED = 20240630
SUBDIRS = 100
MIN_SIZE, MAX_SIZE = 1024, 4096
OLD_DAYS = 40  # the old half's age; the limit is 30 days
LIMIT_DAYS = 30
TARGETS = {"files_per_s_vs_organize": 5.0, "peak_rss_mb": 200.0}
MARK_START = "<!-- bench:purge:start -->"
MARK_END = "<!-- bench:purge:end -->"
CONTENDERS = ("find", "organize", "flowd")


# -- the tree -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tree:
    old: frozenset[str]  # relative paths older than the limit: must be deleted
    fresh: frozenset[str]  # must stay
    size: int  # bytes in all


def build_tree(folder: Path, n: int) -> Tree:
    """n files under `folder`, the same ones every time (fixed seed): a random half aged OLD_DAYS days."""
    rng = random.Random(SEED)
    pool = rng.randbytes(64 * 1024)
    old_idx = set(rng.sample(range(n), n // 2))
    old_ns = time.time_ns() - OLD_DAYS * 86400 * 10**9
    for d in range(min(SUBDIRS, n) or 1):
        (folder / f"d{d:03d}").mkdir(parents=True, exist_ok=True)
    old, fresh, total = [], [], 0
    for i in range(n):
        rel = f"d{i % SUBDIRS:03d}/f{i:06d}.jpg"
        size = rng.randint(MIN_SIZE, MAX_SIZE)
        start = rng.randrange(len(pool) - size)
        fd = os.open(folder / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, pool[start:start + size])
            if i in old_idx:
                os.utime(fd, ns=(old_ns, old_ns))
        finally:
            os.close(fd)
        (old if i in old_idx else fresh).append(rel)
        total += size
    os.sync()
    return Tree(frozenset(old), frozenset(fresh), total)


def files_in(folder: Path) -> set[str]:
    out = set()
    for dirpath, _dirs, names in os.walk(folder):
        base = os.path.relpath(dirpath, folder)
        for name in names:
            out.add(name if base == "." else f"{base}/{name}")
    return out


def check_tree(tree: Tree, folder: Path) -> tuple[int, list[str]]:
    """(files deleted, problems): the old ones must be gone, every fresh one still there, nothing else."""
    left = files_in(folder)
    problems = []
    kept_old = tree.old & left
    lost_fresh = tree.fresh - left
    strangers = left - tree.old - tree.fresh
    if kept_old:
        problems.append(f"{len(kept_old):,} of {len(tree.old):,} old files NOT deleted, e.g. {min(kept_old)}")
    if lost_fresh:
        problems.append(f"{len(lost_fresh):,} of {len(tree.fresh):,} fresh files WRONGLY deleted, "
                        f"e.g. {min(lost_fresh)}")
    if strangers:
        problems.append(f"{len(strangers):,} unexpected files in the folder, e.g. {min(strangers)}")
    deleted = len(tree.old) + len(tree.fresh) - len(left & (tree.old | tree.fresh))
    return deleted, problems


# -- contenders ---------------------------------------------------------------------------------------
def tool(name: str) -> list[str]:
    """The console script next to this Python (the venv's), else `python -m`."""
    script = Path(PY).parent / name
    return [str(script)] if script.exists() else [PY, "-m", name]


@dataclass(slots=True)
class Result:
    run: Run
    deleted: int
    tree_bytes: int


def finish(name: str, site: Path, data: Path, tree: Tree, cmd: list[str], note: str) -> Result:
    log = site / "out.log"
    m = measure_clean([(cmd, site, log)], RUNS)[0]
    problems = [] if m.status == 0 else [f"{name} exited with {m.status}:\n{tail(log)}"]
    deleted, wrong = check_tree(tree, data)
    problems += wrong
    n = len(tree.old) + len(tree.fresh)
    return Result(Run(name, n, m.wall, m.peak_rss, m.cpu, not problems, problems, note, m.others), deleted,
                  tree.size)


def run_find(site: Path, n: int) -> Result:
    data = site / "data"
    tree = build_tree(data, n)
    cmd = ["find", str(data), "-mtime", f"+{LIMIT_DAYS}", "-delete"]
    return finish("find", site, data, tree, cmd, f"`find DIR -mtime +{LIMIT_DAYS} -delete` (the floor)")


def organize_config(data: Path) -> str:
    return textwrap.dedent(f"""\
        # Generated by benchmarks/purge.py
        rules:
          - name: purge
            locations:
              - path: "{data}"
            subfolders: true
            filters:
              - lastmodified:
                  days: {LIMIT_DAYS}
                  mode: older
            actions:
              - delete
        """)


def run_organize(site: Path, n: int) -> Result:
    data = site / "data"
    config = site / "organize.yaml"
    config.write_text(organize_config(data))
    tree = build_tree(data, n)
    cmd = tool("organize") + ["run", str(config), "-F", "errorsonly"]
    res = finish("organize 3.3", site, data, tree, cmd,
                 f"`organize run CONFIG -F errorsonly`, `lastmodified: {{days: {LIMIT_DAYS}, mode: older}}`, "
                 "`delete`, `subfolders: true`")
    text = (site / "out.log").read_text(errors="replace")
    if "Traceback" in text or re.search(r"\bfail [1-9]", text):
        res.run.problems.append("organize reported errors:\n" + tail(site / "out.log"))
        res.run.ok = False
    return res


FLOWD_CONFIG = """\
# Generated by benchmarks/purge.py
[flowd]
data_dir = "var"
database_url = "sqlite:///var/flowd.db"
workers = 2
rules = ["rules/*.yaml"]

[storage.lake]
kind = "local"
root = "lake"
"""

FLOWD_RULES = f"""\
# Generated by benchmarks/purge.py
rules:
  - name: purge
    over: {{folder: "data", recursive: true}}
    if:
      - age: {{gt: {LIMIT_DAYS}d}}
    do:
      - delete: {{}}
"""


def check_flowd(site: Path, tree: Tree) -> list[str]:
    """Its summary says `deleted` for exactly the old files, and its database agrees."""
    problems = []
    log = site / "out.log"
    text = log.read_text(errors="replace")
    match = re.search(r"^\s*deleted\s+([\d,]+)\s*$", text, re.M)
    said = int(match.group(1).replace(",", "")) if match else None
    if said != len(tree.old):
        problems.append(f"flowd's summary says deleted {said}, expected {len(tree.old):,}:\n{tail(log)}")
    db = site / "var" / "flowd.db"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            states = dict(con.execute("select state || '/' || coalesce(status, '') || '/' || coalesce(fate, ''), "
                                      "count(*) from jobs group by 1"))
        finally:
            con.close()
        if states != {"done/finished/delete": len(tree.old)}:
            problems.append(f"flowd jobs by state/status/fate: {states}, expected "
                            f"{{'done/finished/delete': {len(tree.old)}}}")
    else:
        problems.append(f"no database at {db}")
    return problems


def run_flowd(site: Path, n: int) -> Result:
    data = site / "data"
    (site / "rules").mkdir(parents=True, exist_ok=True)
    config = site / "flowd.toml"
    config.write_text(FLOWD_CONFIG)
    (site / "rules" / "purge.yaml").write_text(FLOWD_RULES)
    tree = build_tree(data, n)
    cmd = tool("flowd") + ["sweep", "purge", "-c", str(config)]
    res = finish("flowd", site, data, tree, cmd,
                 "`flowd sweep purge -c CONFIG`, 2 workers, SQLite; rule `over: {folder: data, recursive: true}`, "
                 f"`if: age > {LIMIT_DAYS}d`, `do: delete`")
    if res.run.ok or res.deleted:
        more = check_flowd(site, tree)
        res.run.problems += more
        res.run.ok = res.run.ok and not more
    return res


RUNNERS = {"find": run_find, "organize": run_organize, "flowd": run_flowd}


# -- report -------------------------------------------------------------------------------------------
def median_result(rs: list[Result]) -> Result:
    """The median round by time (run.median_run: the highest peak RSS of all rounds, a failure in any counts)."""
    mid = median_run([r.run for r in rs])
    same = next(r for r in rs if r.run.seconds == mid.seconds)
    return Result(mid, same.deleted, same.tree_bytes)


def table(results: list[Result]) -> str:
    def rate_of(prefix: str) -> float:
        r = next((x for x in results if x.run.name.startswith(prefix) and x.run.ok), None)
        return r.run.rate if r else 0.0

    organize, find = rate_of("organize"), rate_of("find")
    lines = ["| contender | seconds | files/s | × organize | × find | peak RSS MB | CPU s | deleted | ok |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for x in results:
        r = x.run
        lines.append(f"| {r.name} | {r.seconds:.2f} | {r.rate:,.0f} | "
                     f"{f'{r.rate / organize:.2f}' if organize else '-'} | {f'{r.rate / find:.2f}' if find else '-'} | "
                     f"{r.peak_rss / 2**20:.0f} | {r.cpu:.2f} | {x.deleted:,} | {'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


def verdicts(results: list[Result]) -> list[str]:
    by = {x.run.name.split()[0]: x.run for x in results}
    flowd, organize, find = by.get("flowd"), by.get("organize"), by.get("find")
    out = []
    if flowd and organize and organize.rate:
        ratio = flowd.rate / organize.rate
        want = TARGETS["files_per_s_vs_organize"]
        out.append(f"throughput: flowd {flowd.rate:,.0f} files/s = {ratio:.2f} x organize's {organize.rate:,.0f} "
                   f"(target >= {want:g} x): " + ("MET" if ratio >= want and flowd.ok and organize.ok else "NOT MET"))
    if flowd:
        mb = flowd.peak_rss / 2**20
        out.append(f"peak RSS: flowd {mb:.0f} MB (target <= {TARGETS['peak_rss_mb']:g} MB): "
                   + ("MET" if mb <= TARGETS["peak_rss_mb"] and flowd.ok else "NOT MET"))
    if flowd and find and find.rate:
        out.append(f"against the floor: flowd {flowd.rate / find.rate:.2f} x find's files/s "
                   f"({find.rate:,.0f} files/s; no target)")
    return out


def results_markdown(args: argparse.Namespace, results: list[Result], info: dict[str, str], tree_mb: float) -> str:
    cmd = f"benchmarks/purge.py --files {args.files}" + (f" --rounds {args.rounds}" if args.rounds != 1 else "")
    n_old = args.files // 2
    parts = [f"Run {info['date']} on flowd {info['code']} with `{cmd}`.", "",
             f"Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}, {info['filesystem']} under "
             f"benchmarks/work; {info['python']}; {info['versions']}; {info['load']} at the end. "
             f"Peak RSS is measured from a small helper process, so no reading is below its own high-water "
             f"mark ({info.get('rss_floor', '?')}: what `/bin/true` measures).", "",
             f"**Purging {args.files:,} files ({tree_mb:.0f} MB, {MIN_SIZE // 1024}-{MAX_SIZE // 1024} KB each, "
             f"{SUBDIRS} subfolders), {n_old:,} of them {OLD_DAYS} days old, limit {LIMIT_DAYS} days.** "
             f"files/s counts the whole folder ({args.files:,} listed).", "",
             table(results), ""]
    for x in results:
        r = x.run
        parts.append(f"- {r.name}: {r.note}; others' load {r.others:.0%}")
        for p in r.problems:
            parts.append(f"- **{r.name} problem:** " + p.replace("\n", " / ")[:600])
    parts.append("")
    v = verdicts(results)
    if v:
        parts += ["Targets:", ""] + [f"- {x}" for x in v] + [""]
    return "\n".join(parts).rstrip() + "\n"


# -- main -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=100_000, help="files in the tree (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds; with more than one the order rotates and the table shows medians (default 1)")
    p.add_argument("--only", choices=CONTENDERS, action="append",
                   help="run only these contenders (repeatable); the README is then left alone")
    p.add_argument("--write-readme", action="store_true",
                   help=f"rewrite the purge section of {README.relative_to(ROOT)} (between {MARK_START} and "
                        f"{MARK_END})")
    p.add_argument("--keep", action="store_true", help="keep benchmarks/work/purge/ afterwards")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.files < 2 or args.rounds < 1:
        p.error("--files must be at least 2 and --rounds at least 1")

    if RUNS.exists():
        shutil.rmtree(RUNS)
    RUNS.mkdir(parents=True)
    digest = flowd_digest()
    contenders = [c for c in CONTENDERS if not args.only or c in args.only]
    rounds: dict[str, list[Result]] = {c: [] for c in contenders}
    tree_mb = 0.0
    try:
        for k in range(args.rounds):
            order = contenders[k % len(contenders):] + contenders[:k % len(contenders)]
            for c in order:
                site = RUNS / f"{c}-{k + 1}"
                site.mkdir(parents=True)
                print(f"running {c}" + (f" (round {k + 1} of {args.rounds})" if args.rounds > 1 else "") + " ...",
                      flush=True)
                res = RUNNERS[c](site, args.files)
                tree_mb = res.tree_bytes / 2**20
                r = res.run
                print(f"  {r.name}: {r.seconds:.2f} s, {r.rate:,.0f} files/s, peak RSS {r.peak_rss / 2**20:.0f} MB, "
                      f"CPU {r.cpu:.2f} s, deleted {res.deleted:,}, others' load {r.others:.0%}"
                      + ("" if r.ok else "  PROBLEMS:\n    " + "\n    ".join(r.problems)), flush=True)
                rounds[c].append(res)
                if not args.keep:
                    shutil.rmtree(site, ignore_errors=True)
        results = [median_result(rs) for rs in rounds.values() if rs]
        info = machine_info()
        floor = measure_clean([(["/bin/true"], RUNS, RUNS / "true.log")], RUNS)[0].peak_rss
        info["rss_floor"] = f"{floor / 2**20:.0f} MB"
        if flowd_digest() != digest:
            info["code"] += " (flowd/ CHANGED while this ran: rounds may have run different code)"
        body = results_markdown(args, results, info, tree_mb)
        print("\n" + body)
        if args.write_readme and not args.only:
            write_section(body, MARK_START, MARK_END, README)
            print(f"wrote {README.relative_to(ROOT)}")
        return 1 if any(not x.run.ok for x in results) else 0
    finally:
        if not args.keep:
            shutil.rmtree(RUNS, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
