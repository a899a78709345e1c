"""Detection through the real daemon and real inotify: when a file counts as complete, which names wait,
how files that arrive by rename, mkdir or a whole tree are found, polling, and the scans that catch what
events miss — always exactly one job per file version."""

from __future__ import annotations

import os
import threading
import time

from conftest import JPEG, PDF, PNG, Site, tree, wait_for
from dbview import job_rows, settle

STORE_ALL = """
    rules:
      - name: all
        do:
          - store: {to: "{output}/{relpath}", conflict: increment}
"""


# -- when is a file complete? ------------------------------------------------------------------------------
def test_slow_writer_is_processed_only_once_stable_with_all_bytes(site: Site) -> None:
    site.configure(hotfolders=[{"stable_seconds": 1.5}])
    site.rules(STORE_ALL)
    site.start()
    path = site.hot() / "slow.jpg"
    chunks = [bytes([i]) * 8192 for i in range(10)]  # 10 chunks, one every 0.3 s: ~3 s of writing
    opened = threading.Event()

    def writer() -> None:
        with open(path, "wb") as fh:
            opened.set()
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                time.sleep(0.3)

    thread = threading.Thread(target=writer)
    thread.start()
    opened.wait(5)
    while thread.is_alive():
        assert not (site.lake / "assets/slow.jpg").exists(), "a file still being written was stored"
        assert job_rows(site) == [], "a file still being written became a job"
        time.sleep(0.1)
    thread.join()
    finished_writing = time.monotonic()
    wait_for(lambda: (site.lake / "assets/slow.jpg").exists(), 20, message="the completed file stored")
    # stable_seconds is honoured after the last write, not just somewhere during the writing
    assert time.monotonic() - finished_writing >= 1.0
    settle(site, 1)
    assert tree(site.lake) == {"assets/slow.jpg": b"".join(chunks)}
    assert [(r[0], r[1]) for r in job_rows(site)] == [("slow.jpg", "done")]
    assert not path.exists()


def test_a_stalled_upload_is_not_taken_while_still_open_for_writing(site: Site) -> None:
    """Quiet for longer than stable_seconds is not enough: a writer that still holds the file open (an FTP
    upload stuck on a slow line) keeps it from being taken, until it writes the rest and closes."""
    site.configure(hotfolders=[{"stable_seconds": 0.5}])
    site.rules(STORE_ALL)
    site.start()
    path = site.hot() / "stalled.jpg"
    with open(path, "wb") as fh:
        fh.write(JPEG[:100])
        fh.flush()
        time.sleep(3)  # six times the stability window without a byte
        assert job_rows(site) == [], "a file still open for writing became a job"
        fh.write(JPEG[100:])
    wait_for(lambda: (site.lake / "assets/stalled.jpg").exists(), 20, message="the completed file stored")
    settle(site, 1)
    assert tree(site.lake) == {"assets/stalled.jpg": JPEG}


def test_stable_zero_processes_on_close_not_while_open(site: Site) -> None:
    site.configure(hotfolders=[{"stable_seconds": 0}])
    site.rules(STORE_ALL)
    site.start()
    path = site.hot() / "open.pdf"
    with open(path, "wb") as fh:
        for i in range(6):  # ~1.8 s open, written every 0.3 s: never quiet long enough to be taken
            fh.write(PDF + bytes([i]) * 1000)
            fh.flush()
            time.sleep(0.3)
            assert not (site.lake / "assets/open.pdf").exists(), "a file still open for writing was stored"
        assert job_rows(site) == []
    wait_for(lambda: (site.lake / "assets/open.pdf").exists(), 15, message="the closed file stored")
    settle(site, 1)
    assert tree(site.lake) == {"assets/open.pdf": b"".join(PDF + bytes([i]) * 1000 for i in range(6))}
    assert len(job_rows(site)) == 1


