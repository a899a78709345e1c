"""Hostile names and file types in a hot folder: dots, newlines, 255-byte and undecodable names, symlinks
that point out of the folder, FIFOs. Each is processed correctly or left/quarantined with a reason; nothing
is ever read or written outside the hot folder, lake and errors roots; no worker crashes; the daemon goes
on processing ordinary files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import JPEG, PDF, Site, tree
from dbview import job_rows, settle, states

STORE_ALL = """
    rules:
      - name: all
        do:
          - store: {to: "{output}/{relpath}"}
"""


def allow_dot_files(site: Site) -> None:
    """Ignore only *.part, so that names such as '..foo' reach the rules instead of being skipped."""
    text = site.config.read_text()
    site.config.write_text(text.replace("recursive = true\n", 'recursive = true\nignore = ["*.part"]\n'))


def write(path: Path | bytes, data: bytes) -> None:
    """Write in place (no temp name: some of these names are too long to take a suffix) and close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def everything(root: Path) -> set[bytes]:
    """Every path below root as raw bytes, symlinks not followed."""
    out = set()
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(folder, name), os.fsencode(root)))
    return out


def assert_healthy(site: Site) -> None:
    """The daemon is alive and its log has no traceback, crashed worker or internal error."""
    assert site.proc is not None and site.proc.poll() is None, site.log()
    log = site.log()
    for bad in ("Traceback", "worker error", "internal error", "event handling failed", "stability check failed",
                "scan failed"):
        assert bad not in log, f"{bad!r} in the log:\n{log}"


def test_hostile_names_are_stored_under_their_exact_bytes(site: Site) -> None:
    site.configure(rescan_seconds=1)
    allow_dot_files(site)
    site.rules(STORE_ALL)
    site.start()
    hot = site.hot()
    names = {
        b"..foo": b"dot dot foo",
        b"...": b"three dots",
        b"a..b.jpg": JPEG,
        b"new\nline.jpg": JPEG + b"\n",
        b"tab\tand space .pdf": PDF,
        b"x" * 251 + b".jpg": b"255 ascii bytes",
        "é".encode() * 125 + b".jpg": b"254 bytes of 2-byte characters",
        b"bad\xff\xfeutf8.jpg": b"undecodable",
        b"\xe9t\xe9.jpg": b"latin-1 name",
        b"..dir/..inner": b"dot dot folder",
        b"dir\nnl/\xff.pdf": b"newline folder, undecodable file",
        b"-rf": b"looks like an option",
    }
    for raw, data in names.items():
        path = os.path.join(os.fsencode(hot), raw)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(path, data)
    settle(site, len(names), timeout=30)

    lake = os.fsencode(site.lake / "assets")
    for raw, data in names.items():
        with open(os.path.join(lake, raw), "rb") as fh:
            assert fh.read() == data, raw
    assert everything(site.lake / "assets") == set(names) | {b"..dir", b"dir\nnl"}
    assert everything(hot) == {b"..dir", b"dir\nnl"}, "every source is deleted (its folders stay)"
    rows = job_rows(site)
    assert len(rows) == len(names) and {r[1:] for r in rows} == {("done", "finished")}, rows
    # people see undecodable bytes escaped, not mangled
    assert "bad\\xff\\xfeutf8.jpg" in {r[0] for r in rows}
    assert set(os.listdir(site.root)) <= {"flowd.toml", "rules", "hot", "lake", "var", "flowd.log", "notify.sock"}
    site.drop("normal.jpg")
    settle(site, len(names) + 1)
    assert (site.lake / "assets/normal.jpg").read_bytes() == JPEG
    assert_healthy(site)


