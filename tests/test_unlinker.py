"""The purge's unlinker process: the same check as every fate before a file is removed, and its frames over
real pipes to a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flowd import unlinker


def test_it_removes_only_the_file_that_was_listed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "d").mkdir(parents=True)
    listed = {}
    for name in ("keep-size.jpg", "gone.jpg", "ok.jpg", "d/ok.jpg"):
        path = root / name
        path.write_bytes(b"x" * 10)
        st = path.stat()
        listed[name] = (st.st_size, st.st_mtime_ns)
    (root / "keep-size.jpg").write_bytes(b"x" * 11)  # new bytes since the listing
    (root / "gone.jpg").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "ok.jpg").write_bytes(b"x" * 10)
    os.utime(outside / "ok.jpg", ns=(listed["d/ok.jpg"][1], listed["d/ok.jpg"][1]))
    os.unlink(root / "d" / "ok.jpg")
    os.rmdir(root / "d")
    os.symlink(outside, root / "d")  # the folder swapped for a symlink to elsewhere since the listing
    real_dirs: dict[str, bool] = {}
    got = {name: unlinker.remove(root, name, *listed[name], real_dirs) for name in listed}
    assert got == {"keep-size.jpg": "left (changed since detection)", "gone.jpg": "already gone",
                   "ok.jpg": "deleted", "d/ok.jpg": "left (changed since detection)"}
    assert (root / "keep-size.jpg").exists() and (outside / "ok.jpg").exists()
    assert not (root / "ok.jpg").exists()


def test_the_child_process_answers_each_batch_in_order(tmp_path: Path) -> None:
    names = [f"f{i}.jpg" for i in range(5)]
    items = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(b"y")
        st = path.stat()
        items.append((name, st.st_size, st.st_mtime_ns))
    child = subprocess.Popen([sys.executable, "-m", "flowd.unlinker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    unlinker.write_frame(child.stdin, (str(tmp_path), items[:3]))
    unlinker.write_frame(child.stdin, (str(tmp_path), items[3:] + [("missing.jpg", 1, 1)]))
    assert unlinker.read_frame(child.stdout) == ["deleted"] * 3
    assert unlinker.read_frame(child.stdout) == ["deleted", "deleted", "already gone"]
    child.stdin.close()
    assert child.wait(10) == 0
    child.stdout.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
