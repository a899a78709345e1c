"""Azurite crashes: the emulator keeps its data across a restart, and the daemon rides out an outage.

Azurite is persistent here (a folder, restarted on the same ports), and crashed with SIGKILL, not stopped.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import azurite as emulator
import pytest
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient
from conftest import Site, make_site, wait_for

pytestmark = pytest.mark.skipif(not emulator.available() and not os.environ.get("CI"),
                                reason="Azurite is not installed (make test installs it with npm)")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    yield from make_site(Site, root)


@pytest.fixture
def emulators() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every Azurite a test starts, killed afterwards whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        emulator.kill(proc)


def test_azurite_restart_keeps_its_data(tmp_path: Path,
                                        emulators: list[subprocess.Popen[bytes]]) -> None:
    from azure.storage.queue import QueueClient

    data = tmp_path / "data"
    first, proc = emulator.start(tmp_path, queue=True, location=data)
    emulators.append(proc)
    assert first.queue_port is not None and f"QueueEndpoint=http://127.0.0.1:{first.queue_port}/" in first.connection_string
    service = BlobServiceClient.from_connection_string(first.connection_string)
    service.create_container("kept")
    service.get_blob_client("kept", "a/b.bin").upload_blob(b"written before the crash")
    queue = QueueClient.from_connection_string(first.connection_string, "kept")
    queue.create_queue()
    queue.send_message("queued before the crash")

    emulator.kill(proc)  # at once: an acknowledged write must survive without a graceful shutdown
    with pytest.raises(AzureError):
        BlobServiceClient.from_connection_string(first.connection_string, retry_total=0) \
            .get_blob_client("kept", "a/b.bin").download_blob()

    second, proc = emulator.start(tmp_path, queue=True, location=data, blob_port=first.port,
                                  queue_port=first.queue_port)
    emulators.append(proc)
    assert (second.port, second.queue_port) == (first.port, first.queue_port)
    assert second.connection_string == first.connection_string
    service = BlobServiceClient.from_connection_string(second.connection_string)
    assert service.get_blob_client("kept", "a/b.bin").download_blob().readall() == b"written before the crash"
    queue = QueueClient.from_connection_string(second.connection_string, "kept")
    assert [m.content for m in queue.peek_messages(max_messages=5)] == ["queued before the crash"]


def _payloads(prefix: str, count: int, rng: random.Random) -> dict[str, bytes]:
    """Distinct files of varied sizes; every fifth one 1-3 MB so uploads are still in flight at the crash."""
    out: dict[str, bytes] = {}
    for i in range(count):
        size = rng.randint(1_000_000, 3_000_000) if i % 5 == 0 else rng.randint(1, 64_000)
        out[f"{prefix}/{i:02d}.bin"] = f"{prefix}/{i}\n".encode() + rng.randbytes(size)
    return out


def test_azurite_killed_mid_run_loses_nothing(site: Site, tmp_path: Path,
                                              emulators: list[subprocess.Popen[bytes]]) -> None:
    data = tmp_path / "azurite"
    azurite, proc = emulator.start(tmp_path, location=data)
    emulators.append(proc)
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
              - move: {to: "cloud:assets/{relpath}", conflict: fail}
    """)
    site.env.update({"FLOWD_TEST_CLOUD": azurite.connection_string,
                     # The environment wins over [flowd]: a quick retry, so the recovery is quick too.
                     "FLOWD_RETRY_BASE_SECONDS": "0.5", "FLOWD_RETRY_MAX_SECONDS": "2",
                     # One job per batch: a batch is recorded only when all of it is through, and while the
                     # storage is down each of its jobs first spends the SDK's own retries (about 9 s).
                     "FLOWD_BATCH_SIZE": "1"})
    site.start()
    # The test's own client gives up at once: the SDK's default retries would hold the test for minutes.
    container = BlobServiceClient.from_connection_string(azurite.connection_string, retry_total=0) \
        .get_container_client("assets")
    rng = random.Random(20240611)
    before, during = _payloads("before", 30, rng), _payloads("during", 20, rng)

    def landed() -> set[str]:
        try:
            return {b.name for b in container.list_blobs()}
        except AzureError:
            return set()

    for relpath, payload in before.items():
        site.drop(relpath, payload)
    first = wait_for(landed, timeout=30, interval=0.02, message="the first uploads")
    emulator.kill(proc)  # crash, with the rest of the first 30 still to go (some of them in flight)
    down = time.monotonic()
    assert len(first) < len(before), "everything landed before the crash: nothing was in flight"

    for relpath, payload in during.items():
        site.drop(relpath, payload)  # the hot folder keeps accepting while the storage is away

    def waiting_on_storage() -> dict[str, object] | None:
        status = site.status()
        assert status["quarantined"] == [], f"quarantined during the outage: {status['quarantined']}\n{site.log()}"
        assert status["states"].get("quarantined", 0) == 0, status
        return next((w for w in status["waiting"] if "cloud" in str(w["error"])), None)

    waiting = wait_for(waiting_on_storage, timeout=60, interval=0.25, message="a job waiting on the storage")
    error = str(waiting["error"])
    assert f"127.0.0.1:{azurite.port}" in error and emulator.KEY not in error and "AccountKey" not in error, error
    states = site.states()
    assert sum(states.get(s, 0) for s in ("queued", "claimed", "waiting")) > 0 and not states.get("quarantined")
    # Down for at least 5 s: long enough for every worker to see it and back off.
    time.sleep(max(0.0, 5 - (time.monotonic() - down)))

    restarted, proc = emulator.start(tmp_path, location=data, blob_port=azurite.port)
    emulators.append(proc)
    assert restarted.connection_string == azurite.connection_string
    states = site.settled(len(before) + len(during), timeout=120)

    assert states.get("quarantined", 0) == 0, site.status()["quarantined"]
    assert site.status()["quarantined"] == []
    expected = {**before, **during}
    assert sorted(landed()) == sorted(expected), "every file exactly once, under its own name (no _1 copies)"
    for relpath, payload in expected.items():
        got = container.get_blob_client(relpath).download_blob().readall()
        assert got == payload, f"{relpath}: {len(got)} bytes in the lake, {len(payload)} in the source"
    assert [p for p in site.hot().rglob("*") if p.is_file()] == [], "every source is removed once uploaded"
    errors = site.root / "errors"
    assert not errors.exists() or [p for p in errors.rglob("*") if p.is_file()] == []
    log = site.log()
    assert emulator.KEY not in log and "AccountKey" not in log