def test_quarantine_of_hostile_names_writes_a_readable_reason(site: Site) -> None:
    allow_dot_files(site)
    site.rules("""
        rules:
          - name: reject
            if: [{extension: bad}]
            do:
              - quarantine: {reason: "rejected {name}"}
    """)
    site.start()
    names = [b"q" * 251 + b".bad",  # 255 bytes: "<name>.error.json" cannot sit beside it as is
             b"r" * 241 + b".bad",  # 245: the note's name fits, its temp name would not
             b"nl\nq.bad", b"\xff\xfe.bad", b"..bad"]
    for raw in names:
        write(os.path.join(os.fsencode(site.hot()), raw), b"reject me")
    settle(site, len(names))
    assert states(site) == {"quarantined": len(names)}
    errors = os.fsencode(site.root / "errors" / "inbox")
    held = set(os.listdir(errors))
    notes = {n for n in held if n.endswith(b".error.json")}
    assert held - notes == set(names), "every file is moved to errors under its own name"
    assert len(notes) == len(names), held
    files = []
    for note in notes:
        with open(os.path.join(errors, note), "rb") as fh:
            body = json.loads(fh.read().decode("utf-8"))  # valid UTF-8 JSON even for undecodable names
        assert body["reason"].startswith("rejected ") and body["rule"] == "reject", body
        files.append(body["file"])
    assert sorted(files) == sorted(["q" * 251 + ".bad", "r" * 241 + ".bad", "nl\nq.bad", "\\xff\\xfe.bad",
                                    "..bad"])
    assert everything(site.hot()) == set()
    assert tree(site.lake) == {}
    assert_healthy(site)


def test_rename_to_a_name_over_255_bytes_quarantines_with_a_reason(site: Site) -> None:
    site.rules("""
        rules:
          - name: triple
            do:
              - rename: {to: "{stem}-{stem}-{stem}{ext}"}
              - store: {to: "{output}/{name}"}
    """)
    site.start()
    site.drop("short.jpg")
    site.drop("l" * 100 + ".jpg")  # renders to 306 bytes
    settle(site, 2)
    assert tree(site.lake) == {"assets/short-short-short.jpg": JPEG}
    assert states(site) == {"done": 1, "quarantined": 1}
    held = site.root / "errors" / "inbox"
    assert (held / ("l" * 100 + ".jpg")).read_bytes() == JPEG
    note = json.loads((held / ("l" * 100 + ".jpg.error.json")).read_text())
    assert note["rule"] == "triple" and note["action"] == "rename"
    assert "more than 255 bytes" in note["reason"], note
    [trace] = site.traces("l" * 100 + ".jpg")
    assert "more than 255 bytes" in trace["error"]["reason"]
    status = site.cli("status").stdout
    assert "more than 255 bytes" in status and "rule triple step 0 (rename)" in status, status
    assert_healthy(site)


@pytest.mark.parametrize("poll", [0, 0.3], ids=["inotify", "polling"])
def test_symlinks_out_of_the_hot_folder_are_never_followed(site: Site, poll: float) -> None:
    site.configure(hotfolders=[{"poll_seconds": poll}], rescan_seconds=1)
    site.rules(STORE_ALL)
    outside = site.root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(b"SECRET FILE")
    (outside / "dir" / "inner.jpg").write_bytes(b"SECRET DIR FILE")
    hot = site.hot()
    os.symlink(outside / "secret.jpg", hot / "early-link.jpg")  # present at the startup scan
    os.symlink(outside / "dir", hot / "early-dir")
    site.start()
    os.symlink(outside / "secret.jpg", hot / "link.jpg")        # created while watching
    os.symlink(outside / "dir", hot / "linkdir")
    os.makedirs(hot / "sub")
    os.symlink("../../../outside/dir", hot / "sub" / "relative")
    time.sleep(0.5)
    (outside / "dir" / "later.jpg").write_bytes(b"SECRET LATER")  # appears behind the linked folder
    (outside / "dir" / "new").mkdir()
    (outside / "dir" / "new" / "deeper.jpg").write_bytes(b"SECRET DEEPER")
    time.sleep(2.5)  # > CREATED_ONLY_GRACE, > 2 rescans, > several polls
    site.drop("normal.jpg")
    settle(site, 1)
    time.sleep(1.2)  # one more rescan after the folder changed
    assert job_rows(site) == [("normal.jpg", "done", "finished")]
    assert tree(site.lake) == {"assets/normal.jpg": JPEG}
    assert tree(outside) == {"secret.jpg": b"SECRET FILE", "dir/inner.jpg": b"SECRET DIR FILE",
                             "dir/later.jpg": b"SECRET LATER", "dir/new/deeper.jpg": b"SECRET DEEPER"}
    assert everything(hot) == {b"early-link.jpg", b"early-dir", b"link.jpg", b"linkdir", b"sub",
                                            b"sub/relative"}
    assert_healthy(site)


