"""kind = "adls" against a real Azurite: uploads, every conflict policy, races, failures a person can act on.

Azurite comes from package.json (`make test` installs it). Without it the module is skipped locally; in CI
(CI set) a missing Azurite is a failure, so the storage is never silently untested.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import azurite as emulator
import pytest
from azure.storage.blob import AccountSasPermissions, BlobServiceClient, ResourceTypes, generate_account_sas
from azure.storage.filedatalake import DataLakeServiceClient
from loguru import logger

from flowd.cli import main as cli_main
from flowd.config import load_config
from flowd.errors import ChangedError, ConflictError, PermanentError, TransientError
from flowd.storage import build_storages
from flowd.storage.adls import AdlsStorage, client_options
from flowd.storage.base import Conflict, Put

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulator.Azurite]:
    if not emulator.available():
        if os.environ.get("CI"):
            pytest.fail(f"{emulator.AZURITE} is missing: run `npm ci` (make test does)")
        pytest.skip(f"Azurite is not installed ({emulator.AZURITE} missing): run `make test` or `npm ci`")
    with emulator.running(tmp_path_factory.mktemp("azurite")) as running:
        yield running


def adls(az: emulator.Azurite, *, block_size: int = 8 * MiB, retries: int = 3, **kw: Any) -> AdlsStorage:
    options = client_options(block_size, retries=retries, backoff=0.1)
    client = BlobServiceClient.from_connection_string(az.connection_string, **options)

    def datalake() -> DataLakeServiceClient:
        return DataLakeServiceClient.from_connection_string(az.connection_string, **options)

    return AdlsStorage("lake", client, datalake=datalake, **kw)


@pytest.fixture
def lake(azurite: emulator.Azurite) -> AdlsStorage:
    return adls(azurite)


@pytest.fixture
def box() -> str:
    """A fresh container per test: tests never see each other's blobs."""
    return f"t-{uuid.uuid4().hex[:12]}"


def source(tmp_path: Path, name: str, data: bytes) -> tuple[Path, Callable[[], str]]:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}-{name}"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return path, lambda: digest


def put(store: AdlsStorage, key: str, src: tuple[Path, Callable[[], str]], conflict: Conflict = Conflict.FAIL,
        token: str = "step-1") -> Put:
    return store.put_file(key, src[0], conflict=conflict, token=token, sha256=src[1])


