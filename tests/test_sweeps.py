"""Schedules and sweeps with the real daemon and the real CLI on real folders: purges by age, count and name,
delete and move, dry runs, scheduled hot folders (every, cron, once), a missed firing after a restart, and
two daemons sharing one database running each firing once."""

from __future__ import annotations

import calendar
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from conftest import JPEG, Site, wait_for

DAY = 86400


def old(path: Path, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(path, (t, t))


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def db_rows(site: Site, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{site.root / 'var' / 'flowd.db'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def archive(site: Site, layout: dict[str, float]) -> Path:
    """A folder outside the hot folders: {relpath: age in days}."""
    root = site.root / "archive"
    for rel, days in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(JPEG + rel.encode())
        old(path, days)
    return root


PURGE = """
    rules:
      - name: purge-originals
        on: [{schedule: {cron: "0 3 * * *", timezone: "Europe/Oslo"}}]
        over: {folder: "archive", recursive: true, remove_empty_folders: true}
        if:
          - age: {gt: 30d}
          - name: ["*.jpg", "*.tif"]
        do:
          - delete: {}
"""


def test_a_purge_by_age_and_name_deletes_only_what_matches_and_records_the_run(site: Site) -> None:
    root = archive(site, {"a.jpg": 40, "b.tif": 31, "c.txt": 90, "d.jpg": 10, "sub/e.jpg": 45, "sub/f.jpg": 2,
                          "gone/g.jpg": 60})
    site.rules(PURGE)
    result = site.cli("sweep", "purge-originals", check=True)
    assert files(root) == ["c.txt", "d.jpg", "sub/f.jpg"]
    assert not (root / "gone").exists(), "remove_empty_folders: a folder the purge emptied goes too"
    assert "deleted" in result.stdout and " 4" in result.stdout, result.stdout
    assert "conditions not met" in result.stdout
    (run,) = db_rows(site, "SELECT * FROM runs")
    assert run["state"] == "done" and run["why"] == "manual" and run["seen"] == 7 and run["queued"] == 4
    counts = json.loads(run["counts"])
    assert counts["outcomes"] == {"deleted": 4}
    assert counts["passed"] == {"conditions not met": 3}
    assert run["finished"] >= run["listed"] >= run["started"]
    # Every decision is in a trace: the deleted file's conditions and the delete.
    (trace,) = site.traces("a.jpg")
    (rule,) = trace["rules"]
    assert rule["matched"] and [c["if"] for c in rule["conditions"][0]["of"]] == ["age", "name"]
    assert trace["fate"] == "delete"


def test_a_dry_run_lists_what_would_go_and_touches_nothing(site: Site) -> None:
    root = archive(site, {"a.jpg": 40, "b.tif": 31, "c.txt": 90, "d.jpg": 10})
    site.rules(PURGE)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    result = site.cli("sweep", "purge-originals", "--dry-run", check=True)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()} == before
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("would")]
    assert sorted(ln.split()[-1] for ln in lines) == ["a.jpg", "b.tif"]
    assert all(ln.split()[1] == "delete" for ln in lines)
    assert "nothing touched" in result.stdout
    assert db_rows(site, "SELECT count(*) FROM jobs")[0][0] == 0
    assert db_rows(site, "SELECT count(*) FROM runs")[0][0] == 0
    data = json.loads(site.cli("sweep", "purge-originals", "--dry-run", "--json", check=True).stdout)
    assert sorted(f["file"] for f in data["files"] if f["would"] == "delete") == ["a.jpg", "b.tif"]


def test_keep_newest_moves_only_what_lies_beyond_the_count(site: Site) -> None:
    root = archive(site, {f"f{i:02d}.jpg": i for i in range(12)})  # f00 newest ... f11 oldest
    site.rules("""
        rules:
          - name: keep-newest-5
            over: {folder: "archive", keep_newest: 5}
            do:
              - move: {to: "lake:cold/{relpath}"}
    """)
    result = site.cli("sweep", "keep-newest-5", check=True)
    assert files(root) == [f"f{i:02d}.jpg" for i in range(5)]
    moved = files(site.lake / "cold")
    assert moved == [f"f{i:02d}.jpg" for i in range(5, 12)]
    assert (site.lake / "cold" / "f07.jpg").read_bytes() == JPEG + b"f07.jpg"
    assert "moved" in result.stdout and "among the newest 5" in result.stdout


def test_a_bad_sweep_name_is_one_clear_error(site: Site) -> None:
    site.rules(PURGE)
    result = site.cli("sweep", "purge-everything")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no sweep rule named 'purge-everything'" in result.stderr and "purge-originals" in result.stderr


def test_the_daemon_runs_a_scheduled_sweep_and_status_shows_it(site: Site) -> None:
    root = archive(site, {"x.tmp": 5})
    site.rules("""
        rules:
          - name: purge-temp
            on: [{schedule: {every: 1s}}]
            over: {folder: "archive"}
            if:
              - name: "*.tmp"
              - age: {gt: 1d}
            do:
              - delete: {}
    """)
    site.start()
    wait_for(lambda: not (root / "x.tmp").exists(), 10, message="the first firing deletes x.tmp")
    fresh = root / "fresh.tmp"
    fresh.write_bytes(b"new")
    stale = root / "later.tmp"
    stale.write_bytes(b"old")
    old(stale, 3)
    wait_for(lambda: not stale.exists(), 10, message="a later firing deletes later.tmp")
    assert fresh.exists(), "a file younger than a day stays"
    rows = db_rows(site, "SELECT * FROM runs WHERE schedule = 'rule:default/purge-temp#0' ORDER BY id")
    assert len(rows) >= 2 and {r["why"] for r in rows} == {"schedule"}
    slots = [r["slot"] for r in rows]
    assert len(set(slots)) == len(slots)
    status = site.status()
    (entry,) = [s for s in status["schedules"] if s["schedule"] == "rule:default/purge-temp#0"]
    assert entry["when"] == "every 1s" and entry["next"] > time.time() - 1 and entry["last"]["why"] == "schedule"


def test_a_scheduled_hot_folder_holds_its_files_until_the_schedule_fires(site: Site) -> None:
    site.configure(hotfolders=[{"stable_seconds": 0.2}])
    config = site.config.read_text().replace('recursive = true\n', 'recursive = true\nrun = { every = "3s" }\n', 1)
    site.config.write_text(config)
    site.rules("""
        rules:
          - name: store
            do:
              - store: {to: "lake:assets/{relpath}"}
    """)
    site.start()
    site.drop("a.jpg", JPEG)
    site.drop("sub/b.jpg", JPEG)
    site.settled(2, timeout=15)
    jobs = db_rows(site, "SELECT j.created, j.run_id, r.slot, r.why FROM jobs j JOIN runs r ON r.id = j.run_id")
    assert len(jobs) == 2, "both files were queued by a firing, not on arrival"
    for row in jobs:
        assert row["why"] == "schedule"
        slot = calendar.timegm(time.strptime(row["slot"], "%Y-%m-%dT%H:%M:%SZ"))
        assert int(slot) % 3 == 0 and 0 <= row["created"] - slot < 2.5
    assert files(site.lake / "assets") == ["a.jpg", "sub/b.jpg"]
    assert files(site.hot()) == []


def test_a_cron_hot_folder_missed_while_down_runs_once_at_start(site: Site) -> None:
    site.configure(hotfolders=[{}])
    config = site.config.read_text().replace(
        'recursive = true\n', 'recursive = true\nrun = { cron = "*/5 * * * *", timezone = "Europe/Oslo" }\n', 1)
    site.config.write_text(config)
    site.rules("""
        rules:
          - name: store
            do:
              - store: {to: "lake:assets/{relpath}"}
    """)
    site.cli("status", check=True)  # the database, as a daemon that ran an hour ago left it
    conn = sqlite3.connect(site.root / "var" / "flowd.db")
    conn.execute("INSERT INTO schedules (schedule, tenant, first_seen) VALUES ('hotfolder:inbox', 'default', ?)",
                 (time.time() - 3600,))
    conn.commit()
    conn.close()
    for name in ("a.jpg", "b.jpg"):
        site.drop(name, JPEG)
    site.start()
    site.settled(2, timeout=15)
    (run,) = db_rows(site, "SELECT * FROM runs")
    assert run["why"] == "catch-up" and run["queued"] == 2
    minute = int(run["slot"][14:16])
    assert minute % 5 == 0 and run["slot"].endswith(":00Z")
    assert files(site.lake / "assets") == ["a.jpg", "b.jpg"]


def test_a_run_once_hot_folder_processes_what_is_there_then_stays_disabled(site: Site) -> None:
    site.configure(hotfolders=[{}])
    site.config.write_text(site.config.read_text().replace('recursive = true\n', 'recursive = true\nrun = "once"\n', 1))
    site.rules("""
        rules:
          - name: store
            do:
              - store: {to: "lake:assets/{relpath}"}
    """)
    site.drop("first.jpg", JPEG)
    site.start()
    site.settled(1)
    assert files(site.lake / "assets") == ["first.jpg"]
    site.drop("second.jpg", JPEG)
    time.sleep(1.5)
    assert (site.hot() / "second.jpg").exists(), "the folder is disabled after its one run"
    (entry,) = [s for s in site.status()["schedules"] if s["schedule"] == "hotfolder:inbox"]
    assert entry["disabled"] and "folder disabled" in entry["when"]
    site.stop()
    site.start()
    time.sleep(1.5)
    assert (site.hot() / "second.jpg").exists(), "a restart does not run it again (persisted)"
    assert db_rows(site, "SELECT count(*) FROM runs")[0][0] == 1


def test_a_firing_missed_while_the_daemon_was_down_runs_once_after_the_restart(site: Site) -> None:
    root = archive(site, {"keep.jpg": 0})
    site.rules("""
        rules:
          - name: tick
            on: [{schedule: {every: 2s}}]
            over: {folder: "archive"}
            do:
              - store: {to: "lake:ticks/{name}", conflict: increment}
    """)
    site.start()
    wait_for(lambda: db_rows(site, "SELECT count(*) FROM runs WHERE state = 'done'")[0][0] >= 1, 10,
             message="a first firing")
    assert site.stop() == 0
    stopped = time.time()
    time.sleep(5)  # two or three firings are missed
    before = time.time()
    site.start()
    started = time.time()  # the daemon came up between `before` and now (under load, start() returns late)
    wait_for(lambda: db_rows(site, "SELECT count(*) FROM runs WHERE why = 'catch-up'")[0][0] == 1, 10,
             message="the catch-up run")
    time.sleep(2.5)  # and the schedule goes on
    site.stop()
    rows = db_rows(site, "SELECT slot, why FROM runs ORDER BY id")
    slots = [calendar.timegm(time.strptime(r["slot"], "%Y-%m-%dT%H:%M:%SZ")) for r in rows]
    shown = [dict(r) for r in rows]
    regular = [s for s, r in zip(slots, rows, strict=True) if stopped < s < before and r["why"] == "schedule"]
    assert regular == [], f"nothing ran while the daemon was down: {shown}"
    catch_up = [s for s, r in zip(slots, rows, strict=True) if r["why"] == "catch-up"]
    assert len(catch_up) == 1 and stopped < catch_up[0] <= started, f"one catch-up run for the missed ones: {shown}"
    assert len(set(slots)) == len(slots), shown
    assert max(slots) > started, "regular firings continue after the catch-up"
    ticks = files(site.lake / "ticks")
    assert len(ticks) == len(rows), "each run copied the one file once"
    assert (root / "keep.jpg").exists()


def test_two_daemons_on_one_database_run_each_firing_once(site: Site, tmp_path: Path) -> None:
    """Two nodes (own data dirs, one SQLite file, one shared folder and lake): every firing is one run."""
    shared = tmp_path / "shared"
    (shared / "folder").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (shared / "folder" / name).write_bytes(JPEG)
    rules = f"""
        rules:
          - name: copy-every-second
            on: [{{schedule: {{every: 1s}}}}]
            over: {{folder: "{shared / 'folder'}"}}
            do:
              - store: {{to: "shared:copies/{{name}}", conflict: increment}}
    """
    extra = f"""
[storage.shared]
kind = "local"
root = "{shared / 'lake'}"
"""
    nodes = [site, Site(tmp_path / "node2")]
    nodes[1].root.mkdir()
    try:
        for node in nodes:
            node.configure(extra=extra)
            text = node.config.read_text().replace('database_url = "sqlite:///var/flowd.db"',
                                                   f'database_url = "sqlite:///{shared / "flowd.db"}"')
            node.config.write_text(text)
            node.rules(rules)
        for node in nodes:
            node.start()
        time.sleep(6)
        for node in nodes:
            assert node.stop() == 0
    finally:
        nodes[1].kill()
        if nodes[1].notify is not None:
            nodes[1].notify.close()
    conn = sqlite3.connect(shared / "flowd.db")
    rows = conn.execute("SELECT slot, node, queued FROM runs ORDER BY slot").fetchall()
    done = conn.execute("SELECT count(*) FROM jobs WHERE state = 'done' AND status = 'finished'").fetchone()[0]
    conn.close()
    slots = [r[0] for r in rows]
    assert len(slots) == len(set(slots)) and 4 <= len(slots) <= 9, rows
    assert all(r[2] == 2 for r in rows), "each run queued the two files"
    copies = files(shared / "lake" / "copies")
    assert len(copies) == 2 * len(rows) == done, (len(copies), rows)
    assert {r[1].rsplit("-", 2)[0] for r in rows} <= {n.root.name for n in nodes} | {os.uname().nodename}


def test_sweep_rules_and_schedules_are_checked_with_file_and_line(site: Site) -> None:
    site.rules("""
        rules:
          - name: nightly
            on: [{schedule: {cron: "0 27 * * *"}}]
            over: {folder: "archive"}
            do:
              - delete: {}
    """)
    result = site.cli("check")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "rules/rules.yaml:4: rules.0.on.0.schedule: cron:" in result.stderr and "27" in result.stderr
    site.config.write_text(site.config.read_text().replace('recursive = true\n',
                                                           'recursive = true\nrun = { every = "soon" }\n', 1))
    site.rules("rules: []\n")
    result = site.cli("check")
    assert result.returncode == 1 and "hotfolders.0.run" in result.stderr and "soon" in result.stderr


def test_a_purge_cut_short_after_its_jobs_were_committed_is_finished_by_the_daemon(site: Site) -> None:
    """A purge commits each batch's jobs (claimed, fate delete decided) before it removes the files. Killed
    right then, the daemon finishes them once their lease runs out: the file goes, the job ends done."""
    root = archive(site, {"a.jpg": 40, "b.jpg": 40})
    site.rules(PURGE)
    site.cli("status", check=True)  # the database
    st = (root / "a.jpg").stat()
    conn = sqlite3.connect(site.root / "var" / "flowd.db")
    conn.execute(
        "INSERT INTO jobs (tenant, hotfolder, relpath, relpath_raw, size, mtime_ns, dedupe, state, attempts, "
        "created, updated, fate, lease_owner, lease_token, lease_until) VALUES ('default', "
        "'~default/purge-originals', 'a.jpg', ?, ?, ?, 'x', 'claimed', 1, ?, ?, 'delete', 'gone-1-abc', 'tok', ?)",
        (b"a.jpg", st.st_size, st.st_mtime_ns, time.time(), time.time(), time.time() - 1))
    conn.commit()
    conn.close()
    site.start()
    wait_for(lambda: not (root / "a.jpg").exists(), 10, message="the recorded fate applied")
    assert (root / "b.jpg").exists(), "only what a job was committed for"
    (row,) = db_rows(site, "SELECT state, status, fate FROM jobs")
    assert (row["state"], row["status"], row["fate"]) == ("done", "finished", "delete")


def test_a_sweep_rule_cannot_ask_for_a_hot_folder_or_an_output_it_does_not_have(site: Site) -> None:
    site.rules("""
        rules:
          - name: by-folder
            over: {folder: "archive"}
            if:
              - hotfolder: inbox
            do:
              - store: {to: "{output}/old/{name}"}
          - name: by-hotfolder
            over: {hotfolder: inbox}
            do:
              - store: {to: "{output}/old/{name}"}
    """)
    result = site.cli("check")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(ln.startswith("rules/rules.yaml:6: rules.0.if.0.hotfolder: a sweep rule's files come from over:")
               for ln in lines), result.stderr
    assert any(ln.startswith("rules/rules.yaml:8: rules.0.do.0.store.to: uses {output} but this sweep") for ln in lines)
    assert "rules.1" not in result.stderr, "over: {hotfolder: inbox} has that folder's output"


def test_sighup_starts_and_stops_schedules(site: Site) -> None:
    root = archive(site, {})
    root.mkdir(exist_ok=True)
    site.rules("rules: []\n")
    site.start()
    site.rules("""
        rules:
          - name: purge-temp
            on: [{schedule: {every: 1s}}]
            over: {folder: "archive"}
            if: [{name: "*.tmp"}]
            do: [{delete: {}}]
    """)
    site.signal(signal.SIGHUP)
    (root / "a.tmp").write_bytes(b"x")
    wait_for(lambda: not (root / "a.tmp").exists(), 10, message="the schedule added by SIGHUP runs")
    site.rules("rules: []\n")
    site.signal(signal.SIGHUP)
    time.sleep(1.5)  # a firing already under way may still finish
    (root / "b.tmp").write_bytes(b"x")
    time.sleep(2.5)
    assert (root / "b.tmp").exists(), "the schedule removed by SIGHUP no longer runs"


def test_batch_mode_takes_a_scheduled_hot_folder_now(site: Site) -> None:
    """`flowd run --until-idle` processes what is in the hot folders, a scheduled one included."""
    site.configure(hotfolders=[{}])
    site.config.write_text(site.config.read_text().replace(
        'recursive = true\n', 'recursive = true\nrun = { cron = "0 3 * * *" }\n', 1))
    site.rules("""
        rules:
          - name: store
            do:
              - store: {to: "lake:assets/{relpath}"}
    """)
    for name in ("a.jpg", "sub/b.jpg"):
        site.drop(name, JPEG)
    proc = site.start("--until-idle")
    assert proc.wait(30) == 0, site.log()
    assert files(site.lake / "assets") == ["a.jpg", "sub/b.jpg"]
    assert [r["why"] for r in db_rows(site, "SELECT why FROM runs")] == ["manual"]
