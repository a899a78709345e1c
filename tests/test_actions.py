"""Actions and conflict policies, end to end through the real daemon.

Each test reads as a specification: what is dropped, what the rules say, and where every byte ends up.
Webhooks are in test_webhook.py; what happens to the source (after, unmatched, retry, tenants) is in
test_fates.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from actions_support import (
    QuickSite,
    actions_of,
    all_attempts,
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


# -- store -----------------------------------------------------------------------------------------------
def test_store_writes_a_copy_and_leaves_the_source_to_the_hot_folder(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: keep-a-copy
            do:
              - store: {to: "{output}/copies/{relpath}"}
    """)
    site.start()
    site.drop("shoot/a.jpg", JPEG)
    site.settled(1)
    assert tree(site.lake) == {"assets/copies/shoot/a.jpg": JPEG}
    assert tree(site.hot()) == {"shoot/a.jpg": JPEG}, "store never removes the source; after=keep keeps it"
    trace = trace_of(site, "shoot/a.jpg")
    assert trace["status"] == "finished" and trace["fate"] == "keep"
    [action] = actions_of(trace, "keep-a-copy")
    assert action["action"] == "store"
    assert action["target"] == "lake:assets/copies/shoot/a.jpg"
    assert action["outcome"] == "written"


# -- move ------------------------------------------------------------------------------------------------
def test_move_stores_and_removes_the_source_even_when_the_hot_folder_keeps(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: file-it
            do:
              - move: {to: "{output}/filed/{name}"}
    """)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    assert tree(site.lake) == {"assets/filed/a.jpg": JPEG}
    assert tree(site.hot()) == {}, "move asks for the source's removal, overriding after=keep"
    trace = trace_of(site, "a.jpg")
    assert trace["fate"] == "delete"
    assert actions_of(trace, "file-it")[0]["target"] == "lake:assets/filed/a.jpg"


# -- rename ----------------------------------------------------------------------------------------------
def test_rename_changes_the_name_for_the_later_steps_of_its_rule_only(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: renamed
            do:
              - rename: {to: "{stem}-web{ext}"}
              - store: {to: "{output}/web/{relpath}"}
          - name: original
            do:
              - store: {to: "{output}/orig/{relpath}"}
    """)
    site.start()
    site.drop("day1/a.jpg", JPEG)
    site.settled(1)
    assert tree(site.lake) == {
        "assets/web/day1/a-web.jpg": JPEG,  # {relpath} follows the new name, keeping its folder
        "assets/orig/day1/a.jpg": JPEG,     # the next rule starts again from the original asset
    }
    assert tree(site.hot()) == {"day1/a.jpg": JPEG}, "rename never renames the source file"
    trace = trace_of(site, "day1/a.jpg")
    rename, _store = actions_of(trace, "renamed")
    assert rename["action"] == "rename" and rename["name"] == "a-web.jpg"


# -- delete ----------------------------------------------------------------------------------------------
def test_delete_removes_the_source_and_stores_nothing(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: drop-temp-files
            if: [{extension: tmpx}]
            do:
              - delete: {}
    """)
    site.start()
    site.drop("junk.tmpx", b"scratch")
    site.drop("keep.jpg", JPEG)  # unmatched: after/unmatched decide (both keep here)
    site.settled(2)
    assert tree(site.hot()) == {"keep.jpg": JPEG}
    assert tree(site.lake) == {}
    trace = trace_of(site, "junk.tmpx")
    assert trace["status"] == "finished" and trace["fate"] == "delete"
    assert actions_of(trace, "drop-temp-files")[0]["outcome"] == "source removal requested"


def test_delete_target_removes_another_stored_file_but_never_outside_its_root(site: Site, tmp_path: Path) -> None:
    """`delete: {target: ...}` removes a rendition (already gone is fine); a symlinked folder planted in the
    storage cannot carry the delete outside it."""
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: withdraw
            if: [{name: "*.withdraw"}]
            do:
              - delete: {target: "lake:web/{stem}.jpg"}
    """)
    (site.lake / "web").mkdir(parents=True)
    (site.lake / "web" / "story.jpg").write_bytes(JPEG)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"not flowd's")
    (site.lake / "web" / "escape").symlink_to(outside)
    site.start()
    site.drop("story.withdraw", b"")
    site.drop("never-was.withdraw", b"")
    site.drop("escape/secret.withdraw", b"")
    site.settled(3)
    assert not (site.lake / "web" / "story.jpg").exists()
    assert actions_of(trace_of(site, "story.withdraw"), "withdraw")[0]["outcome"] == "deleted"
    assert actions_of(trace_of(site, "never-was.withdraw"), "withdraw")[0]["outcome"] == "already gone"
    assert (outside / "secret.jpg").read_bytes() == b"not flowd's"
    assert trace_of(site, "escape/secret.withdraw")["status"] == "finished", "{stem} is a name, not a path"


