"""Nothing lost, nothing done twice: the daemon is SIGKILLed at random moments while 2,000 files flow."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time

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
