"""Is this still the file that was detected? A module of its own, importing only the standard library: the
purge's unlinker process uses it too, and must start in milliseconds."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def same_file(path: Path, size: int, mtime_ns: int, real_dirs: dict[str, bool] | None = None) -> bool:
    """Still the regular file that was detected: not replaced by a FIFO or a symlink, and not reached
    through a folder since swapped for a symlink (that would read or delete a file outside the hot folder).

    `real_dirs` caches the folder check for one batch: realpath() costs an lstat per path component."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not (stat.S_ISREG(st.st_mode) and st.st_size == size and st.st_mtime_ns == mtime_ns):
        return False
    parent = str(path.parent)
    real = real_dirs.get(parent) if real_dirs is not None else None
    if real is None:
        real = os.path.realpath(parent) == os.path.normpath(parent)
        if real_dirs is not None:
            real_dirs[parent] = real
    return real