def test_small_upload_sets_content_type_and_metadata(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    """The blob carries its content type (from the extension), its hash and the step that wrote it."""
    src = source(tmp_path, "a.jpg", b"\xff\xd8jpeg bytes\xff\xd9")
    assert put(lake, f"{box}/2024/a.jpg", src, token="tok-a") == Put(f"{box}/2024/a.jpg", "written")
    props = lake.client.get_blob_client(box, "2024/a.jpg").get_blob_properties()
    assert props.content_settings.content_type == "image/jpeg"
    assert props.metadata == {"flowd_sha256": src[1](), "flowd_step": "tok-a"}
    assert lake.read_bytes(f"{box}/2024/a.jpg") == b"\xff\xd8jpeg bytes\xff\xd9"
    assert lake.exists(f"{box}/2024/a.jpg") and not lake.exists(f"{box}/2024/b.jpg")


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def test_large_upload_streams_from_the_file(azurite: emulator.Azurite, box: str, tmp_path: Path) -> None:
    """A 256 MiB file goes up in blocks: the process never holds the whole file in memory."""
    size = 256 * MiB
    path = tmp_path / "big.tif"
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            fh.write(chunk)
    store = adls(azurite, block_size=4 * MiB, max_concurrency=2)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak, so the delta is this upload's own
    except OSError:
        pass
    before = _peak_rss()
    store.put_file(f"{box}/big.tif", path, conflict=Conflict.FAIL, token="big-1", sha256=digest.hexdigest,
                   info={"flowd_source": "inbox/big.tif", "flowd_job": "7"})
    growth = _peak_rss() - before
    assert growth < 48 * MiB, f"peak RSS grew {growth / MiB:.1f} MiB uploading a {size // MiB} MiB file"
    back = hashlib.sha256()
    for chunk in store.client.get_blob_client(box, "big.tif").download_blob().chunks():
        back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()
    props = store.client.get_blob_client(box, "big.tif").get_blob_properties()
    assert props.size == size and props.content_settings.content_type == "image/tiff"
    assert props.metadata == {"flowd_sha256": digest.hexdigest(), "flowd_step": "big-1",
                              "flowd_source": "inbox/big.tif", "flowd_job": "7"}


def test_where_an_output_came_from_survives_non_ascii_names(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    """Blob metadata is HTTP headers (ASCII): values are percent-encoded and read back exactly."""
    src = source(tmp_path, "x.jpg", b"bytes")
    lake.put_file(f"{box}/x.jpg", src[0], conflict=Conflict.FAIL, token="t", sha256=src[1],
                  info={"flowd_source": "inbox/Ærøskøbing/café 1.jpg", "flowd_rule": "fil-ér"})
    meta = lake.client.get_blob_client(box, "x.jpg").get_blob_properties().metadata
    assert unquote(meta["flowd_source"]) == "inbox/Ærøskøbing/café 1.jpg" and meta["flowd_source"].isascii()
    assert unquote(meta["flowd_rule"]) == "fil-ér"


def test_stat_download_and_a_delete_bound_to_one_version(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    src = source(tmp_path, "v.bin", data)
    put(lake, f"{box}/v.bin", src, token="writer-1")
    info = lake.stat(f"{box}/v.bin")
    assert info is not None and info.size == len(data) and info.written_by_flowd
    assert lake.stat(f"{box}/nothing.bin") is None
    dest = tmp_path / "down.bin"
    lake.download(f"{box}/v.bin", dest, info.etag)
    assert dest.read_bytes() == data
    lake.client.get_blob_client(box, "v.bin").upload_blob(b"newer", overwrite=True)  # someone else writes
    with pytest.raises(ChangedError):
        lake.download(f"{box}/v.bin", tmp_path / "again.bin", info.etag)
    with pytest.raises(ChangedError):
        lake.delete(f"{box}/v.bin", info.etag)
    assert lake.read_bytes(f"{box}/v.bin") == b"newer", "a delete bound to the old version leaves the new one"
    newer = lake.stat(f"{box}/v.bin")
    assert newer is not None and not newer.written_by_flowd
    assert lake.delete(f"{box}/v.bin", newer.etag) and not lake.exists(f"{box}/v.bin")
    assert lake.delete(f"{box}/v.bin", newer.etag) is False, "already gone is not an error"


def test_an_in_place_write_only_replaces_the_version_it_read(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    lake.client.get_container_client(box).create_container()
    blob = lake.client.get_blob_client(box, "p.jpg")
    etag = blob.upload_blob(b"original")["etag"]
    edited = source(tmp_path, "p.jpg", b"edited")
    done = lake.put_file(f"{box}/p.jpg", edited[0], conflict=Conflict.OVERWRITE, token="edit-1", sha256=edited[1],
                         replaces=etag)
    assert done == Put(f"{box}/p.jpg", "written") and blob.download_blob().readall() == b"edited"
    again = lake.put_file(f"{box}/p.jpg", edited[0], conflict=Conflict.OVERWRITE, token="edit-1",
                          sha256=edited[1], replaces=etag)
    assert again.outcome == "already", "a retried step recognises its own in-place write"
    blob.upload_blob(b"someone else", overwrite=True)
    with pytest.raises(ChangedError):
        lake.put_file(f"{box}/p.jpg", edited[0], conflict=Conflict.OVERWRITE, token="edit-2", sha256=edited[1],
                      replaces=etag)
    assert blob.download_blob().readall() == b"someone else"


def test_a_flat_namespace_leaves_moves_to_copy_and_delete(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    """Azurite (like a plain Blob account) has no hierarchical namespace: no rename, the caller copies."""
    if lake.hierarchical():
        pytest.skip("this account has a hierarchical namespace: test_adls_real covers its rename")
    put(lake, f"{box}/m.jpg", source(tmp_path, "m.jpg", b"m"))
    assert lake.rename(f"{box}/m.jpg", f"{box}/moved/m.jpg", conflict=Conflict.FAIL, etag=None) is None
    assert lake.exists(f"{box}/m.jpg")


def test_account_key_and_sas_credentials_work(azurite: emulator.Azurite, box: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Each credential option reads its secret from the variable it names and reaches the account."""
    sas = generate_account_sas(emulator.ACCOUNT, emulator.KEY, ResourceTypes(service=True, container=True, object=True),
                               AccountSasPermissions(read=True, write=True, list=True, create=True, add=True),
                               expiry=datetime.now(UTC) + timedelta(hours=1))
    monkeypatch.setenv("FLOWD_TEST_KEY", emulator.KEY)
    monkeypatch.setenv("FLOWD_TEST_SAS", "?" + sas)
    (tmp_path / "flowd.toml").write_text(f"""
[storage.bykey]
kind = "adls"
account_url = "{azurite.blob_url}"
account_key_env = "FLOWD_TEST_KEY"

[storage.bysas]
kind = "adls"
account_url = "{azurite.blob_url}"
sas_token_env = "FLOWD_TEST_SAS"
""")
    storages = build_storages(load_config(tmp_path / "flowd.toml"))
    for name, store in storages.items():
        src = source(tmp_path, f"{name}.jpg", name.encode())
        assert store.put_file(f"{box}/{name}.jpg", src[0], conflict=Conflict.FAIL, token=name,
                              sha256=src[1]).outcome == "written"
        assert store.read_bytes(f"{box}/{name}.jpg") == name.encode()
        assert store.probe() is None  # type: ignore[attr-defined]


def test_probe_says_why_a_service_cannot_be_reached(tmp_path: Path) -> None:
    with emulator.running(tmp_path) as gone:
        conn = gone.connection_string
    client = BlobServiceClient.from_connection_string(conn, **client_options(4 * MiB))
    why = AdlsStorage("lake", client).probe(timeout=2)
    assert why is not None and "cannot be reached" in why and emulator.KEY not in why


def test_conflict_fail_refuses_an_existing_name(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"one"), token="t1")
    with pytest.raises(ConflictError, match=r"lake:.*/a.txt exists and the conflict policy is 'fail'"):
        put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"two"), token="t2")
    assert lake.read_bytes(f"{box}/a.txt") == b"one"


def test_conflict_overwrite_replaces(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"one"), token="t1")
    assert put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"two"), Conflict.OVERWRITE, "t2").outcome == "written"
    assert lake.read_bytes(f"{box}/a.txt") == b"two"


def test_conflict_increment_takes_the_next_free_name(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    for i in range(3):
        got = put(lake, f"{box}/d/a.txt", source(tmp_path, "a.txt", b"v%d" % i), Conflict.INCREMENT, f"t{i}")
        assert got == Put(f"{box}/d/a.txt" if i == 0 else f"{box}/d/a_{i}.txt", "written")
    assert lake.read_bytes(f"{box}/d/a_2.txt") == b"v2"


def test_conflict_skip_identical(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    """Same bytes: skipped. Different bytes: a conflict, never a silent overwrite."""
    put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"same"), token="t1")
    assert put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"same"), Conflict.SKIP_IDENTICAL, "t2") == \
        Put(f"{box}/a.txt", "skipped")
    with pytest.raises(ConflictError, match="with different content"):
        put(lake, f"{box}/a.txt", source(tmp_path, "a.txt", b"other"), Conflict.SKIP_IDENTICAL, "t3")


def test_skip_identical_hashes_a_blob_flowd_did_not_write(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    lake.client.create_container(box)
    lake.client.get_blob_client(box, "x.bin").upload_blob(b"foreign")
    assert put(lake, f"{box}/x.bin", source(tmp_path, "x.bin", b"foreign"), Conflict.SKIP_IDENTICAL).outcome \
        == "skipped"


@pytest.mark.parametrize("conflict", [Conflict.FAIL, Conflict.INCREMENT, Conflict.SKIP_IDENTICAL])
def test_retry_with_the_same_token_is_already(lake: AdlsStorage, box: str, tmp_path: Path,
                                              conflict: Conflict) -> None:
    """A step retried after its upload landed recognises its own write instead of making a _1 copy."""
    src = source(tmp_path, "a.txt", b"mine")
    assert put(lake, f"{box}/a.txt", src, conflict, "job7-step2").outcome == "written"
    assert put(lake, f"{box}/a.txt", src, conflict, "job7-step2") == Put(f"{box}/a.txt", "already")
    assert list(lake.list(box)) == [f"{box}/a.txt"]


def _race(store: AdlsStorage, key: str, tmp_path: Path, conflict: Conflict) -> list[Put | Exception]:
    # Multi-block uploads: each writer stages blocks, and only the commit decides who wins.
    srcs = [source(tmp_path, "r.bin", os.urandom(3 * MiB // 2)) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[Put | Exception] = [RuntimeError("not run")] * 2

    def write(i: int) -> None:
        barrier.wait()
        try:
            results[i] = put(store, key, srcs[i], conflict, f"writer-{i}")
        except Exception as exc:  # recorded for the assertions below
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_writers_racing_for_one_name_one_wins(azurite: emulator.Azurite, box: str, tmp_path: Path) -> None:
    store = adls(azurite, block_size=512 * 1024, max_concurrency=2)
    store.client.create_container(box)
    results = _race(store, f"{box}/r.bin", tmp_path, Conflict.FAIL)
    wins = [r for r in results if isinstance(r, Put)]
    losses = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(losses) == 1, results
    winner = results.index(wins[0])
    meta = store.client.get_blob_client(box, "r.bin").get_blob_properties().metadata
    assert meta["flowd_step"] == f"writer-{winner}"


def test_increment_under_a_race_gives_two_names(azurite: emulator.Azurite, box: str, tmp_path: Path) -> None:
    store = adls(azurite, block_size=512 * 1024, max_concurrency=2)
    store.client.create_container(box)
    results = _race(store, f"{box}/r.bin", tmp_path, Conflict.INCREMENT)
    assert all(isinstance(r, Put) and r.outcome == "written" for r in results), results
    assert sorted(r.key for r in results if isinstance(r, Put)) == [f"{box}/r.bin", f"{box}/r_1.bin"]


@pytest.mark.parametrize("name", ["Photos", "ab", "my_box", "-abc", "a--b"])
def test_bad_container_name_is_permanent(lake: AdlsStorage, tmp_path: Path, name: str) -> None:
    with pytest.raises(PermanentError, match="not a valid container name: 3-63 characters: lowercase"):
        put(lake, f"{name}/a.txt", source(tmp_path, "a.txt", b"x"))


def test_missing_container_without_create_is_a_clear_error(azurite: emulator.Azurite, box: str,
                                                           tmp_path: Path) -> None:
    store = adls(azurite, create_containers=False)
    with pytest.raises(PermanentError, match=f"container '{box}' on 127.0.0.1:.* does not exist and "
                                             "create_containers is false"):
        put(store, f"{box}/a.txt", source(tmp_path, "a.txt", b"x"))


def test_pinned_container_takes_the_whole_key(azurite: emulator.Azurite, box: str, tmp_path: Path) -> None:
    store = adls(azurite, container=box)
    assert put(store, "2024/a.txt", source(tmp_path, "a.txt", b"x")).key == "2024/a.txt"
    assert list(store.list()) == ["2024/a.txt"]
    assert store.client.get_blob_client(box, "2024/a.txt").exists()


def test_list_by_folder_prefix_and_delete(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    for key in ("a/1.txt", "a/sub/2.txt", "ab/3.txt", "b/4.txt"):
        put(lake, f"{box}/{key}", source(tmp_path, "x.txt", b"x"))
    assert list(lake.list(f"{box}/a")) == [f"{box}/a/1.txt", f"{box}/a/sub/2.txt"]
    assert len(list(lake.list(box))) == 4
    assert f"{box}/b/4.txt" in list(lake.list())
    assert list(lake.list("t-nosuchcontainer")) == []
    assert lake.delete(f"{box}/a/1.txt") is True
    assert lake.delete(f"{box}/a/1.txt") is False
    assert list(lake.list(f"{box}/a")) == [f"{box}/a/sub/2.txt"]


def test_plan_writes_nothing(lake: AdlsStorage, box: str, tmp_path: Path) -> None:
    src = source(tmp_path, "a.txt", b"x")
    assert lake.plan(f"{box}/a.txt", Conflict.INCREMENT, src[1]) == Put(f"{box}/a.txt", "written")
    assert not lake.client.get_container_client(box).exists()
    put(lake, f"{box}/a.txt", src)
    assert lake.plan(f"{box}/a.txt", Conflict.INCREMENT, src[1]) == Put(f"{box}/a_1.txt", "written")
    assert lake.plan(f"{box}/a.txt", Conflict.SKIP_IDENTICAL, src[1]) == Put(f"{box}/a.txt", "skipped")
    with pytest.raises(ConflictError):
        lake.plan(f"{box}/a.txt", Conflict.FAIL, src[1])
    assert list(lake.list(box)) == [f"{box}/a.txt"]


def test_unreachable_service_is_transient_and_keeps_the_key_secret(tmp_path: Path) -> None:
    """An outage is retried by the job queue, not quarantined; the message names the host, never the key."""
    with emulator.running(tmp_path) as gone:
        store = adls(gone, retries=1)
        put(store, "box-one/a.txt", source(tmp_path, "a.txt", b"x"))
    with pytest.raises(TransientError) as info:
        put(store, "box-one/b.txt", source(tmp_path, "b.txt", b"y"))
    message = str(info.value)
    assert f"127.0.0.1:{gone.port}" in message and "box-one/b.txt" in message
    assert emulator.KEY not in message and emulator.KEY[:20] not in message and "AccountKey" not in message
    with pytest.raises(TransientError):
        store.read_bytes("box-one/a.txt")


# -- configuration ------------------------------------------------------------------------------------
SITE = """\
[flowd]
data_dir = "var"
database_url = "sqlite:///var/flowd.db"
rules = []

[storage.lake]
kind = "adls"
connection_string_env = "{var}"
container = "{box}"
"""


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str, str]:
    (tmp_path / "flowd.toml").write_text(text)
    try:
        code = cli_main(["check", "-c", "flowd.toml"])
    finally:
        logger.remove()
        logger.add(sys.__stderr__ or sys.stderr, level="WARNING")
    out, err = capsys.readouterr()
    return code, out, err


def test_check_accepts_adls_with_its_secret_in_the_environment(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        azurite: emulator.Azurite) -> None:
    monkeypatch.setenv("FLOWD_TEST_LAKE", azurite.connection_string)
    monkeypatch.chdir(tmp_path)
    code, out, err = check(tmp_path, capsys, SITE.format(var="FLOWD_TEST_LAKE", box="checked"))
    assert code == 0, err
    assert "1 storage(s)" in out
    storages = build_storages(load_config(tmp_path / "flowd.toml"))
    assert isinstance(storages["lake"], AdlsStorage) and storages["lake"].container == "checked"


def test_check_names_an_unset_secret_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWD_TEST_NOPE", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = check(tmp_path, capsys, SITE.format(var="FLOWD_TEST_NOPE", box="checked"))
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["flowd.toml:8: storage.lake.connection_string_env: environment variable FLOWD_TEST_NOPE "
                     "is not set (it should hold the connection string)", "1 error"], err


@pytest.mark.parametrize("body, says", [
    ('connection_string_env = "A"\naccount_key_env = "B"\naccount_url = "https://x.blob.core.windows.net"',
     "storage.lake: set exactly one of connection_string_env, account_key_env, sas_token_env, credential "
     "(got connection_string_env, account_key_env)"),
    ('sas_token_env = "A"', "storage.lake: sas_token_env needs account_url"),
    ("", "storage.lake: set exactly one of"),
    ('connection_string_env = "A"\ncontainer = "Raw"', "storage.lake.container: a container name is 3-63"),
    ('connection_string_env = "A"\nroot = "lake"', "storage.lake.root: unknown key 'root'"),
])
def test_check_explains_a_bad_adls_table(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, body: str, says: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = check(tmp_path, capsys, f'[flowd]\nrules = []\n[storage.lake]\nkind = "adls"\n{body}\n')
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 2 and says in lines[0], err
