"""`flowd simulate PATH...`: what the rules would do with these files, touching nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import JPEG, PDF, Site

RULES = """
    rules:
      - name: photos
        if: {format: jpeg}
        do:
          - rename: {to: "{stem}-web{ext}"}
          - store: {to: "{output}/photos/{name}"}
        stop: true

      - name: everything
        do:
          - move: {to: "{output}/all/{relpath}"}
"""


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below root, folders included, with file contents."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")
            if p.name != "__pycache__"}


@pytest.fixture
def prepared(site: Site) -> Site:
    site.rules(RULES)
    site.drop("a.jpg", JPEG)
    site.drop("sub/doc.pdf", PDF)
    (site.root / "elsewhere").mkdir()
    (site.root / "elsewhere/b.jpg").write_bytes(JPEG)
    (site.lake / "assets/photos").mkdir(parents=True)
    (site.lake / "assets/photos/taken-web.jpg").write_bytes(b"someone else's file")
    site.drop("taken.jpg", JPEG)
    return site


def test_simulate_prints_what_would_happen_and_touches_nothing(prepared: Site) -> None:
    site = prepared
    before = snapshot(site.root)
    result = site.cli("simulate", "hot/inbox/a.jpg", "hot/inbox/sub/doc.pdf")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hot/inbox/a.jpg (simulated in inbox): finished" in out
    assert "rule photos (rules/rules.yaml:3): matched" in out
    assert "yes format = 'jpeg'  expected ['jpeg']" in out
    assert "-> rename [done] name=a-web.jpg" in out
    assert "-> store [written] target=lake:assets/photos/a-web.jpg" in out
    assert "hot/inbox/sub/doc.pdf (simulated in inbox): finished" in out
    assert "no  format = 'pdf'  expected ['jpeg']" in out
    assert "-> move [written] target=lake:assets/all/sub/doc.pdf" in out
    assert "source: delete" in out
    assert snapshot(site.root) == before, "simulate wrote, moved or deleted something"
    assert not (site.root / "var").exists(), "simulate created the data dir or database"


def test_simulate_json(prepared: Site) -> None:
    site = prepared
    before = snapshot(site.root)
    paths = [str(site.hot() / "a.jpg"), str(site.hot() / "sub/doc.pdf"), str(site.hot() / "taken.jpg")]
    result = site.cli("simulate", *paths, "--json")
    assert result.returncode == 0, result.stderr
    a, doc, taken = (json.loads(line) for line in result.stdout.splitlines())

    assert a["path"] == paths[0]
    assert a["status"] == "finished" and a["fate"] == "delete"
    assert [r["rule"] for r in a["rules"]] == ["photos"], "stop: true hides `everything`, as in the daemon"
    assert a["rules"][0]["conditions"] == [{"if": "format", "value": "jpeg", "expect": ["jpeg"], "result": True}]
    assert [(s["action"], s.get("name") or s.get("target"), s["outcome"]) for s in a["rules"][0]["actions"]] == [
        ("rename", "a-web.jpg", "done"), ("store", "lake:assets/photos/a-web.jpg", "written")]

    assert [(r["rule"], r["matched"]) for r in doc["rules"]] == [("photos", False), ("everything", True)]
    [move] = doc["rules"][1]["actions"]
    assert (move["action"], move["target"], move["outcome"]) == ("move", "lake:assets/all/sub/doc.pdf", "written")
    assert doc["fate"] == "delete"

    # A target that exists already would fail under conflict: fail, and simulate says so.
    assert taken["status"] == "quarantined" and taken["fate"] == "quarantine"
    assert "lake:assets/photos/taken-web.jpg exists" in taken["error"]["reason"]
    assert taken["error"]["rule"] == "photos"

    assert snapshot(site.root) == before


def test_simulate_a_file_outside_the_hot_folders(prepared: Site) -> None:
    site = prepared
    before = snapshot(site.root)
    result = site.cli("simulate", "elsewhere/b.jpg", "--hotfolder", "inbox", "--json")
    assert result.returncode == 0, result.stderr
    [b] = [json.loads(line) for line in result.stdout.splitlines()]
    assert b["rules"][0]["actions"][1]["target"] == "lake:assets/photos/b-web.jpg"

    result = site.cli("simulate", "elsewhere/b.jpg")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "elsewhere/b.jpg: not inside any hot folder" in result.stderr
    assert "inbox (" in result.stderr and "--hotfolder NAME" in result.stderr
    assert "Traceback" not in result.stderr

    result = site.cli("simulate", "elsewhere/b.jpg", "--hotfolder", "nope")
    assert result.returncode == 1
    assert "no hot folder named 'nope'" in result.stderr

    result = site.cli("simulate", "hot/inbox/missing.jpg")
    assert result.returncode == 1
    assert "hot/inbox/missing.jpg: No such file or directory" in result.stderr
    assert snapshot(site.root) == before
