"""The daemon's life as systemd sees it: READY/STOPPING on NOTIFY_SOCKET, SIGHUP reloads (good ones audited,
bad ones rejected with file:line while the old rules keep running), SIGTERM drains without losing or
doubling work, one daemon per data dir, JSON logs and batch mode."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

from conftest import JPEG, PDF, PY, Site, tree, wait_for
from dbview import job_rows, query, settle, states

V1 = """
    rules:
      - name: photos
        if: [{extension: jpg}]
        do:
          - store: {to: "{output}/v1/{name}"}
"""

V2 = """
    rules:
      - name: photos
        if: [{extension: jpg}]
        do:
          - store: {to: "{output}/v2/{name}"}
"""

# `stor` is not an action: the whole file is invalid (line 6 of the dedented text).
BROKEN = """
    rules:
      - name: photos
        if: [{extension: jpg}]
        do:
          - stor: {to: "{output}/v3/{name}"}
"""


def count_messages(site: Site, text: str) -> int:
    site.read_notify()
    return sum(text in m for m in site.messages)


def test_ready_is_sent_once_watching_and_stopping_on_sigterm(site: Site) -> None:
    site.rules(V1)
    site.start()
    assert any(m.startswith("READY=1") and "STATUS=watching inbox" in m for m in site.messages), site.messages
    site.drop("a.jpg")  # READY means watching: a file dropped right after it is seen
    settle(site, 1)
    assert tree(site.lake) == {"assets/v1/a.jpg": JPEG}
    assert site.stop() == 0
    site.read_notify()
    assert "STOPPING=1" in site.messages
    assert "Traceback" not in site.log()


def test_sighup_with_good_rules_applies_to_the_next_file_and_is_audited(site: Site) -> None:
    site.rules(V1)
    site.start()
    site.drop("first.jpg")
    settle(site, 1)
    start_rows = query(site, "SELECT kind, detail FROM audit ORDER BY id")
    assert ("rules", "start") in start_rows and ("config", "start") in start_rows

    site.rules(V2)
    site.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded: rules" in site.log(), 15, message="the reload to be logged")
    wait_for(lambda: count_messages(site, "READY=1") >= 2, 10, message="READY=1 after RELOADING=1")
    assert "RELOADING=1" in site.messages

    site.drop("second.jpg")
    settle(site, 2)
    assert tree(site.lake) == {"assets/v1/first.jpg": JPEG, "assets/v2/second.jpg": JPEG}
    audit = query(site, "SELECT kind, detail, digest, actor FROM audit ORDER BY id")
    hup = [row for row in audit if row[1] == "SIGHUP"]
    assert [row[0] for row in hup] == ["rules"], audit  # the config did not change: no config row
    assert hup[0][2] != next(row[2] for row in audit if row[:2] == ("rules", "start"))
    assert f"pid {site.proc.pid}" in hup[0][3]
    assert site.stop() == 0


def test_sighup_with_broken_rules_is_rejected_and_old_rules_keep_working(site: Site) -> None:
    site.rules(V1)
    site.start()
    audit_before = query(site, "SELECT * FROM audit")

    site.rules(BROKEN)
    site.signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected (" in site.log(), 15, message="the rejected reload to be logged")
    rejected = [line for line in site.log().splitlines() if "reload rejected" in line]
    assert any(re.search(r"rules\.yaml:6\b.*\bstor\b", line) for line in rejected), rejected
    assert site.proc.poll() is None, "a bad rule file must not stop the daemon"

    site.drop("after.jpg")
    settle(site, 1)
    assert tree(site.lake) == {"assets/v1/after.jpg": JPEG}, "the old rules must keep running"
    assert query(site, "SELECT * FROM audit") == audit_before, "a rejected reload must not be audited"
    assert "Traceback" not in site.log()

    # fixing the file and reloading again works: the rejection left nothing stuck
    site.rules(V2)
    site.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded: rules" in site.log(), 15, message="the second reload")
    site.drop("fixed.jpg")
    settle(site, 2)
    assert tree(site.lake) == {"assets/v1/after.jpg": JPEG, "assets/v2/fixed.jpg": JPEG}
    assert site.stop() == 0


def test_sigterm_drains_and_a_restart_processes_every_file_exactly_once(site: Site) -> None:
    site.rules("""
        rules:
          - name: all
            do:
              - store: {to: "{output}/{relpath}", conflict: increment}
    """)
    # Enough work that SIGTERM lands mid-stream even on a fast machine (a batch is 64 jobs).
    files = {f"batch/f{i:04}.pdf": PDF + f"{i:04}".encode() * 100 for i in range(1500)}
    for rel, data in files.items():
        site.drop(rel, data)
    site.start()
    wait_for(lambda: states(site).get("done", 0) >= 1, 20, message="processing to begin")
    done_at_term = states(site).get("done", 0)
    site.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert site.proc.wait(30) == 0
    assert time.monotonic() - t0 < 20, "draining took too long"
    site.read_notify()
    assert "STOPPING=1" in site.messages
    assert done_at_term < len(files), "SIGTERM came too late to test draining"
    left = states(site)
    assert left.get("claimed", 0) == 0, f"jobs left claimed by a cleanly stopped daemon: {left}"
    assert not any(k.rsplit("/", 1)[-1].startswith(".flowd-tmp-") for k in tree(site.lake))
    assert "Traceback" not in site.log()

    site.start()
    settle(site, len(files), timeout=30)
    assert tree(site.lake) == {f"assets/{rel}": data for rel, data in files.items()}  # no _1 copies
    assert tree(site.hot()) == {}
    rows = job_rows(site)
    assert len(rows) == len(files) and {r[1:] for r in rows} == {("done", "finished")}
    assert site.stop() == 0


def test_second_daemon_on_the_same_data_dir_is_refused(site: Site) -> None:
    site.rules(V1)
    site.start()
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    second = subprocess.run([PY, "-m", "flowd", "run", "-c", str(site.config)], cwd=site.root, env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert second.returncode == 1
    assert "already running" in second.stderr and str(site.proc.pid) in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    # the first daemon is untouched and still works
    site.drop("still.jpg")
    settle(site, 1)
    assert tree(site.lake) == {"assets/v1/still.jpg": JPEG}
    assert site.stop() == 0


def test_json_log_format_writes_one_json_object_per_line(site: Site) -> None:
    site.rules(V1)
    site.start("--log-format", "json")
    site.rules(BROKEN)
    site.signal(signal.SIGHUP)  # an error-level record too
    wait_for(lambda: "reload rejected (" in site.log(), 15, message="the rejected reload")
    site.drop("a.jpg")
    settle(site, 1)
    assert site.stop() == 0
    lines = [line for line in site.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    messages = [r["record"]["message"] for r in records]
    assert any(m.startswith("flowd watching 1 hot folder(s)") for m in messages), messages
    assert any(r["record"]["level"]["name"] == "ERROR" and "rules.yaml:6" in r["record"]["message"]
               for r in records), messages
    assert messages[-1] == "stopped"


def test_until_idle_processes_what_is_there_and_exits_zero(site: Site) -> None:
    site.rules(V1)
    names = [f"batch{i}.jpg" for i in range(5)]
    for name in names:
        site.drop(name)
    (site.hot() / "notes.txt").write_text("matches no rule: left in place")
    proc = site.start("--until-idle")
    assert proc.wait(30) == 0, site.log()
    assert tree(site.lake) == {f"assets/v1/{n}": JPEG for n in names}
    assert tree(site.hot()) == {"notes.txt": b"matches no rule: left in place"}
    assert "all work done" in site.log()
    assert states(site) == {"done": 6}
