"""A hot folder whose output is an ADLS storage, end to end: the real daemon uploads to a real Azurite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import azurite as emulator
import pytest
from azure.storage.blob import BlobServiceClient
from conftest import JPEG, Site, make_site, wait_for

pytestmark = pytest.mark.skipif(not emulator.available() and not os.environ.get("CI"),
                                reason="Azurite is not installed (make test installs it with npm)")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulator.Azurite]:
    with emulator.running(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(Site, tmp_path)


def test_a_hot_folder_lands_in_adls_with_its_metadata(site: Site, azurite: emulator.Azurite) -> None:
    site.configure(extra="""
[storage.cloud]
kind = "adls"
connection_string_env = "FLOWD_TEST_CLOUD"
create_containers = true
""")
    site.rules("""
        rules:
          - name: to-the-lake
            do:
              - move: {to: "cloud:assets/{now:%Y}/{name}", conflict: increment}
    """)
    site.env["FLOWD_TEST_CLOUD"] = azurite.connection_string
    site.start()
    site.drop("a.jpg", JPEG)
    site.drop("sub/a.jpg", JPEG + b"\x00")  # same name, other bytes: increment
    site.settled(2)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client("assets")
    names = sorted(b.name for b in container.list_blobs())
    year = __import__("time").strftime("%Y")
    assert names == [f"{year}/a.jpg", f"{year}/a_1.jpg"]
    blobs = {n: container.get_blob_client(n) for n in names}
    got = {n: b.download_blob().readall() for n, b in blobs.items()}
    assert sorted(got.values()) == sorted([JPEG, JPEG + b"\x00"])
    props = blobs[f"{year}/a.jpg"].get_blob_properties()
    assert props.content_settings.content_type == "image/jpeg"
    assert len(props.metadata["flowd_sha256"]) == 64
    assert list(site.hot().rglob("*.jpg")) == [], "sources are removed once the uploads succeeded"
    assert azurite.connection_string.split("AccountKey=")[1].split(";")[0] not in site.log()


def test_an_unset_secret_variable_is_one_clear_error(site: Site) -> None:
    site.configure(extra="""
[storage.cloud]
kind = "adls"
connection_string_env = "FLOWD_TEST_NOT_SET"
""")
    site.env.pop("FLOWD_TEST_NOT_SET", None)
    os.environ.pop("FLOWD_TEST_NOT_SET", None)
    result = site.cli("check")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "FLOWD_TEST_NOT_SET" in result.stderr and "not set" in result.stderr


def test_status_says_when_the_storage_cannot_be_reached(site: Site, tmp_path: Path) -> None:
    """While the account is down, jobs wait (never quarantined), the hot folder keeps taking files, and
    `flowd status` has a health line saying which storage is unreachable and how many jobs wait for it."""
    (tmp_path / "gone").mkdir()
    with emulator.running(tmp_path / "gone") as gone:  # a real endpoint, stopped: nothing listens there now
        conn = gone.connection_string
    site.configure(extra="""
[storage.cloud]
kind = "adls"
connection_string_env = "FLOWD_TEST_CLOUD"
""")
    site.rules("""
        rules:
          - name: to-the-lake
            do:
              - move: {to: "cloud:assets/{name}"}
    """)
    site.env["FLOWD_TEST_CLOUD"] = conn
    site.start()
    for i in range(3):
        site.drop(f"p{i}.jpg", JPEG + bytes([i]))
    wait_for(lambda: site.states().get("waiting", 0) == 3, 30, message="3 jobs waiting on the storage")
    result = site.cli("status")
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("health: storage cloud"))
    assert "UNREACHABLE" in line and "3 job(s) waiting" in line, line
    health = site.status()["health"]
    assert health[0]["name"] == "cloud" and health[0]["ok"] is False
    assert "quarantined" not in site.states() and len(list(site.hot().glob("*.jpg"))) == 3
    assert emulator.KEY not in result.stdout + site.log()