def test_temp_names_wait_until_renamed_then_are_processed_once(site: Site) -> None:
    site.configure(rescan_seconds=1)  # rescans run meanwhile: they must skip temp names too
    site.rules(STORE_ALL)
    site.start()
    hot = site.hot()
    temps = {"a.jpg.part": "a.jpg", "b.jpg.tmp": "b.jpg", "c.pdf.crdownload": "c.pdf", "~$d.docx": "d.docx",
             ".e.png": "e.png", "sub/.f.jpg": "sub/f.jpg"}
    data = {final: bytes([i]) * 100 + JPEG for i, final in enumerate(temps.values())}
    for temp, final in temps.items():
        (hot / temp).parent.mkdir(parents=True, exist_ok=True)
        (hot / temp).write_bytes(data[final])  # written and closed under the temp name
    time.sleep(1.6)  # > CREATED_ONLY_GRACE and > 1 rescan
    site.drop("sentinel.jpg")
    settle(site, 1)
    assert [r[0] for r in job_rows(site)] == ["sentinel.jpg"], "a temp name became a job"
    for temp in temps:
        assert (hot / temp).exists(), f"{temp} was touched while it had a temp name"

    for temp, final in temps.items():
        os.rename(hot / temp, hot / final)
    settle(site, 7)
    time.sleep(1.5)  # a rescan after processing must not queue anything again
    settle(site, 7)
    rows = job_rows(site)
    assert sorted(r[0] for r in rows) == sorted([*temps.values(), "sentinel.jpg"])
    assert all(r[1:] == ("done", "finished") for r in rows), rows
    assert tree(site.lake) == {"assets/sentinel.jpg": JPEG, **{f"assets/{k}": v for k, v in data.items()}}
    assert tree(hot) == {}


def test_files_in_an_ignored_folder_wait_until_the_folder_is_renamed(site: Site) -> None:
    """Uploaders stage whole folders under a temp name (`.upload-123/`, `batch.tmp/`): nothing inside
    may be taken until the folder gets its real name, however old the files are."""
    site.configure(rescan_seconds=1)
    site.rules(STORE_ALL)
    site.start()
    hot = site.hot()
    staged = {".upload-1/a.jpg": JPEG, ".upload-1/deep/b.pdf": PDF, "batch.tmp/c.png": PNG}
    for rel, data in staged.items():
        (hot / rel).parent.mkdir(parents=True, exist_ok=True)  # new folders: scanned on creation
        (hot / rel).write_bytes(data)
    time.sleep(1.6)  # > CREATED_ONLY_GRACE and a rescan
    site.drop("sentinel.jpg")
    settle(site, 1)
    assert [r[0] for r in job_rows(site)] == ["sentinel.jpg"], "a file in a staging folder was taken"
    os.rename(hot / ".upload-1", hot / "upload-1")
    os.rename(hot / "batch.tmp", hot / "batch")
    settle(site, 4)
    assert tree(site.lake) == {"assets/sentinel.jpg": JPEG, "assets/upload-1/a.jpg": JPEG,
                               "assets/upload-1/deep/b.pdf": PDF, "assets/batch/c.png": PNG}
    assert len(job_rows(site)) == 4


