"""ZIP extraction for hot folders, without a daemon: real archives built with zipfile (and patched bytes where
zipfile refuses to write something hostile), extracted into a real folder. Every hostile archive is refused
with a reason naming the entry, and nothing is written in the folder or beside it."""

from __future__ import annotations

import os
import stat
import unicodedata
import warnings
import zipfile
from pathlib import Path

import pytest
from zipsupport import Member, build, headers, info, patch, snapshot

from flowd import unzip
from flowd.errors import PermanentError
from flowd.unzip import XATTR, Entry, ZipLimits, ZipRefused, extract, inspect, is_zip

DEFAULT = ZipLimits()


def run(archive: Path, dest: Path, token: str = "job-1", limits: ZipLimits = DEFAULT) -> list[str]:
    return extract(archive, dest, inspect(archive, limits), token, limits)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "hot"
    d.mkdir()
    return d


def refused(tmp_path: Path, archive: Path, dest: Path, reason: str, limits: ZipLimits = DEFAULT,
            at: str = "inspect") -> ZipRefused:
    """The archive is refused with `reason` in the message, at `at` time; nothing changed on disk anywhere
    below tmp_path (the hot folder, the folder above it, the archive itself)."""
    before = snapshot(tmp_path)
    with pytest.raises(ZipRefused) as caught:
        entries = inspect(archive, limits)
        assert at == "extract", f"inspect accepted a hostile archive: {entries}"
        extract(archive, dest, entries, "job-1", limits)
    assert reason in str(caught.value)
    assert str(caught.value).startswith("refused ZIP: ")
    assert snapshot(tmp_path) == before
    return caught.value


# -- ordinary archives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_nested_folders_extract_to_their_relpaths(tmp_path: Path, dest: Path, method: int) -> None:
    big = os.urandom(3 * 1024**2)  # over the read chunk: streamed in pieces
    archive = build(tmp_path / "in.zip", [
        ("top.txt", b"top"),
        ("photos/", b""),
        ("photos/2024/a.jpg", b"\xff\xd8\xffA"),
        ("photos\\2024\\b.jpg", b"\xff\xd8\xffB"),  # made on Windows
        ("./docs//c.pdf", b"%PDF-C"),
        ("big.bin", big),
        ("empty.txt", b""),
    ], method)
    entries = inspect(archive)
    assert [e.relpath for e in entries] == ["top.txt", "photos/2024/a.jpg", "photos/2024/b.jpg", "docs/c.pdf",
                                            "big.bin", "empty.txt"]
    assert [e.index for e in entries] == [0, 2, 3, 4, 5, 6]
    assert entries[1].name == "photos/2024/a.jpg" and entries[2].name == "photos\\2024\\b.jpg"
    assert entries[4].size == len(big)
    used = extract(archive, dest, entries, "job-1")
    assert used == [e.relpath for e in entries]
    assert snapshot(dest) == {"top.txt": b"top", "photos": "folder", "photos/2024": "folder",
                              "photos/2024/a.jpg": b"\xff\xd8\xffA", "photos/2024/b.jpg": b"\xff\xd8\xffB",
                              "docs": "folder", "docs/c.pdf": b"%PDF-C", "big.bin": big, "empty.txt": b""}
    assert os.getxattr(dest / "photos/2024/a.jpg", XATTR) == b"job-1:2"


def test_unicode_names_are_nfc(tmp_path: Path, dest: Path) -> None:
    nfd = unicodedata.normalize("NFD", "café/übersicht.pdf")
    archive = build(tmp_path / "in.zip", [(nfd, b"x")])
    (entry,) = inspect(archive)
    assert entry.name == nfd and entry.relpath == "café/übersicht.pdf"
    assert extract(archive, dest, [entry], "t") == ["café/übersicht.pdf"]
    assert (dest / "café" / "übersicht.pdf").read_bytes() == b"x"


def test_taken_names_get_a_number(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"new a"), ("sub/b.tar.gz", b"new b"), ("README", b"new r")])
    (dest / "a.jpg").write_bytes(b"old a")
    (dest / "a_1.jpg").write_bytes(b"old a1")
    (dest / "sub").mkdir()
    (dest / "sub/b.tar.gz").write_bytes(b"old b")
    (dest / "README").write_bytes(b"old r")
    assert run(archive, dest) == ["a_2.jpg", "sub/b.tar_1.gz", "README_1"]
    assert snapshot(dest) == {"a.jpg": b"old a", "a_1.jpg": b"old a1", "a_2.jpg": b"new a", "sub": "folder",
                              "sub/b.tar.gz": b"old b", "sub/b.tar_1.gz": b"new b", "README": b"old r",
                              "README_1": b"new r"}


