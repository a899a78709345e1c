"""What happens to the source: the hot folder's `after` and `unmatched`, all-or-nothing across rules,
`once: content`, `flowd retry`, and tenants keeping to their own folders, storages and ledgers."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from actions_support import (
    QuickSite,
    actions_of,
    drop_in_turn,
    error_notes,
    quarantined,
    quick_site,
    trace_of,
)
from conftest import JPEG, PDF, PNG, Site, tree, wait_for


@pytest.fixture
def site(tmp_path: Path) -> Iterator[QuickSite]:
    yield from quick_site(tmp_path)


STORE_JPEGS = """
    rules:
      - name: photos
        if: [{extension: jpg}]
        do:
          - store: {to: "{output}/photos/{relpath}"}
"""


def restart_and_rescan(site: Site, done: int) -> None:
    """Restart; the start-up scan sees every file in the hot folders, including a new `probe.jpg`.
    Once the probe is finished the scan has also decided about every file next to it."""
    assert site.stop() == 0
    site.drop("probe.jpg", JPEG)
    site.start()
    site.settled(done + 1)
    assert trace_of(site, "probe.jpg")["status"] == "finished"


# -- after -----------------------------------------------------------------------------------------------
def test_after_delete_removes_the_source_once_its_rules_succeeded(site: Site) -> None:
    site.configure(hotfolders=[{"after": "delete"}])
    site.rules(STORE_JPEGS)
    site.start()
    site.drop("day1/a.jpg", JPEG)
    site.settled(1)
    assert tree(site.lake) == {"assets/photos/day1/a.jpg": JPEG}
    assert tree(site.hot()) == {}
    assert trace_of(site, "day1/a.jpg")["fate"] == "delete"


def test_after_keep_leaves_the_source_and_never_processes_it_again(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules(STORE_JPEGS)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    assert (site.hot() / "a.jpg").read_bytes() == JPEG
    restart_and_rescan(site, done=1)
    assert site.status()["states"] == {"done": 2}, "a.jpg was seen again by the scan and not re-queued"
    assert len(site.traces("a.jpg")) == 1
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG, "assets/photos/probe.jpg": JPEG}
    assert tree(site.hot()) == {"a.jpg": JPEG, "probe.jpg": JPEG}


def test_after_move_mirrors_the_relative_path_into_the_folder(site: Site) -> None:
    site.configure(hotfolders=[{"after": "move:done/inbox"}])
    site.rules(STORE_JPEGS)
    site.start()
    drop_in_turn(site, [("2024/06/a.jpg", JPEG), ("b.jpg", PNG)])
    assert tree(site.root / "done/inbox") == {"2024/06/a.jpg": JPEG, "b.jpg": PNG}
    assert tree(site.hot()) == {}
    assert trace_of(site, "2024/06/a.jpg")["fate"] == "move:done/inbox"
    assert tree(site.lake) == {"assets/photos/2024/06/a.jpg": JPEG, "assets/photos/b.jpg": PNG}


def test_after_move_never_overwrites_an_earlier_file_of_the_same_name(site: Site) -> None:
    site.configure(hotfolders=[{"after": "move:done/inbox"}])
    site.rules("""
        rules:
          - name: photos
            do:
              - store: {to: "{output}/photos/{relpath}", conflict: increment}
    """)
    site.start()
    drop_in_turn(site, [("a.jpg", JPEG), ("a.jpg", PNG)])
    assert tree(site.root / "done/inbox") == {"a.jpg": JPEG, "a_1.jpg": PNG}


# -- unmatched -------------------------------------------------------------------------------------------
def test_unmatched_folder_receives_files_no_rule_matched_mirroring_their_path(site: Site) -> None:
    site.configure(hotfolders=[{"unmatched": "unmatched/inbox"}])
    site.rules(STORE_JPEGS)
    site.start()
    drop_in_turn(site, [("docs/brief.pdf", PDF), ("a.jpg", JPEG)])
    assert tree(site.root / "unmatched/inbox") == {"docs/brief.pdf": PDF}
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG}
    assert not any(p.is_file() for p in site.hot().rglob("*"))
    trace = trace_of(site, "docs/brief.pdf")
    assert trace["status"] == "unmatched" and trace["fate"] == "unmatched"
    assert [r["matched"] for r in trace["rules"]] == [False]


def test_unmatched_leave_keeps_the_file_where_it_is_and_processes_it_once(site: Site) -> None:
    site.configure(hotfolders=[{"unmatched": "leave", "after": "delete"}])
    site.rules(STORE_JPEGS)
    site.start()
    site.drop("brief.pdf", PDF)
    site.settled(1)
    assert tree(site.hot()) == {"brief.pdf": PDF}
    assert trace_of(site, "brief.pdf")["status"] == "unmatched"
    restart_and_rescan(site, done=1)
    assert len(site.traces("brief.pdf")) == 1, "a file left in place is not a new job at every scan"
    assert tree(site.hot()) == {"brief.pdf": PDF}
    assert site.status()["outcomes"] == {"unmatched": 1, "finished": 1}


# -- all or nothing ----------------------------------------------------------------------------------------
def test_the_source_is_removed_only_when_every_matching_rule_succeeded(site: Site) -> None:
    (site.lake / "assets/backup").mkdir(parents=True)
    (site.lake / "assets/backup/a.jpg").write_bytes(b"an older, different file")
    site.rules("""
        rules:
          - name: publish
            do:
              - move: {to: "{output}/published/{name}"}
          - name: backup
            do:
              - store: {to: "{output}/backup/{name}"}
    """)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    assert (site.lake / "assets/published/a.jpg").read_bytes() == JPEG, "the first rule's output stays"
    assert (site.lake / "assets/backup/a.jpg").read_bytes() == b"an older, different file"
    assert (site.root / "errors/inbox/a.jpg").read_bytes() == JPEG, "not deleted: it went to errors"
    assert tree(site.hot()) == {}
    note = error_notes(site)["a.jpg.error.json"]
    assert (note["rule"], note["step"]) == ("backup", 0)
    assert "lake:assets/backup/a.jpg" in note["reason"]
    trace = trace_of(site, "a.jpg")
    assert trace["status"] == "quarantined" and trace["fate"] == "quarantine"
    assert actions_of(trace, "publish")[0]["outcome"] == "written"
    assert actions_of(trace, "backup")[0]["outcome"] == "error"


# -- once: content -----------------------------------------------------------------------------------------
ONCE = """
    rules:
      - name: ingest
        once: content
        do:
          - store: {to: "{output}/ingested/{name}"}
