"""Nothing lost, nothing done twice: the daemon is SIGKILLed at random moments while 2,000 files flow."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from pathlib import Path

from conftest import Site, tree

FILES = 2000
KILLS = 6


def _payload(i: int) -> bytes:
    # Complete files (JPEG end marker, PDF %%EOF): a file cut short would wait for the rest of it.
    jpeg = b"\xff\xd8\xff\xda\x00\x02", b"\xff\xd9"  # start, a scan header, ..., end of image
    head, tail = jpeg if i % 2 == 0 else (b"%PDF-1.4\n", b"\n%%EOF\n")
    return head + hashlib.sha256(str(i).encode()).digest() * (1 + i % 50) + tail


def _name(i: int) -> str:
    return f"batch{i % 7}/file{i:05d}.{'jpg' if i % 2 == 0 else 'pdf'}"


def test_sigkill_at_random_moments_loses_nothing_and_repeats_nothing(site: Site) -> None:
    site.configure(workers=3)
    # Two matching rules per file (fan-out), `increment` so any double write would show up as a `_1` file,
    # and a rename so the output name is computed, not copied.
    site.rules("""
        rules:
          - name: originals
            do:
              - store: {to: "lake:originals/{relpath}"}
          - name: working
            if: [{format: [jpeg, pdf]}]
            do:
              - rename: {to: "{stem}-w{ext}"}
              - store: {to: "{output}/{extension}/{now:%Y}/{name}", conflict: increment}
    """)
    rng = random.Random(20261128)
    expected = {i: _payload(i) for i in range(FILES)}
    for i in range(FILES // 2):  # half are waiting before the first start
        site.drop(_name(i), expected[i])

    def late_drops() -> None:
        for i in range(FILES // 2, FILES):
            site.drop(_name(i), expected[i])
            if i % 50 == 0:
                time.sleep(0.05)

    dropper = threading.Thread(target=late_drops)
    kills = 0
    while kills < KILLS:
        site.start()
        if kills == 1:
            dropper.start()
        time.sleep(rng.uniform(0.05, 0.6))
        site.kill()
        kills += 1
    dropper.join()
    site.start()
    site.settled(FILES, timeout=120)
    assert site.stop() == 0

    lake = tree(site.lake)
    year = time.strftime("%Y")
    want = {}
    for i, data in expected.items():
        folder, name = _name(i).split("/")
        stem, ext = name.rsplit(".", 1)
        want[f"originals/{folder}/{name}"] = data
        want[f"assets/{ext}/{year}/{stem}-w.{ext}"] = data
    extra = sorted(set(lake) - set(want))
    missing = sorted(set(want) - set(lake))
    assert not missing, f"{len(missing)} outputs missing, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} unexpected files (duplicates or temp files), e.g. {extra[:5]}"
    wrong = [k for k, v in want.items() if lake[k] != v]
    assert not wrong, f"{len(wrong)} outputs with wrong bytes, e.g. {wrong[:5]}"
    assert tree(site.hot()) == {}, "sources left in the hot folder"
    assert not (site.root / "errors").exists() or tree(site.root / "errors") == {}

    db = sqlite3.connect(site.root / "var" / "flowd.db")
    states = dict(db.execute("select state, count(*) from jobs group by state").fetchall())
    assert states == {"done": FILES}, states
    untraced = db.execute("select count(*) from jobs where id not in (select job_id from traces)").fetchone()[0]
    assert untraced == 0
    assert db.execute("select count(distinct relpath) from jobs").fetchone()[0] == FILES
    assert "Traceback" not in site.log()


def test_sigkill_during_metadata_and_pixel_work_leaves_each_output_once(site: Site, tmp_path: Path) -> None:
    """The same guarantee for rules that rewrite bytes: an edit or conversion interrupted by SIGKILL is
    redone from the untouched source, never applied twice, and its work files do not outlive the run."""
    import pyvips

    from flowd.metadata.fields import DEFAULT_FIELDS
    from flowd.metadata.model import Metadata

    n = 120
    config = site.configure(workers=3)
    config.write_text(config.read_text().replace("workers = 3", "workers = 3\nbatch_size = 8"))  # journal often
    site.rules("""
        rules:
          - name: originals
            do:
              - store: {to: "lake:originals/{name}"}
          - name: web
            do:
              - set_metadata:
                  - {field: keywords, action: append, value: wire}
                  - {field: headline, action: replace, value: "{stem}"}
              - convert: {resize: {fit: [24, 24]}, format: {type: png}}
              - store: {to: "{output}/web/{name}", conflict: increment}
    """)
    src = tmp_path / "src"
    src.mkdir()
    expected: dict[str, bytes] = {}
    for i in range(n):
        path = src / f"p{i:03d}.jpg"
        (pyvips.Image.black(48, 32, bands=3) + (i * 2 % 255)).jpegsave(str(path), Q=80)
        expected[path.name] = path.read_bytes()
    for name, data in expected.items():
        site.drop(name, data)
    rng = random.Random(3)
    kills = mid_work = 0
    while kills < 12 and (kills < 4 or not mid_work):  # at least one kill must land while work is in hand
        site.start()
        time.sleep(rng.uniform(0.1, 0.6))
        site.kill()
        kills += 1
        if tree(site.lake) and site.states().get("done", 0) < n:
            mid_work += 1
    assert mid_work, "no kill fell while outputs were being written"
    site.start()
    site.settled(n, timeout=120)
    assert site.stop() == 0

    lake = tree(site.lake)
    want = {f"originals/{k}" for k in expected} | {f"assets/web/{k[:-4]}.png" for k in expected}
    assert set(lake) == want, f"missing {sorted(want - set(lake))[:5]}, extra {sorted(set(lake) - want)[:5]}"
    assert all(lake[f"originals/{k}"] == v for k, v in expected.items())
    keywords, headline = DEFAULT_FIELDS.resolve("keywords"), DEFAULT_FIELDS.resolve("headline")
    for key in sorted(k for k in lake if k.startswith("assets/web/")):
        meta = Metadata.read(site.lake / key)
        assert meta.get(keywords) == ["wire"], (key, meta.get(keywords))
        assert meta.text(headline) == key.rsplit("/", 1)[1][:-4]
        assert pyvips.Image.new_from_file(str(site.lake / key)).width == 24
    assert tree(site.hot()) == {}
    work = site.root / "var" / "work"
    assert not [p for p in work.rglob("*") if p.is_file()], "work files outlived the run"
