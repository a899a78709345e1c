"""Opt-in: the ADLS storage suite against a real ADLS Gen2 (hierarchical namespace) account, plus what only
such an account can do: the Data Lake API's atomic rename.

Set FLOWD_TEST_ADLS_URL (https://ACCOUNT.blob.core.windows.net) and FLOWD_TEST_ADLS_KEY (an account key),
or FLOWD_TEST_ADLS_CONN (a connection string). Every test here makes its own container and removes it.
Without them the module is skipped with that reason; CI never has them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_adls_storage import *  # noqa: F403  (the same suite, collected again with the account below)
from test_adls_storage import adls, put, source

from flowd.errors import ChangedError, ConflictError
from flowd.storage.adls import AdlsStorage
from flowd.storage.base import Conflict, Put

URL, KEY, CONN = (os.environ.get(f"FLOWD_TEST_ADLS_{k}", "") for k in ("URL", "KEY", "CONN"))
pytestmark = pytest.mark.skipif(not (CONN or (URL and KEY)),
                                reason="opt-in: set FLOWD_TEST_ADLS_URL and FLOWD_TEST_ADLS_KEY (or "
                                       "FLOWD_TEST_ADLS_CONN) to run the ADLS suite against a real HNS account")


@dataclass(frozen=True, slots=True)
class RealAccount:
    """Stands in for the Azurite fixture: the suite only needs a connection string."""

    connection_string: str

    @property
    def blob_url(self) -> str:
        return URL


@pytest.fixture(scope="module")  # type: ignore[no-redef]
def azurite() -> Iterator[RealAccount]:  # the suite's fixture name, pointed at the real account
    if CONN:
        yield RealAccount(CONN)
        return
    account = (urlsplit(URL).hostname or "").split(".")[0]
    yield RealAccount(f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={KEY};"
                      f"BlobEndpoint={URL.rstrip('/')};")


@pytest.fixture
def hns(azurite: RealAccount) -> Iterator[tuple[AdlsStorage, str]]:
    store = adls(azurite)  # type: ignore[arg-type]
    if not store.hierarchical():
        pytest.skip("the account has no hierarchical namespace: enable it (ADLS Gen2) to test renames")
    box = f"t-{uuid.uuid4().hex[:12]}"
    yield store, box
    store.client.get_container_client(box).delete_container()


def test_a_move_on_an_hns_account_is_one_atomic_rename(hns: tuple[AdlsStorage, str], tmp_path: Path) -> None:
    store, box = hns
    put(store, f"{box}/in/a.jpg", source(tmp_path, "a.jpg", b"a"), token="up")
    info = store.stat(f"{box}/in/a.jpg")
    assert info is not None
    got = store.rename(f"{box}/in/a.jpg", f"{box}/out/2026/a.jpg", conflict=Conflict.FAIL, etag=info.etag)
    assert got == Put(f"{box}/out/2026/a.jpg", "written")
    assert not store.exists(f"{box}/in/a.jpg") and store.read_bytes(f"{box}/out/2026/a.jpg") == b"a"
    moved = store.stat(f"{box}/out/2026/a.jpg")
    assert moved is not None and moved.metadata.get("flowd_step") == "up", "a rename keeps the blob's metadata"


def test_an_hns_rename_honours_the_conflict_policy(hns: tuple[AdlsStorage, str], tmp_path: Path) -> None:
    store, box = hns
    for name in ("b.jpg", "c.jpg", "taken.jpg"):
        put(store, f"{box}/{name}", source(tmp_path, name, name.encode()), token=name)
    with pytest.raises(ConflictError):
        store.rename(f"{box}/b.jpg", f"{box}/taken.jpg", conflict=Conflict.FAIL, etag=None)
    assert store.read_bytes(f"{box}/taken.jpg") == b"taken.jpg", "fail never replaces"
    got = store.rename(f"{box}/b.jpg", f"{box}/taken.jpg", conflict=Conflict.INCREMENT, etag=None)
    assert got == Put(f"{box}/taken_1.jpg", "written")
    got = store.rename(f"{box}/c.jpg", f"{box}/taken.jpg", conflict=Conflict.OVERWRITE, etag=None)
    assert got == Put(f"{box}/taken.jpg", "written") and store.read_bytes(f"{box}/taken.jpg") == b"c.jpg"


def test_an_hns_rename_is_bound_to_the_version_read(hns: tuple[AdlsStorage, str], tmp_path: Path) -> None:
    store, box = hns
    put(store, f"{box}/d.jpg", source(tmp_path, "d.jpg", b"d1"), token="d")
    old = store.stat(f"{box}/d.jpg")
    assert old is not None
    store.client.get_blob_client(box, "d.jpg").upload_blob(b"d2", overwrite=True)
    with pytest.raises(ChangedError):
        store.rename(f"{box}/d.jpg", f"{box}/e.jpg", conflict=Conflict.FAIL, etag=old.etag)
    assert store.read_bytes(f"{box}/d.jpg") == b"d2" and not store.exists(f"{box}/e.jpg")