"""


def test_once_content_skips_bytes_this_rule_already_processed(site: Site) -> None:
    site.rules(ONCE)
    site.start()
    drop_in_turn(site, [("a.jpg", JPEG), ("copy-of-a.jpg", JPEG), ("b.jpg", PNG)])
    first = trace_of(site, "a.jpg")
    again = trace_of(site, "copy-of-a.jpg")
    assert tree(site.lake) == {"assets/ingested/a.jpg": JPEG, "assets/ingested/b.jpg": PNG}
    [rule] = again["rules"]
    assert rule["matched"] is True and "actions" not in rule
    assert f"job {first['job']}" in rule["skipped"], "the trace names the job that processed these bytes"
    assert again["status"] == "finished" and again["fate"] == "delete"
    assert tree(site.hot()) == {}, "a skip is not a failure: the source's fate applies"
    assert actions_of(trace_of(site, "b.jpg"), "ingest")[0]["outcome"] == "written"


def test_once_content_does_not_count_a_run_that_failed(site: Site) -> None:
    """Bytes whose rule failed were not processed: dropped again after the fix, the rule runs."""
    (site.lake / "assets/ingested").mkdir(parents=True)
    (site.lake / "assets/ingested/a.jpg").write_bytes(b"in the way")
    site.rules(ONCE)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    [q] = quarantined(site)
    assert "lake:assets/ingested/a.jpg" in q["error"]["reason"]
    (site.lake / "assets/ingested/a.jpg").unlink()
    site.drop("a.jpg", JPEG)  # the same bytes, a new file: a new job
    site.settled(2)
    again = [t for t in site.traces("a.jpg") if t["job"] != q["job"]]
    assert len(again) == 1 and "skipped" not in again[0]["rules"][0], again
    assert tree(site.lake) == {"assets/ingested/a.jpg": JPEG}
    assert tree(site.hot()) == {}


# -- flowd retry ---------------------------------------------------------------------------------------------
def reload(site: Site) -> None:
    """SIGHUP, and wait until the new rules are in force."""
    site.messages.clear()
    site.signal(signal.SIGHUP)
    site.wait_message("READY=1", timeout=20)
    wait_for(lambda: "reloaded" in site.log(), message="the reload in the log")


def test_retry_job_puts_a_quarantined_file_back_after_the_rule_is_fixed(site: Site) -> None:
    rules = site.rules("""
        rules:
          - name: pdfs
            if: [{extension: pdf}]
            do:
              - quarantine: {reason: "no rule for PDFs yet"}
    """)
    site.start()
    site.drop("docs/brief.pdf", PDF)
    site.settled(1)
    [q] = quarantined(site)
    assert q["file"] == "inbox/docs/brief.pdf" and q["error"]["reason"] == "no rule for PDFs yet"
    assert sorted(tree(site.root / "errors/inbox")) == ["docs/brief.pdf", "docs/brief.pdf.error.json"]

    rules.write_text(
        "rules:\n"
        "  - name: pdfs\n"
        "    if: [{extension: pdf}]\n"
        "    do:\n"
        "      - store: {to: \"{output}/docs/{relpath}\"}\n")
    reload(site)
    result = site.cli("retry", str(q["job"]), check=True)
    assert f"job {q['job']}: inbox/docs/brief.pdf re-queued" in result.stdout
    site.settled(1)
    assert tree(site.lake) == {"assets/docs/docs/brief.pdf": PDF}
    assert tree(site.root / "errors/inbox") == {}, "the file and its note left the errors folder"
    assert tree(site.hot()) == {}
    assert quarantined(site) == []
    trace = trace_of(site, "docs/brief.pdf")
    assert trace["job"] == q["job"] and trace["status"] == "finished", "the same job, resumed"
    assert site.status()["states"] == {"done": 1}


def test_retry_resumes_the_job_without_redoing_the_steps_that_succeeded(site: Site) -> None:
    """Rule 1 wrote its output, rule 2 quarantined. After the fix the retry runs what failed; rule 1's
    output is recognised as its own (a fresh run would conflict with it under conflict: fail)."""
    rules = site.rules("""
        rules:
          - name: publish
            do:
              - store: {to: "{output}/published/{name}"}
          - name: approve
            do:
              - quarantine: {reason: "waiting for approval"}
    """)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    [q] = quarantined(site)
    assert tree(site.lake) == {"assets/published/a.jpg": JPEG}
    rules.write_text(rules.read_text().replace('quarantine: {reason: "waiting for approval"}',
                                               'store: {to: "{output}/approved/{name}"}'))
    reload(site)
    site.cli("retry", str(q["job"]), check=True)
    site.settled(1)
    assert quarantined(site) == []
    assert tree(site.lake) == {"assets/published/a.jpg": JPEG, "assets/approved/a.jpg": JPEG}
    trace = trace_of(site, "a.jpg")
    assert trace["status"] == "finished"
    assert actions_of(trace, "publish")[0]["outcome"] == "done in an earlier attempt"
    assert actions_of(trace, "approve")[0]["outcome"] == "written"
    assert tree(site.hot()) == {}


def test_retry_of_a_file_replaced_in_the_errors_folder_is_a_new_job(site: Site) -> None:
    site.rules("""
        rules:
          - name: too-small
            if: [{size: {lt: 100B}}]
            do:
              - quarantine: {reason: "{size} bytes is too small for a photo"}
          - name: photos
            do:
              - store: {to: "{output}/photos/{name}"}
    """)
    site.start()
    site.drop("a.jpg", b"not a photo\n")  # 12 bytes
    site.settled(1)
    [q] = quarantined(site)
    assert q["error"]["reason"] == "12 bytes is too small for a photo"
    (site.root / "errors/inbox/a.jpg").write_bytes(JPEG)  # a person puts the complete file in its place
    site.cli("retry", "--all", check=True)
    site.settled(2)
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG}
    assert quarantined(site) == []
    assert site.status()["outcomes"] == {"retried": 1, "finished": 1}
    old, new = site.traces("a.jpg")
    assert (old["job"], old["status"]) == (q["job"], "quarantined")
    assert new["job"] != q["job"] and new["status"] == "finished"


def test_retry_all_after_the_conflicting_target_is_removed(site: Site) -> None:
    site.rules("""
        rules:
          - name: photos
            do:
              - store: {to: "{output}/photos/{name}"}
    """)
    (site.lake / "assets/photos").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (site.lake / "assets/photos" / name).write_bytes(b"old")
    site.start()
    drop_in_turn(site, [("a.jpg", JPEG), ("b.jpg", PNG)])
    qs = quarantined(site)
    assert sorted(q["file"] for q in qs) == ["inbox/a.jpg", "inbox/b.jpg"]
    for q in qs:
        name = q["file"].removeprefix("inbox/")
        assert f"lake:assets/photos/{name}" in q["error"]["reason"] and "'fail'" in q["error"]["reason"]
        assert q["error"]["job"] == q["job"]

    site.cli("retry", "--all", check=True)  # the old files are still in the way
    site.settled(2)
    assert sorted(q["job"] for q in quarantined(site)) == sorted(q["job"] for q in qs), "quarantined again"
    assert sorted(tree(site.root / "errors/inbox")) == ["a.jpg", "a.jpg.error.json", "b.jpg", "b.jpg.error.json"]

    for name in ("a.jpg", "b.jpg"):
        (site.lake / "assets/photos" / name).unlink()
    site.cli("retry", "--all", check=True)
    site.settled(2)
    assert quarantined(site) == []
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG, "assets/photos/b.jpg": PNG}
    assert tree(site.hot()) == {} and tree(site.root / "errors/inbox") == {}
    assert site.status()["states"] == {"done": 2}


def test_retry_refuses_a_job_that_is_not_quarantined(site: Site) -> None:
    site.rules(STORE_JPEGS)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    job = trace_of(site, "a.jpg")["job"]
    result = site.cli("retry", str(job))
    assert result.returncode == 1 and "no quarantined job" in result.stderr
    assert site.cli("retry").returncode == 1


# -- tenants ---------------------------------------------------------------------------------------------
TENANTS = [{"name": "inbox-a", "tenant": "a"}, {"name": "inbox-b", "tenant": "b"}]


def test_a_storage_open_to_tenant_a_cannot_be_used_by_a_rule_of_tenant_b(site: Site) -> None:
    site.configure(hotfolders=TENANTS, extra='\n[storage.vault]\nkind = "local"\nroot = "vault"\ntenants = ["a"]\n')
    site.rules("""
        tenant: a
        rules:
          - name: to-vault
            do:
              - store: {to: "vault:secrets/{name}"}
    """, "a.yaml")
    assert site.cli("check").returncode == 0
    site.rules("""
        tenant: b
        rules:
          - name: to-vault
            do:
              - store: {to: "vault:secrets/{name}"}
    """, "b.yaml")
    result = site.cli("check")
    assert result.returncode == 1
    assert "rules/b.yaml:" in result.stderr and "storage 'vault' is not open to tenant 'b'" in result.stderr
    assert "a.yaml" not in result.stderr


def test_a_rule_file_sees_only_its_own_tenants_hot_folders(site: Site) -> None:
    site.configure(hotfolders=TENANTS)
    site.rules("""
        tenant: b
        rules:
          - name: steal
            on: [{hotfolder: inbox-a}]
            do:
              - delete: {}
    """, "b.yaml")
    result = site.cli("check")
    assert result.returncode == 1
    assert "no hot folder of tenant 'b' has this name" in result.stderr and "inbox-a" in result.stderr
    assert "allowed: inbox-b" in result.stderr


def test_each_tenants_rules_run_only_on_its_folders_and_jobs_carry_the_tenant(site: Site) -> None:
    site.configure(hotfolders=TENANTS)
    for tenant in ("a", "b"):  # the same rule name in both tenants: names are unique per tenant
        site.rules(f"""
            tenant: {tenant}
            rules:
              - name: ingest
                once: content
                do:
                  - store: {{to: "{{output}}/{{tenant}}/{{hotfolder}}/{{name}}"}}
        """, f"{tenant}.yaml")
    assert site.cli("check").returncode == 0
    site.start()
    site.drop("a.jpg", JPEG, folder="inbox-a")
    site.settled(1)
    site.drop("b.jpg", JPEG, folder="inbox-b")  # the same bytes: tenant a's ledger is not b's
    site.settled(2)
    assert tree(site.lake) == {"assets/a/inbox-a/a.jpg": JPEG, "assets/b/inbox-b/b.jpg": JPEG}
    for name, folder, tenant in (("a.jpg", "inbox-a", "a"), ("b.jpg", "inbox-b", "b")):
        trace = trace_of(site, name, folder)
        assert [r["rule"] for r in trace["rules"]] == ["ingest"]
        assert trace["rules"][0]["file"].startswith(f"rules/{tenant}.yaml")
        assert "skipped" not in trace["rules"][0]
        assert trace["tenant"] == tenant
