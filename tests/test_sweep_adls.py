"""Sweeps over a storage prefix on a real Azurite: purge by name and age, and a count limit that moves
what lies beyond the newest N into a local cold store. The listing is the Blob API's, one request per page."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import azurite as emulator
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from conftest import JPEG, Site, make_site

pytestmark = pytest.mark.skipif(not emulator.available() and not os.environ.get("CI"),
                                reason="Azurite is not installed (make test installs it with npm)")

CLOUD = """
[storage.cloud]
kind = "adls"
connection_string_env = "FLOWD_TEST_CLOUD"
create_containers = true

[storage.cold]
kind = "local"
root = "cold"
"""


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulator.Azurite]:
    with emulator.running(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, azurite: emulator.Azurite) -> Iterator[Site]:
    for s in make_site(Site, tmp_path):
        s.configure(extra=CLOUD)
        s.env["FLOWD_TEST_CLOUD"] = azurite.connection_string
        yield s


def container(azurite: emulator.Azurite, name: str) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(name)
    if not client.exists():
        client.create_container()
    return client


def names(client: ContainerClient) -> list[str]:
    return sorted(b.name for b in client.list_blobs())


def test_a_purge_over_a_storage_prefix_deletes_by_name_and_age(site: Site, azurite: emulator.Azurite) -> None:
    archive = container(azurite, "purge1")
    for name in ("2025/a.tmp", "2025/b.jpg", "2025/sub/c.tmp", "2026/d.tmp"):
        archive.upload_blob(name, JPEG)
    time.sleep(6.2)  # blob times cannot be set: these four are now older than the rule's 6s
    site.rules("""
        rules:
          - name: purge-temp
            over: {storage: "cloud:purge1/2025"}
            if:
              - name: "*.tmp"
              - age: {gt: 6s}
            do:
              - delete: {}
    """)
    dry = site.cli("sweep", "purge-temp", "--dry-run", check=True)
    assert sorted(ln.split()[-1] for ln in dry.stdout.splitlines() if ln.startswith("would delete")) == \
        ["a.tmp", "sub/c.tmp"]
    assert names(archive) == ["2025/a.tmp", "2025/b.jpg", "2025/sub/c.tmp", "2026/d.tmp"], "nothing touched"
    archive.upload_blob("2025/fresh.tmp", JPEG)
    result = site.cli("sweep", "purge-temp", check=True)
    assert "deleted" in result.stdout
    assert names(archive) == ["2025/b.jpg", "2025/fresh.tmp", "2026/d.tmp"], "only the prefix, only old *.tmp"


def test_keep_newest_moves_older_blobs_to_a_cold_store(site: Site, azurite: emulator.Azurite) -> None:
    archive = container(azurite, "purge2")
    for i in range(5):
        archive.upload_blob(f"pics/p{i}.jpg", JPEG + bytes([i]))
        time.sleep(1.1)  # distinct last-modified seconds: p4 is the newest
    site.rules("""
        rules:
          - name: keep-newest-2
            on: [{schedule: {every: 1h}}]
            over: {storage: "cloud:purge2/pics", keep_newest: 2}
            do:
              - move: {to: "cold:archive/{relpath}"}
    """)
    result = site.cli("sweep", "keep-newest-2", check=True)
    assert "moved" in result.stdout and "among the newest 2" in result.stdout
    assert names(archive) == ["pics/p3.jpg", "pics/p4.jpg"]
    cold = site.root / "cold" / "archive"
    assert sorted(p.name for p in cold.iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert (cold / "p1.jpg").read_bytes() == JPEG + bytes([1])