def test_numbered_name_stays_within_255_bytes(tmp_path: Path, dest: Path) -> None:
    name = "é" * 125 + ".tif"  # 254 bytes
    archive = build(tmp_path / "in.zip", [(name, b"new")])
    (dest / name).write_bytes(b"old")
    (used,) = run(archive, dest)
    assert used.endswith("_1.tif") and len(used.encode()) <= 255
    assert (dest / used).read_bytes() == b"new"


def test_retry_with_the_same_token_writes_nothing_new(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("sub/b.jpg", b"B"), ("c.jpg", b"C")])
    (dest / "a.jpg").write_bytes(b"someone else's")
    first = run(archive, dest, "job-7")
    assert first == ["a_1.jpg", "sub/b.jpg", "c.jpg"]
    inodes = {p: (dest / p).stat().st_ino for p in first}
    before = snapshot(dest)
    assert run(archive, dest, "job-7") == first
    assert snapshot(dest) == before
    assert {p: (dest / p).stat().st_ino for p in first} == inodes


def test_retry_after_a_crash_midway_finishes_the_job(tmp_path: Path, dest: Path) -> None:
    """A crash after the first file took its name, while the second was still a temp: the retry keeps the
    first, replaces the stale temp and writes the rest; no temp is left behind."""
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("b.jpg", b"B")])
    entries = inspect(archive)
    assert extract(archive, dest, entries[:1], "job-7") == ["a.jpg"]
    inode = (dest / "a.jpg").stat().st_ino
    stale = dest / f"{unzip.TEMP_PREFIX}{unzip._tag('job-7')}.1"
    stale.write_bytes(b"half of B")
    assert extract(archive, dest, entries, "job-7") == ["a.jpg", "b.jpg"]
    assert (dest / "a.jpg").stat().st_ino == inode
    assert snapshot(dest) == {"a.jpg": b"A", "b.jpg": b"B"}


def test_another_token_is_another_extraction(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A")])
    assert run(archive, dest, "job-1") == ["a.jpg"]
    assert run(archive, dest, "job-2") == ["a_1.jpg"]
    assert run(archive, dest, "job-1") == ["a.jpg"]


def test_a_tagged_file_of_another_size_is_not_reused(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"AAAA")])
    (dest / "a.jpg").write_bytes(b"A")
    os.setxattr(dest / "a.jpg", XATTR, b"job-1:0")
    assert run(archive, dest, "job-1") == ["a_1.jpg"]


def test_macos_junk_hidden_files_and_folders_are_skipped(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [
        ("./", b""),
        ("shoot/", b""),
        ("shoot/a.jpg", b"A"),
        ("__MACOSX/", b""),
        ("__MACOSX/shoot/._a.jpg", b"\x00\x05\x16\x07"),
        ("shoot/._a.jpg", b"\x00\x05\x16\x07"),
        (".DS_Store", b"junk"),
        ("shoot/.DS_Store", b"junk"),
        (".git/config", b"[core]"),
        (info("shoot/raw", stat.S_IFDIR | 0o755), b""),  # a folder by its mode, without a trailing slash
    ])
    assert [e.relpath for e in inspect(archive)] == ["shoot/a.jpg"]
    assert run(archive, dest) == ["shoot/a.jpg"]
    assert snapshot(dest) == {"shoot": "folder", "shoot/a.jpg": b"A"}


def test_an_empty_archive_has_no_entries(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "empty.zip", [])
    assert is_zip(archive)
    assert inspect(archive) == []
    assert extract(archive, dest, [], "t") == []


def test_is_zip_goes_by_content(tmp_path: Path) -> None:
    disguised = build(tmp_path / "photo.jpg", [("a.txt", b"a")])
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"\xff\xd8\xff\xe0 not a zip")
    short = tmp_path / "short.zip"
    short.write_bytes(b"PK")
    assert is_zip(disguised)
    assert not is_zip(fake)
    assert not is_zip(short)