# -- quarantine ------------------------------------------------------------------------------------------
def test_quarantine_sends_the_source_to_errors_with_a_note_and_stops_the_later_rules(site: Site) -> None:
    site.rules("""
        rules:
          - name: no-pdfs
            if: [{extension: pdf}]
            do:
              - quarantine: {reason: "{name}: PDFs are not accepted here"}
          - name: everything
            do:
              - store: {to: "{output}/all/{relpath}"}
    """)
    site.start()
    site.drop("client/brief.pdf", PDF)
    site.settled(1)
    assert tree(site.lake) == {}, "the rule after the quarantine never ran"
    assert tree(site.hot()) == {}
    errors = site.root / "errors" / "inbox"
    assert (errors / "client/brief.pdf").read_bytes() == PDF, "the errors folder mirrors the relative path"
    [(where, note)] = error_notes(site).items()
    assert where == "client/brief.pdf.error.json"
    trace = trace_of(site, "client/brief.pdf")
    assert note["rule"] == "no-pdfs"
    assert note["step"] == 0
    assert note["reason"] == "brief.pdf: PDFs are not accepted here"
    assert note["job"] == trace["job"]
    assert note["time"]  # ISO timestamp with an offset
    assert trace["status"] == "quarantined" and trace["fate"] == "quarantine"
    assert [r["rule"] for r in trace["rules"]] == ["no-pdfs"], "later rules are not even evaluated"
    [q] = quarantined(site)
    assert q["job"] == trace["job"] and q["file"] == "inbox/client/brief.pdf"
    assert q["error"]["reason"] == "brief.pdf: PDFs are not accepted here"


# -- conflict policies -------------------------------------------------------------------------------------
CONFLICT_RULES = """
    rules:
      - name: to-one-place
        do:
          - store: {{to: "lake:assets/photos/a.jpg"{policy}}}
"""


def test_conflict_fail_is_the_default_and_quarantines_the_second_file(site: Site) -> None:
    site.rules(CONFLICT_RULES.format(policy=""))
    site.start()
    drop_in_turn(site, [("one/a.jpg", JPEG), ("two/a.jpg", PNG)])
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG}, "the first file's output is never replaced"
    assert (site.root / "errors/inbox/two/a.jpg").read_bytes() == PNG
    [q] = quarantined(site)
    assert q["file"] == "inbox/two/a.jpg"
    reason = q["error"]["reason"]
    assert "lake:assets/photos/a.jpg" in reason and "'fail'" in reason
    assert error_notes(site)["two/a.jpg.error.json"]["reason"] == reason
    first = trace_of(site, "one/a.jpg")
    assert first["status"] == "finished"


def test_conflict_overwrite_replaces_the_target(site: Site) -> None:
    site.rules(CONFLICT_RULES.format(policy=", conflict: overwrite"))
    site.start()
    drop_in_turn(site, [("one/a.jpg", JPEG), ("two/a.jpg", PNG)])
    assert tree(site.lake) == {"assets/photos/a.jpg": PNG}
    assert site.status()["states"] == {"done": 2}
    assert tree(site.hot()) == {}


def test_conflict_increment_appends_a_number(site: Site) -> None:
    site.rules(CONFLICT_RULES.format(policy=", conflict: increment"))
    site.start()
    drop_in_turn(site, [("one/a.jpg", JPEG), ("two/a.jpg", PNG), ("three/a.jpg", PDF)])
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG, "assets/photos/a_1.jpg": PNG,
                               "assets/photos/a_2.jpg": PDF}
    third = trace_of(site, "three/a.jpg")
    assert actions_of(third, "to-one-place")[0]["target"] == "lake:assets/photos/a_2.jpg"


def test_conflict_skip_identical_skips_same_bytes_and_quarantines_different_ones(site: Site) -> None:
    site.rules(CONFLICT_RULES.format(policy=", conflict: skip_identical"))
    site.start()
    drop_in_turn(site, [("one/a.jpg", JPEG), ("two/a.jpg", JPEG), ("three/a.jpg", PNG)])
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG}
    second = trace_of(site, "two/a.jpg")
    assert second["status"] == "finished"
    [action] = actions_of(second, "to-one-place")
    assert action["outcome"] == "skipped" and action["target"] == "lake:assets/photos/a.jpg"
    assert not (site.hot() / "two/a.jpg").exists(), "a skipped write is a success: after=delete applies"
    [q] = quarantined(site)
    assert q["file"] == "inbox/three/a.jpg"
    assert "lake:assets/photos/a.jpg" in q["error"]["reason"] and "skip_identical" in q["error"]["reason"]
    assert (site.root / "errors/inbox/three/a.jpg").read_bytes() == PNG


def test_a_folder_where_a_file_is_needed_is_permanent_not_retried(site: Site) -> None:
    """A file in the way of a folder will not go away by waiting: quarantined on the first attempt."""
    (site.lake / "assets").mkdir(parents=True)
    (site.lake / "assets/photos").write_bytes(b"I am a file, not a folder")
    site.rules("""
        rules:
          - name: photos
            do:
              - store: {to: "{output}/photos/{name}"}
    """)
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    [q] = quarantined(site)
    assert "photos" in q["error"]["reason"]
    assert (site.root / "errors/inbox/a.jpg").read_bytes() == JPEG
    assert [t["attempt"] for t in all_attempts(site, "a.jpg")] == [1], "a permanent error is not retried"
    assert site.status()["waiting"] == []
    wait_for(lambda: "quarantined inbox/a.jpg" in site.log(), message="the quarantine in the daemon log")
