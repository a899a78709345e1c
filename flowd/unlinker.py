"""`python -m flowd.unlinker`: a child process that removes a purge's files while the sweep lists the next
batch and writes the database.

Why a process: an unlink waits on the file system (about 100 us here) and, in a thread, then waits for the
GIL the listing thread holds, up to the 5 ms switch interval: a thread removing files beside a busy one was
slower than removing them in line (measured). A process has its own GIL.

Protocol on stdin/stdout, from its parent only: frames of a 4-byte big-endian length and a pickle. In:
(root, [(relpath, size, mtime_ns), ...]); out: one outcome per file, in order: "deleted", "already gone",
"left (changed since detection)" or "error: ...". The same check as every fate (flowd.samefile) comes
first: a file replaced since it was listed, or reached through a folder since swapped for a symlink, stays.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from pathlib import Path
from typing import IO, cast

from flowd.samefile import same_file

Batch = tuple[str, list[tuple[str, int, int]]]


def remove(root: Path, relpath: str, size: int, mtime_ns: int, real_dirs: dict[str, bool]) -> str:
    path = root / relpath
    if not same_file(path, size, mtime_ns, real_dirs):
        return "already gone" if not os.path.lexists(path) else "left (changed since detection)"
    try:
        os.unlink(path)
    except FileNotFoundError:
        return "already gone"
    except OSError as exc:
        return f"error: cannot delete {relpath!r}: {exc.strerror}"
    return "deleted"


def write_frame(out: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()


def read_frame(src: IO[bytes]) -> object | None:
    """The next frame; None at the end of the stream."""
    head = src.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    data = src.read(size)
    if len(data) < size:
        return None
    loaded: object = pickle.loads(data)  # frames come from the parent process only
    return loaded


def main() -> int:
    src, out = sys.stdin.buffer, sys.stdout.buffer
    real_dirs: dict[str, bool] = {}
    while True:
        frame = read_frame(src)
        if frame is None:
            return 0
        root, items = cast(Batch, frame)
        base = Path(root)
        write_frame(out, [remove(base, rel, size, mtime, real_dirs) for rel, size, mtime in items])


if __name__ == "__main__":
    sys.exit(main())
