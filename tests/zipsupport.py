"""Building archives for the ZIP tests, hostile ones included: what zipfile will not write (encrypted flags,
unknown methods, lying sizes) is patched into the headers afterwards, as a hostile tool would write it."""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

Member = tuple[str | zipfile.ZipInfo, bytes]

# field: (format, offset in the local header, offset in the central header)
FIELDS = {"flag_bits": ("<H", 6, 8), "method": ("<H", 8, 10), "crc": ("<I", 14, 16),
          "compress_size": ("<I", 18, 20), "file_size": ("<I", 22, 24)}


def build(path: Path, members: Iterable[Member], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicates it is asked to write
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def info(name: str, mode: int, system: int = 3) -> zipfile.ZipInfo:
    """An entry with unix mode bits (a symlink, a device ...) as made on `system` (3 = unix)."""
    zi = zipfile.ZipInfo(name)
    zi.create_system = system
    zi.external_attr = mode << 16
    return zi


def headers(path: Path, name: str) -> tuple[int, int]:
    """Offsets of the entry's local header and central directory header."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
        pos = zf.start_dir
    while data[pos:pos + 4] == b"PK\x01\x02":
        nlen, xlen, clen = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46:pos + 46 + nlen].decode("utf-8") == name:
            return local, pos
        pos += 46 + nlen + xlen + clen
    raise AssertionError(f"no central header for {name}")


def patch(path: Path, name: str, **fields: int) -> None:
    """Set header fields of one entry in both its local and central headers."""
    local, central = headers(path, name)
    data = bytearray(path.read_bytes())
    for field, value in fields.items():
        fmt, at_local, at_central = FIELDS[field]
        struct.pack_into(fmt, data, local + at_local, value)
        struct.pack_into(fmt, data, central + at_central, value)
    path.write_bytes(bytes(data))


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | str]:
    """Everything under root (files with their bytes, folders, links), top-level names in `skip` left out."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                seen[rel] = "link -> " + os.readlink(p)
            elif p.is_dir():
                seen[rel] = "folder"
            elif stat.S_ISSOCK(p.lstat().st_mode):
                seen[rel] = "socket"
            else:
                seen[rel] = p.read_bytes()
    return seen