# -- how files arrive ------------------------------------------------------------------------------------
def test_moved_in_mkdir_and_whole_tree_are_all_processed(site: Site) -> None:
    site.rules(STORE_ALL)
    site.start()
    hot = site.hot()
    outside = site.root / "outside"
    outside.mkdir()
    expected: dict[str, bytes] = {}

    # 1. a file renamed in from a sibling folder: inotify sees only IN_MOVED_TO, no close
    (outside / "moved.jpg").write_bytes(JPEG + b"moved")
    os.rename(outside / "moved.jpg", hot / "moved.jpg")
    expected["moved.jpg"] = JPEG + b"moved"

    # 2. files written right after makedirs: the new folders are not watched yet when they are written
    os.makedirs(hot / "new" / "deep" / "er")
    for rel in ("new/n1.jpg", "new/deep/n2.jpg", "new/deep/er/n3.jpg"):
        with open(hot / rel, "wb") as fh:
            fh.write(PNG + rel.encode())
        expected[rel] = PNG + rel.encode()

    # 3. a whole folder tree moved in at once
    src = outside / "tree"
    for rel in ("t1.pdf", "x/t2.pdf", "x/y/t3.pdf", "x/y/z/t4.pdf"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(PDF + rel.encode())
        expected[f"tree/{rel}"] = PDF + rel.encode()
    os.rename(src, hot / "tree")

    settle(site, len(expected), timeout=20)
    assert tree(site.lake) == {f"assets/{k}": v for k, v in expected.items()}
    assert sorted(r[0] for r in job_rows(site)) == sorted(expected), "one job per file"
    assert tree(hot) == {}


def test_polling_observer_processes_files(site: Site) -> None:
    site.configure(hotfolders=[{"poll_seconds": 0.5}])
    site.rules(STORE_ALL)
    site.start()
    site.drop("renamed.jpg")                       # temp name, then rename
    (site.hot() / "direct.pdf").write_bytes(PDF)   # written in place: a poller sees no close
    site.drop("sub/folder/deep.png", PNG)
    settle(site, 3, timeout=20)
    assert tree(site.lake) == {"assets/renamed.jpg": JPEG, "assets/direct.pdf": PDF, "assets/sub/folder/deep.png": PNG}
    assert len(job_rows(site)) == 3


# -- scans -------------------------------------------------------------------------------------------------
def test_startup_scan_and_files_dropped_while_stopped(site: Site) -> None:
    site.rules(STORE_ALL)
    before = {f"early{i}.jpg": JPEG + bytes([i]) for i in range(3)}
    for name, data in before.items():
        site.drop(name, data)
    old = site.hot() / "old/archive.pdf"
    old.parent.mkdir()
    old.write_bytes(PDF)
    os.utime(old, (time.time() - 86400, time.time() - 86400))  # old enough to be taken at once
    site.start()
    settle(site, 4)
    assert site.stop() == 0

    while_stopped = {f"late{i}.jpg": JPEG + bytes([i]) * 2 for i in range(3)}
    for name, data in while_stopped.items():
        site.drop(name, data)
    site.start()
    settle(site, 7)
    assert tree(site.lake) == {**{f"assets/{k}": v for k, v in {**before, **while_stopped}.items()},
                            "assets/old/archive.pdf": PDF}
    assert len(job_rows(site)) == 7
    assert tree(site.hot()) == {}


def test_rescan_catches_a_change_inotify_never_reported(site: Site) -> None:
    """A write through a hard link outside the hot folder raises no inotify event for the hot folder
    (the same happens with writes by an NFS/SMB server or another mount). Only the rescan can see it."""
    site.configure(hotfolders=[{"after": "keep"}], rescan_seconds=1)
    site.rules(STORE_ALL)
    site.start()
    outside = site.root / "outside"
    outside.mkdir()
    (outside / "report.pdf").write_bytes(PDF)
    os.link(outside / "report.pdf", site.hot() / "report.pdf")  # published into the hot folder
    settle(site, 1)
    assert tree(site.lake) == {"assets/report.pdf": PDF}

    with open(outside / "report.pdf", "ab") as fh:  # the kept source gets new bytes, silently
        fh.write(b"% appended revision\n")
    past = time.time() - 3600  # an old mtime: the scan queues it directly and says so in the log
    os.utime(outside / "report.pdf", (past, past))
    settle(site, 2, timeout=20)
    assert tree(site.lake) == {"assets/report.pdf": PDF, "assets/report_1.pdf": PDF + b"% appended revision\n"}
    assert "scan of inbox queued 1 file(s)" in site.log()
    time.sleep(2.2)  # two more rescans: the kept file is known now and never queued again
    assert len(job_rows(site)) == 2


def test_rescan_is_the_safety_net_for_a_slow_poller(site: Site) -> None:
    # A poller that looks only once an hour: only the periodic reconciliation can find the file.
    site.configure(hotfolders=[{"poll_seconds": 3600}], rescan_seconds=1)
    site.rules(STORE_ALL)
    site.start()
    site.drop("late.jpg")
    settle(site, 1, timeout=20)
    assert tree(site.lake) == {"assets/late.jpg": JPEG}
    assert site.stop() == 0, "an hour-long poll interval must not delay shutdown"


def test_a_file_seen_by_events_and_many_scans_is_one_job(site: Site) -> None:
    # after = keep and a rescan every 0.3 s: every file is offered by its events and again by every scan.
    site.configure(hotfolders=[{"after": "keep"}], rescan_seconds=0.3)
    site.rules(STORE_ALL)
    pre = {f"pre{i:02}.jpg": JPEG + bytes([i]) for i in range(15)}
    for name, data in pre.items():
        site.drop(name, data)  # fresh mtimes: the startup scan hands them to the stability tracker
    site.start()
    live: dict[str, bytes] = {}
    for i in range(25):
        live[f"live/f{i:02}.jpg"] = JPEG + bytes([i]) * 3
        site.drop(f"live/f{i:02}.jpg", live[f"live/f{i:02}.jpg"])
        if i % 5 == 0:
            (site.hot() / f"direct{i}.png").write_bytes(PNG + bytes([i]))  # close event + scans
            live[f"direct{i}.png"] = PNG + bytes([i])
    total = len(pre) + len(live)
    settle(site, total, timeout=30)
    time.sleep(1.5)  # several more rescans over files that all still sit in the hot folder
    settle(site, total)
    st = site.status()
    assert sum(st["states"].values()) == total and st["outcomes"] == {"finished": total}, st
    rows = job_rows(site)
    assert len(rows) == total and len({r[0] for r in rows}) == total, "a file became more than one job"
    # conflict: increment would have made a second copy (name_1.jpg) for any duplicate job
    assert tree(site.lake) == {f"assets/{k}": v for k, v in {**pre, **live}.items()}
    [trace] = site.traces("pre03.jpg")
    assert trace["status"] == "finished"