def test_fifo_does_not_hang_a_worker(site: Site) -> None:
    site.configure(rescan_seconds=1)
    site.rules(STORE_ALL)
    hot = site.hot()
    os.mkfifo(hot / "early.jpg")
    site.start()
    os.mkfifo(hot / "pipe.jpg")
    os.makedirs(hot / "sub")
    os.mkfifo(hot / "sub" / "pipe.pdf")
    write(hot / "..foo.jpg", b"a dot-file under the default ignore list")
    time.sleep(2.2)  # > CREATED_ONLY_GRACE and two rescans
    for i in range(5):
        site.drop(f"after{i}.jpg")
    settle(site, 5)
    assert tree(site.lake) == {f"assets/after{i}.jpg": JPEG for i in range(5)}
    assert sorted(r[0] for r in job_rows(site)) == [f"after{i}.jpg" for i in range(5)]
    assert everything(hot) == {b"early.jpg", b"pipe.jpg", b"sub", b"sub/pipe.pdf", b"..foo.jpg"}
    assert_healthy(site)


def queue_then_swap(site: Site, relpath: str, swap) -> None:  # type: ignore[no-untyped-def]
    """A regular file becomes a queued job while the daemon is stopped (as after a restart with a backlog);
    then `swap` replaces what is at that path, keeping size and mtime, before any worker looks at it."""
    from flowd.db import Database
    from flowd.queue import Detected, JobQueue

    path = site.hot() / relpath
    st = os.lstat(path)
    (site.root / "var").mkdir(exist_ok=True)
    db = Database(f"sqlite:///{site.root / 'var' / 'flowd.db'}")
    try:
        JobQueue(db).enqueue([Detected("default", "inbox", relpath, st.st_size, st.st_mtime_ns)])
    finally:
        db.engine.dispose()
    swap(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def test_a_queued_file_swapped_for_a_fifo_does_not_hang_a_worker(site: Site) -> None:
    site.configure(workers=1)
    site.rules(STORE_ALL)
    (site.hot() / "swap.jpg").write_bytes(b"")

    def to_fifo(path: Path) -> None:
        path.unlink()
        os.mkfifo(path)

    queue_then_swap(site, "swap.jpg", to_fifo)
    site.start()
    settle(site, 1)
    site.drop("after.jpg")  # the only worker is free: it was not stuck in open()
    settle(site, 2)
    assert tree(site.lake) == {"assets/after.jpg": JPEG}
    assert everything(site.hot()) == {b"swap.jpg"}, "the FIFO is left alone"
    assert {r[0]: r[2] for r in job_rows(site)}["swap.jpg"] in ("superseded", "vanished", "quarantined")
    assert_healthy(site)
    assert site.stop(timeout=20) == 0


def test_a_queued_file_whose_folder_became_a_symlink_is_not_read_or_deleted(site: Site) -> None:
    site.rules(STORE_ALL)
    outside = site.root / "outside"
    outside.mkdir()
    (site.hot() / "sub").mkdir()
    (site.hot() / "sub" / "victim.jpg").write_bytes(b"SAME SIZE")
    (outside / "victim.jpg").write_bytes(b"SECRET!!!")

    def to_symlinked_folder(path: Path) -> None:
        os.unlink(path)
        os.rmdir(path.parent)
        os.symlink(outside, path.parent)

    st = os.lstat(site.hot() / "sub" / "victim.jpg")
    queue_then_swap(site, "sub/victim.jpg", to_symlinked_folder)  # utime lands on outside/victim.jpg
    assert os.lstat(outside / "victim.jpg").st_mtime_ns == st.st_mtime_ns
    site.start()
    settle(site, 1)
    assert tree(outside) == {"victim.jpg": b"SECRET!!!"}, "a file outside the hot folder was touched"
    assert tree(site.lake) == {}
    site.drop("after.jpg")
    settle(site, 2)
    assert tree(site.lake) == {"assets/after.jpg": JPEG}
    assert_healthy(site)