def test_regular_unix_files_and_dos_entries_pass(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [(info("script.sh", stat.S_IFREG | 0o755), b"#!"),
                                          (info("dos.txt", 0x20, system=0), b"dos")])
    assert run(archive, dest) == ["script.sh", "dos.txt"]


# -- hostile archives, refused by inspect --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "reason"), [
    ("../x.jpg", "entry '../x.jpg' would be written outside the folder (zip-slip)"),
    ("a/../../../etc/cron.d/x", "entry 'a/../../../etc/cron.d/x' would be written outside the folder (zip-slip)"),
    ("..\\x.jpg", "entry '..\\\\x.jpg' would be written outside the folder (zip-slip)"),
    ("a\\..\\..\\x.jpg", "would be written outside the folder (zip-slip)"),
    ("/etc/x", "entry '/etc/x' has an absolute path"),
    ("\\x.jpg", "has an absolute path"),
    ("C:\\Windows\\x.dll", "entry 'C:\\\\Windows\\\\x.dll' has an absolute path"),
    ("C:x.jpg", "has an absolute path"),
    ("//server/share/x.jpg", "has an absolute path"),
    ("a/b\nc.jpg", "entry 'a/b\\nc.jpg' has a control character in its name"),
    ("x" * 256 + ".jpg", "has a name part over 255 bytes"),
    ("/".join(["d" * 200] * 6), "has a path of 1205 bytes (limit 1024)"),
    ("./.", "entry './.' has no usable name"),
    ("sub/.flowd-upload.x.jpg", "entry 'sub/.flowd-upload.x.jpg' uses the reserved prefix '.flowd-'"),
    (".flowd-unzip.123/x.jpg", "uses the reserved prefix '.flowd-'"),
])
def test_hostile_names(tmp_path: Path, dest: Path, name: str, reason: str) -> None:
    archive = build(tmp_path / "in.zip", [("fine.jpg", b"ok"), (name, b"evil")])
    error = refused(tmp_path, archive, dest, reason)
    assert error.entry == name


def test_hostile_folder_entry_is_refused_too(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("../../outside/", b"")])
    refused(tmp_path, archive, dest, "entry '../../outside/' would be written outside the folder (zip-slip)")


def test_nul_in_name(tmp_path: Path, dest: Path) -> None:
    """zipfile cuts names at a NUL ('evil.sh\\0.jpg' reads as 'evil.sh'): the name as stored is what counts."""
    archive = build(tmp_path / "in.zip", [("evil.shX.jpg", b"#!/bin/sh")])
    archive.write_bytes(archive.read_bytes().replace(b"evil.shX.jpg", b"evil.sh\x00.jpg"))
    refused(tmp_path, archive, dest, "entry 'evil.sh\\x00.jpg' has a control character in its name")


@pytest.mark.parametrize(("mode", "reason"), [
    (stat.S_IFLNK | 0o777, "entry 'link' is a symbolic link"),
    (stat.S_IFIFO | 0o644, "entry 'link' is a FIFO, not a regular file"),
    (stat.S_IFCHR | 0o644, "entry 'link' is a character device, not a regular file"),
    (stat.S_IFBLK | 0o644, "entry 'link' is a block device, not a regular file"),
    (stat.S_IFSOCK | 0o644, "entry 'link' is a socket, not a regular file"),
])
def test_special_files(tmp_path: Path, dest: Path, mode: int, reason: str) -> None:
    archive = build(tmp_path / "in.zip", [(info("link", mode), b"/etc/passwd")])
    refused(tmp_path, archive, dest, reason)


def test_symlink_entry_reason(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), (info("photos/link", stat.S_IFLNK | 0o777), b"/etc")])
    refused(tmp_path, archive, dest, "entry 'photos/link' is a symbolic link")


def test_encrypted_entry(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("secret.pdf", b"%PDF")], zipfile.ZIP_STORED)
    patch(archive, "secret.pdf", flag_bits=0x1)
    refused(tmp_path, archive, dest, "entry 'secret.pdf' is encrypted")


@pytest.mark.parametrize(("method", "reason"), [
    (9, "entry 'a.tif' uses compression method 9 (deflate64); supported: stored, deflate, bzip2, lzma"),
    (99, "entry 'a.tif' uses compression method 99 (AES (WinZip))"),
    (6, "entry 'a.tif' uses compression method 6 (implode)"),
    (77, "entry 'a.tif' uses compression method 77 (unknown)"),
])
def test_unsupported_compression(tmp_path: Path, dest: Path, method: int, reason: str) -> None:
    archive = build(tmp_path / "in.zip", [("a.tif", b"II*\x00" * 100)])
    patch(archive, "a.tif", method=method)
    refused(tmp_path, archive, dest, reason)


