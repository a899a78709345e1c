"""Storage events end to end: Event Grid messages in a real Azurite queue -> jobs -> blobs processed where
they are (moved, edited in place), messages deleted; malformed and poison messages moved aside; flowd's own
writes never processed again."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azurite as emulator
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient
from conftest import Site, make_site, wait_for
from imagegen import rgb_jpeg

from flowd.metadata.fields import DEFAULT_FIELDS
from flowd.metadata.model import Metadata

pytestmark = pytest.mark.skipif(not emulator.available() and not os.environ.get("CI"),
                                reason="Azurite is not installed (make test installs it with npm)")

EVENTS = """
[storage.cloud]
kind = "adls"
connection_string_env = "FLOWD_TEST_CLOUD"

[events.cloud-events]
kind = "azure_queue"
storage = "cloud"
queue = "{queue}"
poll_seconds = 0.2
visibility_seconds = 30
max_attempts = {max_attempts}
"""


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulator.Azurite]:
    with emulator.running(tmp_path_factory.mktemp("azurite"), queue=True) as running:
        yield running


class Lake:
    """The test's own view of the account: what Event Grid and other writers would do."""

    def __init__(self, azurite: emulator.Azurite, queue: str) -> None:
        self.conn = azurite.connection_string
        self.service = BlobServiceClient.from_connection_string(self.conn)
        self.queue = QueueClient.from_connection_string(self.conn, queue)
        self.queue.create_queue()
        self.poison = QueueClient.from_connection_string(self.conn, f"{queue}-poison")

    def container(self, name: str) -> ContainerClient:
        client = self.service.get_container_client(name)
        if not client.exists():
            client.create_container()
        return client

    def upload(self, key: str, data: bytes) -> str:
        container, _, path = key.partition("/")
        blob = self.container(container).get_blob_client(path)
        return str(blob.upload_blob(data, overwrite=True)["etag"])

    def announce(self, *events: dict[str, Any], encode: bool = True, array: bool = False) -> None:
        body = json.dumps(list(events) if array or len(events) > 1 else events[0])
        self.queue.send_message(base64.b64encode(body.encode()).decode() if encode else body)

    def messages(self) -> int:
        return int(self.queue.get_queue_properties().approximate_message_count or 0)

    def poisoned(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(m.content) for m in self.poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def names(self, container: str) -> list[str]:
        return sorted(b.name for b in self.container(container).list_blobs())

    def read(self, key: str) -> bytes:
        container, _, path = key.partition("/")
        return bytes(self.service.get_blob_client(container, path).download_blob().readall())


def event_grid(kind: str, key: str, etag: str | None, size: int = 0) -> dict[str, Any]:
    """An event as Event Grid's storage-queue delivery writes it (Event Grid schema)."""
    container, _, path = key.partition("/")
    data: dict[str, Any] = {"api": "PutBlob" if kind == "created" else "DeleteBlob", "blobType": "BlockBlob",
                            "url": f"https://{emulator.ACCOUNT}.blob.core.windows.net/{key}",
                            "sequencer": uuid.uuid4().hex, "contentType": "image/jpeg"}
    if etag is not None:
        data.update(eTag=etag.strip('"'), contentLength=size)
    return {"id": str(uuid.uuid4()), "eventType": f"Microsoft.Storage.Blob{kind.title()}",
            "topic": f"/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/{emulator.ACCOUNT}",
            "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
            "eventTime": "2026-11-28T08:00:00Z", "data": data, "dataVersion": "", "metadataVersion": "1"}


def cloud_event(kind: str, key: str, etag: str, size: int) -> dict[str, Any]:
    """The same in the CloudEvents 1.0 schema."""
    grid = event_grid(kind, key, etag, size)
    return {"specversion": "1.0", "id": grid["id"], "type": grid["eventType"], "source": grid["topic"],
            "subject": grid["subject"], "time": grid["eventTime"], "data": grid["data"]}


class EventSite(Site):
    account: Lake

    def setup(self, azurite: emulator.Azurite, rules: str, max_attempts: int = 5) -> Lake:
        queue = f"q{uuid.uuid4().hex[:12]}"
        self.configure(extra=EVENTS.format(queue=queue, max_attempts=max_attempts))
        self.rules(rules)
        self.env["FLOWD_TEST_CLOUD"] = azurite.connection_string
        self.account = Lake(azurite, queue)
        return self.account


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from make_site(EventSite, tmp_path)


def jpeg(tmp: Path, name: str, headline: str = "") -> bytes:
    path = tmp / name
    rgb_jpeg(path, 320, 240)
    if not headline:
        return path.read_bytes()
    meta = Metadata.read(path, DEFAULT_FIELDS)
    meta.set(DEFAULT_FIELDS.resolve("headline"), [headline])
    tagged = tmp / f"tagged-{name}"
    meta.save(path, tagged)
    return tagged.read_bytes()


def headline(data: bytes, tmp: Path) -> str:
    path = tmp / f"read-{uuid.uuid4().hex}.jpg"
    path.write_bytes(data)
    return Metadata.read(path, DEFAULT_FIELDS).text(DEFAULT_FIELDS.resolve("headline"))


def test_an_event_moves_the_blob_and_deletes_its_message(site: EventSite, azurite: emulator.Azurite,
                                                          tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: tag-and-file
            on: [{storage_events: cloud-events}]
            if: [{name: "*.jpg"}]
            do:
              - set_metadata: [{field: headline, action: replace, value: "Filed by flowd"}]
              - move: {to: "cloud:processed/{relpath}"}
    """)
    data = jpeg(tmp_path, "a.jpg")
    etag = lake.upload("incoming/2026/a.jpg", data)
    lake.announce(event_grid("created", "incoming/2026/a.jpg", etag, len(data)))
    site.start()
    site.settled(1, timeout=30)
    assert lake.names("processed") == ["2026/a.jpg"]
    assert lake.names("incoming") == [], "the source blob is deleted once its output is written"
    out = lake.read("processed/2026/a.jpg")
    assert headline(out, tmp_path) == "Filed by flowd"
    props = lake.service.get_blob_client("processed", "2026/a.jpg").get_blob_properties()
    assert props.metadata["flowd_rule"] == "tag-and-file"
    assert props.metadata["flowd_source"] == "cloud:incoming/2026/a.jpg"
    assert props.metadata["flowd_tenant"] == "default" and props.metadata["flowd_job"].isdigit()
    wait_for(lambda: lake.messages() == 0, 10, message="the message deleted")
    # Event Grid announces flowd's own output too (CloudEvents schema, plain JSON this time): not processed.
    lake.announce(cloud_event("created", "processed/2026/a.jpg", props.etag, props.size), encode=False)
    site.settled(2, timeout=30)
    own = site.traces("processed/2026/a.jpg")
    assert own[-1]["status"] == "ignored" and "written by flowd" in own[-1]["fate"]
    assert lake.names("processed") == ["2026/a.jpg"] and lake.messages() == 0
    assert emulator.KEY not in site.log()


def test_a_blob_is_edited_in_place_only_over_the_version_announced(site: EventSite, azurite: emulator.Azurite,
                                                                   tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: caption-in-place
            on: [{storage_events: cloud-events}]
            do:
              - set_metadata: [{field: headline, action: replace, value: "Checked"}]
              - store: {to: "cloud:{container}/{relpath}", conflict: overwrite}
    """)
    first = lake.upload("library/one.jpg", jpeg(tmp_path, "one.jpg", "Original"))
    # The second blob is replaced after its event was sent: the old version's job must not touch it.
    old = lake.upload("library/two.jpg", jpeg(tmp_path, "two.jpg", "Version 1"))
    lake.announce(event_grid("created", "library/one.jpg", first, 1), event_grid("created", "library/two.jpg", old, 1),
                  {"id": "x", "eventType": "Microsoft.Storage.BlobTierChanged", "subject": "/blobServices/default/"
                   "containers/library/blobs/one.jpg", "data": {}})
    newer = jpeg(tmp_path, "two-v2.jpg", "Version 2")
    lake.upload("library/two.jpg", newer)
    site.start()
    site.settled(2, timeout=30)
    assert lake.names("library") == ["one.jpg", "two.jpg"], "in place: no copies, nothing deleted"
    assert headline(lake.read("library/one.jpg"), tmp_path) == "Checked"
    assert lake.read("library/two.jpg") == newer, "a version written after the event is left alone"
    assert site.traces("library/two.jpg")[-1]["status"] == "superseded"
    one = site.traces("library/one.jpg")[-1]
    assert one["status"] == "finished"
    wait_for(lambda: lake.messages() == 0, 10, message="the message deleted")


def test_duplicate_deliveries_make_one_job(site: EventSite, azurite: emulator.Azurite, tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: copy
            on: [{storage_events: cloud-events}]
            do:
              - store: {to: "cloud:copies/{relpath}", conflict: fail}
    """)
    data = jpeg(tmp_path, "d.jpg")
    etag = lake.upload("drop/d.jpg", data)
    for _ in range(3):  # Event Grid delivers at least once
        lake.announce(event_grid("created", "drop/d.jpg", etag, len(data)))
    site.start()
    site.settled(1, timeout=30)
    wait_for(lambda: lake.messages() == 0, 10, message="all three messages deleted")
    assert site.states() == {"done": 1}
    assert lake.read("copies/d.jpg") == data
    assert lake.names("drop") == ["d.jpg"], "store keeps the source"


def test_malformed_and_poison_messages_are_moved_aside_with_a_reason(site: EventSite, azurite: emulator.Azurite,
                                                                     tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: copy
            on: [{storage_events: cloud-events}]
            do:
              - store: {to: "cloud:copies/{relpath}"}
    """, max_attempts=2)
    # A message that keeps failing: delivered (and not deleted) twice before flowd sees it a third time.
    lake.announce(event_grid("created", "drop/stuck.jpg", "0x2", 1))
    for _ in range(2):
        assert wait_for(lambda: list(lake.queue.receive_messages(visibility_timeout=1)), 10, message="redelivery")
    lake.queue.send_message("this is not an event")
    lake.announce({"id": "1", "eventType": "Microsoft.Storage.BlobCreated", "subject": "/nonsense"}, encode=False)
    other = event_grid("created", "drop/x.jpg", "0x1", 1)
    other["topic"] = other["topic"].replace(emulator.ACCOUNT, "someoneelse")
    lake.announce(other)
    good = jpeg(tmp_path, "good.jpg")
    etag = lake.upload("drop/good.jpg", good)
    lake.announce(event_grid("created", "drop/good.jpg", etag, len(good)))
    site.start()
    site.settled(1, timeout=30)
    wait_for(lambda: lake.messages() == 0 and len(lake.poisoned()) == 4, 20, message="4 messages in poison")
    reasons = {p["reason"] for p in lake.poisoned()}
    text = " | ".join(reasons)
    assert "neither JSON nor base64" in text
    assert "someoneelse" in text and emulator.ACCOUNT in text
    assert "delivered 3 times" in text
    assert any("subject" in r or "container" in r for r in reasons), reasons
    kept = [p["content"] for p in lake.poisoned()]
    assert "this is not an event" in kept, "the poison queue keeps the original message"
    copies = lake.names("copies")
    assert "good.jpg" in copies, "good events are processed whatever else is in the queue"
    assert "stuck.jpg" not in copies and "x.jpg" not in copies
    assert "Traceback" not in site.log()


def test_deleted_blobs_reach_only_rules_that_ask_for_them(site: EventSite, azurite: emulator.Azurite,
                                                          tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: copy
            on: [{storage_events: cloud-events}]
            do:
              - store: {to: "cloud:copies/{relpath}"}
          - name: note-deletions
            on: [{storage_events: cloud-events, events: [deleted]}]
            if: [{name: "*.jpg"}]
            do:
              - delete: {target: "cloud:renditions/{relpath}"}
    """)
    lake.upload("renditions/gone.jpg", b"web version")
    lake.upload("renditions/gone.txt", b"kept: no rule for .txt")
    lake.announce(event_grid("deleted", "drop/gone.jpg", None), event_grid("deleted", "drop/gone.txt", None))
    site.start()
    site.settled(2, timeout=30)
    jpg, txt = site.traces("drop/gone.jpg")[-1], site.traces("drop/gone.txt")[-1]
    assert jpg["hotfolder"] == "@cloud-events#deleted" and jpg["status"] == "finished"
    assert [r["rule"] for r in jpg["rules"] if r.get("matched")] == ["note-deletions"], "copy never sees a deletion"
    assert txt["status"] == "unmatched"
    assert lake.names("renditions") == ["gone.txt"], "the deleted original's rendition is deleted with it"
    wait_for(lambda: lake.messages() == 0, 10, message="messages deleted")


def test_simulate_reads_a_blob_where_it_is(site: EventSite, azurite: emulator.Azurite, tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: file-by-headline
            on: [{storage_events: cloud-events}]
            do:
              - set_metadata: [{field: caption, action: replace, value: "{meta.headline} ({width}px)"}]
              - move: {to: "cloud:web/{meta.headline}/{name}"}
    """)
    lake.upload("incoming/s.jpg", jpeg(tmp_path, "s.jpg", "Sport"))
    result = site.cli("simulate", "cloud:incoming/s.jpg")
    assert result.returncode == 0, result.stderr
    assert "cloud:web/Sport/s.jpg" in result.stdout and "320px" in result.stdout
    assert lake.names("incoming") == ["s.jpg"] and lake.names("web") == [], "simulate touches nothing"
    missing = site.cli("simulate", "cloud:incoming/nope.jpg")
    assert missing.returncode == 1 and "no blob" in missing.stderr and "Traceback" not in missing.stderr


def test_a_quarantined_blob_stays_in_place_and_retry_runs_it_again(site: EventSite, azurite: emulator.Azurite,
                                                                  tmp_path: Path) -> None:
    lake = site.setup(azurite, """
        rules:
          - name: publish
            on: [{storage_events: cloud-events}]
            do:
              - move: {to: "cloud:published/{relpath}", conflict: fail}
    """)
    data = jpeg(tmp_path, "q.jpg")
    lake.upload("published/q.jpg", b"already there")
    etag = lake.upload("queue-in/q.jpg", data)
    lake.announce(event_grid("created", "queue-in/q.jpg", etag, len(data)))
    site.start()
    site.settled(1, timeout=30)
    status = site.status()
    assert status["states"] == {"quarantined": 1}
    (held,) = status["quarantined"]
    assert "exists" in held["error"] and "conflict policy is 'fail'" in held["error"]
    assert lake.read("queue-in/q.jpg") == data, "a quarantined blob is left where it is"
    lake.container("published").delete_blob("q.jpg")
    result = site.cli("retry", str(held["job"]))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: site.states() == {"done": 1}, 30, message="the retried job done")
    assert lake.read("published/q.jpg") == data and lake.names("queue-in") == []


