"""`flowd sweep RULE [--dry-run]`: run a sweep rule now, with a progress bar and a summary table.

The run is recorded like a scheduled one (its own slot, "manual-..."), its jobs are processed here by
this process's own workers; a daemon running meanwhile may take some of them too (claims are exclusive).
Interrupted, the jobs already queued stay queued for the daemon.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from flowd.db import Database
from flowd.errors import FlowdError
from flowd.queue import JobQueue
from flowd.rules import Rule
from flowd.runtime import Runtime
from flowd.sweep import Sweeper, Tally


class SweepError(FlowdError):
    pass


def find_rule(rt: Runtime, name: str, tenant: str | None) -> Rule:
    found = [r for r in rt.rules.sweeps() if r.name == name and (tenant is None or r.tenant == tenant)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(sorted(f"{r.name}" + (f" (tenant {r.tenant})" if r.tenant != "default" else "")
                             for r in rt.rules.sweeps())) or "(no rule has over:)"
    if not found:
        raise SweepError(f"no sweep rule named '{name}'" + (f" in tenant '{tenant}'" if tenant else "")
                         + f"; sweep rules: {known}")
    raise SweepError(f"rule '{name}' exists in several tenants; name one with --tenant ({known})")


def dry_run(rt: Runtime, db: Database, rule: Rule, out: TextIO, as_json: bool) -> int:
    """List what the sweep would delete or move, and what it would leave, touching nothing."""
    sweeper = Sweeper(JobQueue(db))
    tally = Tally()
    actions: Counter[str] = Counter()
    listed = []
    for item, trace in sweeper.plan(rt, rule, tally):
        verdict = _verdict(trace.to_dict())
        actions[verdict[0]] += 1
        if as_json:
            listed.append({"file": item.shown, "size": item.size, "mtime": item.mtime_ns / 1e9,
                           "would": verdict[0], "target": verdict[1]})
        elif verdict[0] != "leave (conditions not met)":
            print(f"would {verdict[0]:<7} {item.shown}" + (f" -> {verdict[1]}" if verdict[1] else ""), file=out)
    summary = {**{f"would {k}": v for k, v in actions.items()},
               **{f"passed over: {k}": v for k, v in tally.passed.items()}}
    if as_json:
        print(json.dumps({"rule": rule.name, "over": rule.over.describe() if rule.over else None, "seen": tally.seen,
                          "files": listed, "summary": summary}), file=out)
    else:
        _table(f"dry run of {rule.name} over {rule.over.describe() if rule.over else '?'}: {tally.seen:,} listed, "
               "nothing touched", summary, out)
    return 0


def sweep_now(rt: Runtime, db: Database, rule: Rule, out: TextIO, work: Path) -> int:
    from flowd.worker import Processor

    queue = JobQueue(db, rt.config.settings.flowd.lease_seconds, rt.config.settings.flowd.node_name + "-sweep")
    queue.register_node()
    sweeper = Sweeper(queue)
    processor = Processor(queue, lambda: rt, work=work)
    bar = Progress(sys.stderr)
    started = time.monotonic()
    run = sweeper.manual(rule.schedule_id("manual"), rule.tenant)
    try:
        tally = sweeper.run_rule(rt, rule, run, tick=lambda t: bar.show(f"listing: {t.seen:,} seen, "
                                                                        f"{t.queued:,} queued"))
        batch_size = max(rt.config.settings.flowd.batch_size, 256)
        last_promote = last_count = 0.0
        while True:
            batch = queue.claim(batch_size, run=run)
            if batch:
                processor.run_batch(batch)
            now = time.monotonic()
            if batch and now - last_count < 0.5:
                continue  # counting a large run's jobs costs more than a batch: a few times a second is enough
            last_count = now
            ended, total = sweeper.progress(run)
            bar.fraction(ended, total)
            if ended >= total:
                break
            if not batch:
                if now - last_promote > 0.5:  # retries that are due, leases that ran out
                    queue.promote()
                    last_promote = now
                time.sleep(0.1)  # the rest is claimed by a daemon, or waits for a retry
    except KeyboardInterrupt:
        bar.done()
        print(f"interrupted: the jobs queued by run {run} stay queued; a running daemon finishes them",
              file=sys.stderr)
        return 130
    finally:
        queue.unregister_node()
    bar.done()
    closed = [c for c in sweeper.close_finished(rt) if c["id"] == run]
    counts: dict[str, Any] = closed[0]["counts"] if closed else {}
    summary = {**counts.get("outcomes", {}), **{f"passed over: {k}": v for k, v in tally.passed.items()}}
    _table(f"sweep {rule.name} over {rule.over.describe() if rule.over else '?'} (run {run}): {tally.seen:,} listed "
           f"in {time.monotonic() - started:.1f}s", summary, out)
    return 1 if counts.get("outcomes", {}).get("failed") else 0


def _verdict(trace: dict[str, Any]) -> tuple[str, str | None]:
    """("delete", None), ("move", "cold:archive/x.jpg"), ("leave (conditions not met)", None) ..."""
    for rule in trace.get("rules", []):
        if not rule.get("matched"):
            continue
        target = None
        kinds = []
        for action in rule.get("actions", []):
            kinds.append(action.get("action"))
            if action.get("action") in ("move", "store") and action.get("target"):
                target = action["target"]
            if action.get("outcome") == "error":
                return f"fail ({action.get('error')})", None
        if "move" in kinds:
            return "move", target
        if "delete" in kinds:
            return "delete", None
        return "process", target
    if trace.get("status") == "quarantined":
        return f"fail ({(trace.get('error') or {}).get('reason')})", None
    return "leave (conditions not met)", None


def _table(title: str, rows: dict[str, int], out: TextIO) -> None:
    print(title, file=out)
    if not rows:
        print("  (nothing listed)", file=out)
        return
    width = max(len(k) for k in rows)
    print(f"  {'outcome':<{width}}  {'files':>9}", file=out)
    for key, value in sorted(rows.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {key:<{width}}  {value:>9,}", file=out)


class Progress:
    """A one-line progress bar on a terminal; silent when stderr is not one (logs, pipes, tests)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0

    def show(self, text: str) -> None:
        now = time.monotonic()
        if self.tty and now - self._last >= 0.1:
            self._last = now
            self.stream.write(f"\r\x1b[2K{text}")
            self.stream.flush()

    def fraction(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        self.show(f"[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} jobs done")

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