def test_ratio_bomb(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("ok.txt", b"fine"), ("x.tif", bytes(50 * 1024**2))])
    ratio = int(50 * 1024**2 / zipfile.ZipFile(archive).getinfo("x.tif").compress_size)
    assert ratio > 200
    refused(tmp_path, archive, dest, f"entry 'x.tif' expands {ratio} times (limit 200)")


def test_small_entries_may_compress_well(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("blank.txt", bytes(1024**2))])  # ratio ~1000, but only 1 MiB
    assert run(archive, dest) == ["blank.txt"]


def test_total_size_bomb(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [(f"{n}.bin", os.urandom(600)) for n in range(3)])
    refused(tmp_path, archive, dest, "entry '1.bin' brings the files to 1200 bytes uncompressed "
                                     "(limit 1000 bytes in all)", ZipLimits(max_total=1000))


def test_entry_size_limit(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("small", b"x"), ("large", bytes(500))])
    refused(tmp_path, archive, dest, "entry 'large' is 500 bytes uncompressed (limit 100 bytes per file)",
            ZipLimits(max_entry=100))


def test_too_many_entries(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("dir/", b"")] + [(f"dir/{n}.txt", b"x") for n in range(6)])
    refused(tmp_path, archive, dest, "entry 'dir/5.txt' is file number 6 (limit 5 files per archive)",
            ZipLimits(max_entries=5))


def test_entry_flood_is_refused_before_parsing(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [(f"{n}", b"") for n in range(40)])
    refused(tmp_path, archive, dest, "the archive lists 40 entries (limit 5 files)", ZipLimits(max_entries=5))


def test_duplicate_names(tmp_path: Path, dest: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        archive = build(tmp_path / "in.zip", [("a.jpg", b"1"), ("b.jpg", b"2"), ("a.jpg", b"3")])
    refused(tmp_path, archive, dest, "entry 'a.jpg' appears twice (duplicate)")


@pytest.mark.parametrize(("first", "second"), [
    ("docs/a.pdf", "docs//a.pdf"),
    ("docs/a.pdf", "docs\\a.pdf"),
    ("docs/a.pdf", "./docs/a.pdf"),
    (unicodedata.normalize("NFC", "é.pdf"), unicodedata.normalize("NFD", "é.pdf")),
])
def test_duplicates_after_normalisation(tmp_path: Path, dest: Path, first: str, second: str) -> None:
    archive = build(tmp_path / "in.zip", [(first, b"1"), (second, b"2")])
    reason = f"entries {first!r} and {second!r} would both be written as {first!r} (duplicate)"
    error = refused(tmp_path, archive, dest, reason)
    assert str(error).endswith("differ only in Unicode normalisation (NFC/NFD)") == (unicodedata.normalize("NFD", first) == second)


def test_case_differences_are_not_duplicates(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("A.jpg", b"1"), ("a.jpg", b"2")])
    assert run(archive, dest) == ["A.jpg", "a.jpg"]


@pytest.mark.parametrize(("members", "reason"), [
    ([("a", b"1"), ("a/b", b"2")], "entry 'a/b' needs 'a' as a folder, but entry 'a' is a file there"),
    ([("a/b", b"2"), ("a", b"1")], "entry 'a' is a file, but entry 'a/b' uses that path as a folder"),
    ([("a", b"1"), ("a/", b"")], "entry 'a/' is a folder, but entry 'a' is a file at that path"),
])
def test_file_and_folder_at_one_path(tmp_path: Path, dest: Path, members: list[Member], reason: str) -> None:
    archive = build(tmp_path / "in.zip", members)
    refused(tmp_path, archive, dest, reason)


@pytest.mark.parametrize("cut", ["half", "end record", "central directory"])
def test_truncated_archive(tmp_path: Path, dest: Path, cut: str) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", os.urandom(5000)), ("b.jpg", os.urandom(5000))])
    data = archive.read_bytes()
    keep = {"half": len(data) // 2, "end record": len(data) - 10, "central directory": len(data) - 40}[cut]
    archive.write_bytes(data[:keep])
    refused(tmp_path, archive, dest, "not a readable ZIP archive: ")


def test_bad_central_directory(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("b.jpg", b"B")])
    archive.write_bytes(archive.read_bytes().replace(b"PK\x01\x02", b"PK\x01\x09"))
    refused(tmp_path, archive, dest, "not a readable ZIP archive: Bad magic number for central directory")


