"""kind = "adls", the write path itself: files above one block are staged in parallel by flowd's own block
uploader, hashed as they are read, and committed in one conditional request; the caller's sha256 is asked
only when a comparison needs it before any upload. Against a real Azurite, like test_adls_storage.py."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azurite as emulator
import pytest
from azure.core.exceptions import ServiceResponseError
from azure.storage.blob import BlobClient, BlobServiceClient

import flowd.storage.adls as adls_module
from flowd.errors import ChangedError, ConflictError, TransientError
from flowd.storage.adls import AdlsStorage, client_options
from flowd.storage.base import Conflict, Put

KiB = 1024
BLOCK = 256 * KiB


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulator.Azurite]:
    if not emulator.available():
        if os.environ.get("CI"):
            pytest.fail(f"{emulator.AZURITE} is missing: run `npm ci` (make test does)")
        pytest.skip(f"Azurite is not installed ({emulator.AZURITE} missing): run `make test` or `npm ci`")
    with emulator.running(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture
def lake(azurite: emulator.Azurite) -> AdlsStorage:
    """Blocks of 256 KiB, two at a time: a 1.3 MiB file is six blocks."""
    client = BlobServiceClient.from_connection_string(azurite.connection_string,
                                                      **client_options(BLOCK, retries=0, backoff=0.1))
    return AdlsStorage("lake", client, max_concurrency=2)


@pytest.fixture
def box(lake: AdlsStorage) -> str:
    name = f"u-{uuid.uuid4().hex[:12]}"
    lake.client.create_container(name)
    return name


def write(tmp_path: Path, size: int, name: str = "big.bin") -> tuple[Path, str]:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}-{name}"
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def never() -> str:
    raise AssertionError("the sha256 callable was asked although the upload hashes the bytes itself")


def blob_bytes(lake: AdlsStorage, box: str, name: str) -> bytes:
    return bytes(lake.client.get_blob_client(box, name).download_blob().readall())


def committed_ids(lake: AdlsStorage, box: str, name: str) -> list[str]:
    committed, _ = lake.client.get_blob_client(box, name).get_block_list("committed")
    return [base64.b64decode(b.id).decode() for b in committed]


def test_a_multi_block_file_is_committed_with_its_hash_and_metadata(lake: AdlsStorage, box: str,
                                                                     tmp_path: Path) -> None:
    path, digest = write(tmp_path, 5 * BLOCK + 1234, "scan.tif")
    put = lake.put_file(f"{box}/a/scan.tif", path, conflict=Conflict.FAIL, token="tok-1", sha256=never,
                        info={"flowd_source": "inbox/scan.tif", "flowd_job": "3"})
    assert put == Put(f"{box}/a/scan.tif", "written")
    props = lake.client.get_blob_client(box, "a/scan.tif").get_blob_properties()
    assert props.size == 5 * BLOCK + 1234 and props.content_settings.content_type == "image/tiff"
    assert props.metadata == {"flowd_sha256": digest, "flowd_step": "tok-1", "flowd_source": "inbox/scan.tif",
                              "flowd_job": "3"}
    assert hashlib.sha256(blob_bytes(lake, box, "a/scan.tif")).hexdigest() == digest
    ids = committed_ids(lake, box, "a/scan.tif")
    assert len(ids) == 6 and len({len(i) for i in ids}) == 1, ids
    assert len({i.rsplit("-", 1)[0] for i in ids}) == 1, "one upload, one prefix"


@pytest.mark.parametrize("size", [0, 10 * KiB, BLOCK, 3 * BLOCK])
@pytest.mark.parametrize("conflict", [Conflict.FAIL, Conflict.INCREMENT, Conflict.OVERWRITE,
                                      Conflict.SKIP_IDENTICAL])
def test_a_free_name_needs_no_hash_from_the_caller(lake: AdlsStorage, box: str, tmp_path: Path, size: int,
                                                    conflict: Conflict) -> None:
    path, digest = write(tmp_path, size)
    assert lake.put_file(f"{box}/f.bin", path, conflict=conflict, token="t", sha256=never).outcome == "written"
    meta = lake.client.get_blob_client(box, "f.bin").get_blob_properties().metadata
    assert meta["flowd_sha256"] == digest


def test_skip_identical_asks_for_the_hash_only_when_a_blob_is_there(lake: AdlsStorage, box: str,
                                                                    tmp_path: Path) -> None:
    path, digest = write(tmp_path, 3 * BLOCK)
    lake.put_file(f"{box}/f.bin", path, conflict=Conflict.FAIL, token="first", sha256=never)
    asked: list[int] = []

    def counted() -> str:
        asked.append(1)
        return digest

    again = lake.put_file(f"{box}/f.bin", path, conflict=Conflict.SKIP_IDENTICAL, token="second", sha256=counted)
    assert again == Put(f"{box}/f.bin", "skipped") and asked == [1]


def test_a_retried_multi_block_step_is_already(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    path, _ = write(tmp_path, 3 * BLOCK)
    for conflict in (Conflict.FAIL, Conflict.INCREMENT):
        assert lake.put_file(f"{box}/{conflict.value}.bin", path, conflict=conflict, token="job-1", sha256=never) \
            == Put(f"{box}/{conflict.value}.bin", "written")
        assert lake.put_file(f"{box}/{conflict.value}.bin", path, conflict=conflict, token="job-1", sha256=never) \
            == Put(f"{box}/{conflict.value}.bin", "already")
    assert sorted(lake.list(box)) == [f"{box}/fail.bin", f"{box}/increment.bin"]


def _another_writer_commits_first(monkeypatch: pytest.MonkeyPatch, their: bytes) -> None:
    """Between our last staged block and our commit, someone else creates the blob."""
    commit = BlobClient.commit_block_list
    done: list[bool] = []

    def racing(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            # overwrite=True: Azurite counts our staged (uncommitted) blocks as a blob for If-None-Match
            BlobClient.from_blob_url(self.url, credential=self.credential).upload_blob(
                their, overwrite=True, metadata={"flowd_step": "the-other"})
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "commit_block_list", racing)


def test_a_second_writer_is_refused_at_the_commit(lake: AdlsStorage, box: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = write(tmp_path, 3 * BLOCK)
    _another_writer_commits_first(monkeypatch, b"theirs")
    with pytest.raises(ConflictError):
        lake.put_file(f"{box}/r.bin", path, conflict=Conflict.FAIL, token="mine", sha256=never)
    assert blob_bytes(lake, box, "r.bin") == b"theirs", "the first commit stays; ours never replaced it"


def test_a_second_writer_under_increment_takes_the_next_name(lake: AdlsStorage, box: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path, digest = write(tmp_path, 3 * BLOCK)
    _another_writer_commits_first(monkeypatch, b"theirs")
    put = lake.put_file(f"{box}/r.bin", path, conflict=Conflict.INCREMENT, token="mine", sha256=never)
    assert put == Put(f"{box}/r_1.bin", "written")
    assert blob_bytes(lake, box, "r.bin") == b"theirs"
    assert hashlib.sha256(blob_bytes(lake, box, "r_1.bin")).hexdigest() == digest


def test_a_multi_block_in_place_write_is_bound_to_the_version_read(lake: AdlsStorage, box: str,
                                                                   tmp_path: Path) -> None:
    blob = lake.client.get_blob_client(box, "p.tif")
    etag = blob.upload_blob(b"original")["etag"]
    path, digest = write(tmp_path, 3 * BLOCK)
    assert lake.put_file(f"{box}/p.tif", path, conflict=Conflict.OVERWRITE, token="edit-1", sha256=never,
                         replaces=etag).outcome == "written"
    assert blob.get_blob_properties().metadata["flowd_sha256"] == digest
    blob.upload_blob(b"someone else", overwrite=True)
    with pytest.raises(ChangedError):
        lake.put_file(f"{box}/p.tif", path, conflict=Conflict.OVERWRITE, token="edit-2", sha256=never,
                      replaces=etag)
    assert blob.download_blob().readall() == b"someone else"


def test_a_failed_attempt_leaves_nothing_a_retry_would_commit(lake: AdlsStorage, box: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, digest = write(tmp_path, 6 * BLOCK)
    stage = BlobClient.stage_block
    calls: list[int] = []
    lock = threading.Lock()

    def flaky(self: BlobClient, block_id: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(1)
            n = len(calls)
        if n == 4:
            raise ServiceResponseError("connection reset")
        return stage(self, block_id, data, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "stage_block", flaky)
    with pytest.raises(TransientError):
        lake.put_file(f"{box}/f.bin", path, conflict=Conflict.FAIL, token="job-9", sha256=never)
    lake.breaker.ok()  # the breaker opened on the "unreachable" failure: the queue's retry comes later
    assert not lake.exists(f"{box}/f.bin")
    assert lake.put_file(f"{box}/f.bin", path, conflict=Conflict.FAIL, token="job-9", sha256=never).outcome \
        == "written"
    ids = committed_ids(lake, box, "f.bin")
    assert len(ids) == 6 and len({i.rsplit("-", 1)[0] for i in ids}) == 1
    assert hashlib.sha256(blob_bytes(lake, box, "f.bin")).hexdigest() == digest


def test_blocks_in_flight_are_bounded(lake: AdlsStorage, box: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """However big the file, at most max_concurrency blocks are being sent and one more is read ahead."""
    path, digest = write(tmp_path, 20 * BLOCK)
    read = adls_module._read
    stage = BlobClient.stage_block
    lock = threading.Lock()
    held = {"now": 0, "peak": 0, "sending": 0, "peak_sending": 0}

    def reading(fh: Any, size: int, source: Path) -> bytes:
        data = read(fh, size, source)
        if data:
            with lock:
                held["now"] += 1
                held["peak"] = max(held["peak"], held["now"])
        return data

    def staging(self: BlobClient, block_id: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            held["sending"] += 1
            held["peak_sending"] = max(held["peak_sending"], held["sending"])
        try:
            threading.Event().wait(0.02)  # slower than reading: the reader has to wait
            return stage(self, block_id, data, *args, **kwargs)
        finally:
            with lock:
                held["sending"] -= 1
                held["now"] -= 1

    monkeypatch.setattr(adls_module, "_read", reading)
    monkeypatch.setattr(BlobClient, "stage_block", staging)
    lake.put_file(f"{box}/f.bin", path, conflict=Conflict.FAIL, token="t", sha256=never)
    assert held["peak_sending"] <= lake.max_concurrency
    assert held["peak"] <= lake.max_concurrency + 1, held
    meta = lake.client.get_blob_client(box, "f.bin").get_blob_properties().metadata
    assert meta["flowd_sha256"] == digest