@pytest.mark.parametrize(("extra", "rules", "expected"), [
    ('[events.e]\nkind = "azure_queue"\nstorage = "nowhere"\nqueue = "flowd-events"\n', "",
     ["flowd.toml:", "events.e.storage", "no storage named 'nowhere'", "cloud, lake"]),
    ('[events.e]\nkind = "azure_queue"\nstorage = "lake"\nqueue = "flowd-events"\n', "",
     ["events.e.storage", "storage 'lake' is kind 'local'", "cloud"]),
    ('[events.e]\nkind = "azure_queue"\nstorage = "cloud"\nqueue = "Flowd_Events"\n', "",
     ["events.e.queue", "3-63 lowercase letters"]),
    ('[events.e]\nkind = "azure_queue"\nstorage = "cloud"\nqueue = "flowd-events"\nconnection_string_env = "UNSET_X"\n',
     "", ["events.e.connection_string_env", "UNSET_X is not set"]),
    ('[events.e]\nkind = "kafka"\nstorage = "cloud"\nqueue = "flowd-events"\n', "", ["events.e.kind", "azure_queue"]),
    ("", "rules:\n  - name: r\n    on: [{storage_events: nope}]\n    do: [{delete: {}}]\n",
     ["rules.yaml:3", "rules.0.on.0.storage_events", "no [events.NAME] stream"]),
    ('[events.e]\nkind = "azure_queue"\nstorage = "cloud"\nqueue = "flowd-events"\n',
     "rules:\n  - name: r\n    on: [{storage_events: e, events: [created, renamed]}]\n    do: [{delete: {}}]\n",
     ["rules.0.on.0.events", "created, deleted"]),
    ('[events.e]\nkind = "azure_queue"\nstorage = "cloud"\nqueue = "flowd-events"\n',
     "rules:\n  - name: r\n    on: [{storage_events: e}]\n    do: [{store: {to: \"{output}/x\"}}]\n",
     ["uses {output} but events stream 'e' has no output"]),
])
def test_bad_events_config_is_one_clear_error(site: EventSite, extra: str, rules: str, expected: list[str]) -> None:
    site.configure(extra='[storage.cloud]\nkind = "adls"\nconnection_string_env = "FLOWD_TEST_CLOUD"\n' + extra)
    site.env["FLOWD_TEST_CLOUD"] = "UseDevelopmentStorage=true"
    site.env.pop("UNSET_X", None)
    site.rules(rules or "rules: []\n")
    result = site.cli("check")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