def test_not_a_zip_at_all(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "in.zip"
    archive.write_bytes(b"PK\x03\x04 and then nothing of the kind" * 10)
    refused(tmp_path, archive, dest, "not a readable ZIP archive: File is not a zip file")


# -- hostile archives found out while extracting -------------------------------------------------------------


def test_crc_corruption(tmp_path: Path, dest: Path) -> None:
    payload = b"B" * 1000
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A" * 100), ("sub/b.jpg", payload), ("c.jpg", b"C")],
                    zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    at = data.index(payload) + 500
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    error = refused(tmp_path, archive, dest, "entry 'sub/b.jpg' is corrupt: Bad CRC-32", at="extract")
    assert error.entry == "sub/b.jpg"


def test_lying_header_smaller_than_the_data(tmp_path: Path, dest: Path) -> None:
    """A header declaring 1 KiB for 50 MB of deflated zeros: zipfile stops at the declared size, so the lie
    shows as a CRC mismatch and nothing beyond the declared size is ever written."""
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("x.tif", bytes(50 * 1024**2))])
    patch(archive, "x.tif", file_size=1024)
    refused(tmp_path, archive, dest, "entry 'x.tif' is corrupt", at="extract")


def test_lying_header_larger_than_the_data(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("b.jpg", b"B" * 100)], zipfile.ZIP_STORED)
    patch(archive, "b.jpg", file_size=5000)
    refused(tmp_path, archive, dest, "entry 'b.jpg' is corrupt: 100 bytes where the header declares 5000",
            at="extract")


def test_corrupt_deflate_stream(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("b.txt", b"hello " * 2000)])
    local, _ = headers(archive, "b.txt")
    data = bytearray(archive.read_bytes())
    data[local + 30 + len("b.txt")] = 0xFF  # the first deflate block header: an invalid block type
    archive.write_bytes(bytes(data))
    refused(tmp_path, archive, dest, "entry 'b.txt' is corrupt", at="extract")


def test_failure_keeps_folders_that_were_there(tmp_path: Path, dest: Path) -> None:
    (dest / "sub").mkdir()
    (dest / "sub/old.jpg").write_bytes(b"old")
    archive = build(tmp_path / "in.zip", [("sub/new/a.jpg", b"A"), ("sub/b.jpg", b"B" * 100)], zipfile.ZIP_STORED)
    patch(archive, "sub/b.jpg", crc=0)
    refused(tmp_path, archive, dest, "entry 'sub/b.jpg' is corrupt: Bad CRC-32", at="extract")
    assert snapshot(dest) == {"sub": "folder", "sub/old.jpg": b"old"}


# -- what the hot folder holds -------------------------------------------------------------------------------


def test_a_symlinked_folder_in_the_hot_folder_is_not_followed(tmp_path: Path, dest: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "photos").symlink_to(outside)
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("photos/x.jpg", b"X")])
    entries = inspect(archive)
    before = snapshot(tmp_path)
    with pytest.raises(PermanentError, match="photos is a symbolic link"):
        extract(archive, dest, entries, "t")
    assert snapshot(tmp_path) == before
    assert list(outside.iterdir()) == []


def test_a_file_where_a_folder_is_needed(tmp_path: Path, dest: Path) -> None:
    (dest / "photos").write_bytes(b"a file")
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A"), ("photos/x.jpg", b"X")])
    with pytest.raises(PermanentError, match="photos is not a folder"):
        run(archive, dest)
    assert snapshot(dest) == {"photos": b"a file"}


def test_entries_must_belong_to_the_archive(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "in.zip", [("a.jpg", b"A")])
    forged = [Entry(0, "a.jpg", "../a.jpg", 1, 1)]
    with pytest.raises(ZipRefused, match="zip-slip"):
        extract(archive, dest, forged, "t")
    with pytest.raises(PermanentError, match="changed since it was inspected"):
        extract(archive, dest, [Entry(3, "a.jpg", "a.jpg", 1, 1)], "t")
    assert snapshot(dest) == {}
