"""Color Factory import: a 256-channel export (Color Factory's maximum) through `flowd migrate colorfactory`,
against the 2 s target, beside its floors measured in the same run: starting flowd (`flowd --version`) and
`flowd check` of the imported result, which the import runs too. No peer imports another tool's configuration.

    .venv/bin/python benchmarks/migrate.py --rounds 5 --write-readme
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cfexport import big_export  # noqa: E402
from run import PY, README, WORK, machine_info, write_section  # noqa: E402

RUNS = WORK / "migrate"
TARGET_S = 2.0
MARK_START = "<!-- bench:migrate:start -->"
MARK_END = "<!-- bench:migrate:end -->"


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([PY, "-m", "flowd", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"flowd {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--write-readme", action="store_true", help=f"rewrite the migrate section of {README.name}")
    args = p.parse_args(argv)
    if RUNS.exists():
        shutil.rmtree(RUNS)
    RUNS.mkdir(parents=True)
    export = RUNS / "export.xml"
    export.write_text(big_export(args.channels))
    times: dict[str, list[float]] = {"start": [], "check": [], "import": []}
    summary = ""
    for k in range(args.rounds):
        out = RUNS / f"site-{k}"
        t, summary = timed(["migrate", "colorfactory", str(export), "--out", str(out), "--map", "D:\\CF=var/cf"], RUNS)
        times["import"].append(t)
        times["check"].append(timed(["check", "-c", str(out / "config.toml")], RUNS)[0])
        times["start"].append(timed(["--version"], RUNS)[0])
        print(f"round {k + 1}: import {times['import'][-1]:.2f} s, check {times['check'][-1]:.2f} s, "
              f"start {times['start'][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rules = len(list((RUNS / "site-0" / "rules").glob("*.yaml")))
    lines = [
        f"### Color Factory import ({args.channels} channels, {args.rounds} rounds, medians)", "",
        f"Machine: {machine_info().get('cpu', '?')}. Export: {export.stat().st_size / 1024:.0f} KB, "
        f"{args.channels} channels in groups of four (a master, three slaves, every section set) and 16 purging "
        f"channels; result: {rules} rule files. Each command is a fresh process.", "",
        "| command | seconds (median) | min | max |", "|---|---:|---:|---:|",
        *(f"| {name} | {med[key]:.2f} | {min(times[key]):.2f} | {max(times[key]):.2f} |" for key, name in (
            ("import", "`flowd migrate colorfactory` (read, translate, write, `flowd check`)"),
            ("check", "floor: `flowd check` of the result alone"),
            ("start", "floor: `flowd --version` (interpreter and CLI start)"))),
        "",
        f"- Import of {args.channels} channels in {med['import']:.2f} s against the target of {TARGET_S:.0f} s: "
        + ("**MET**" if med["import"] < TARGET_S else "**NOT MET**")
        + f"; {med['import'] - med['check']:.2f} s beyond checking the result.",
        f"- Its summary: `{summary.splitlines()[0] if summary else ''}`", ""]
    body = "\n".join(lines)
    print(body)
    if args.write_readme:
        write_section(body, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
