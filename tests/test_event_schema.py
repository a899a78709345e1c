"""Queue messages from an Event Grid -> Storage Queue subscription, shaped like Microsoft's documented samples."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from flowd.events.schema import BlobEvent, MalformedMessage, Parsed, parse_message

SOURCE = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/media/providers/Microsoft.Storage/storageAccounts/fakeacct"

EG_CREATED: dict[str, object] = {
    "topic": SOURCE,
    "subject": "/blobServices/default/containers/incoming/blobs/2024/a.jpg",
    "eventType": "Microsoft.Storage.BlobCreated",
    "eventTime": "2024-03-01T10:00:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {
        "api": "PutBlockList",
        "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
        "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
        "eTag": '"0x8D4BCC2E4835CD0"',
        "contentType": "image/jpeg",
        "contentLength": 524288,
        "blobType": "BlockBlob",
        "url": "https://fakeacct.blob.core.windows.net/incoming/2024/a.jpg",
        "sequencer": "00000000000004420000000000028963",
        "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
    },
    "dataVersion": "",
    "metadataVersion": "1",
}

CE_DELETED: dict[str, object] = {
    "source": SOURCE,
    "subject": "/blobServices/default/containers/incoming/blobs/old/b.png",
    "type": "Microsoft.Storage.BlobDeleted",
    "time": "2024-03-01T11:09:22.5674003Z",
    "id": "4c2359fe-001e-00ba-0e04-58586806d298",
    "data": {
        "api": "DeleteBlob",
        "requestId": "4c2359fe-001e-00ba-0e04-585868000000",
        "contentType": "image/png",
        "blobType": "BlockBlob",
        "url": "https://fakeacct.blob.core.windows.net/incoming/old/b.png",
        "sequencer": "0000000000000281000000000002F5CA",
        "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
    },
    "specversion": "1.0",
}


def event(base: dict[str, object], **changes: object) -> dict[str, object]:
    """A deep copy of `base`; keys set to None are removed, `data_<key>` changes data."""
    result = copy.deepcopy(base)
    data = result["data"]
    assert isinstance(data, dict)
    for key, value in changes.items():
        target, name = (data, key[5:]) if key.startswith("data_") else (result, key)
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return result


def b64(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode("ascii")


def only(parsed: Parsed) -> BlobEvent:
    assert parsed.ignored == ()
    assert len(parsed.events) == 1
    return parsed.events[0]


def malformed(document: object) -> str:
    body = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(MalformedMessage) as info:
        parse_message(body)
    return str(info.value)


# --- schemas and encodings ---------------------------------------------------------------------------------------


def test_event_grid_created_gives_every_field() -> None:
    assert only(parse_message(json.dumps(EG_CREATED))) == BlobEvent(
        kind="created",
        account="fakeacct",
        container="incoming",
        path="2024/a.jpg",
        event_id="831e1650-001e-001b-66ab-eeb76e069631",
        etag='"0x8D4BCC2E4835CD0"',
        size=524288,
        content_type="image/jpeg",
        api="PutBlockList",
        sequencer="00000000000004420000000000028963",
        time="2024-03-01T10:00:00.9584103Z",
    )


def test_key_is_container_slash_path() -> None:
    assert only(parse_message(json.dumps(EG_CREATED))).key == "incoming/2024/a.jpg"


def test_cloudevents_deleted() -> None:
    got = only(parse_message(json.dumps(CE_DELETED)))
    assert (got.kind, got.account, got.key, got.api) == ("deleted", "fakeacct", "incoming/old/b.png", "DeleteBlob")
    assert got.time == "2024-03-01T11:09:22.5674003Z"
    assert got.size is None and got.etag is None


def test_cloudevents_subject_without_leading_slash() -> None:
    """Microsoft's CloudEvents page shows the subject both with and without the leading slash."""
    body = event(CE_DELETED, subject="blobServices/default/containers/incoming/blobs/old/b.png")
    assert only(parse_message(json.dumps(body))).key == "incoming/old/b.png"


def test_event_grid_deleted() -> None:
    body = event(EG_CREATED, eventType="Microsoft.Storage.BlobDeleted", data_api="DeleteBlob", data_contentLength=None)
    got = only(parse_message(json.dumps(body)))
    assert (got.kind, got.size) == ("deleted", None)


def test_base64_str_as_event_grid_writes_to_the_queue() -> None:
    assert only(parse_message(b64(EG_CREATED))).key == "incoming/2024/a.jpg"


def test_base64_bytes() -> None:
    assert only(parse_message(b64(CE_DELETED).encode("ascii"))).kind == "deleted"


def test_plain_json_bytes_with_surrounding_whitespace() -> None:
    assert only(parse_message(b"\n" + json.dumps(EG_CREATED).encode() + b"  \n")).kind == "created"


def test_array_of_events_keeps_order() -> None:
    parsed = parse_message(b64([EG_CREATED, CE_DELETED]))
    assert [e.kind for e in parsed.events] == ["created", "deleted"]


# --- where the blob is -------------------------------------------------------------------------------------------


def test_url_is_the_fallback_when_subject_is_missing() -> None:
    body = event(EG_CREATED, subject=None, topic=None)
    got = only(parse_message(json.dumps(body)))
    assert (got.account, got.container, got.path) == ("fakeacct", "incoming", "2024/a.jpg")


def test_subject_wins_over_url() -> None:
    body = event(EG_CREATED, data_url="https://fakeacct.blob.core.windows.net/other/elsewhere.jpg")
    assert only(parse_message(json.dumps(body))).key == "incoming/2024/a.jpg"


def test_data_lake_create_is_ignored_until_flush_with_close() -> None:
    create = event(
        CE_DELETED,
        type="Microsoft.Storage.BlobCreated",
        subject="/blobServices/default/containers/lake/blobs/raw/new-file.txt",
        data_api="CreateFile",
        data_contentLength=0,
        data_contentOffset=0,
        data_url="https://fakeacct.dfs.core.windows.net/lake/raw/new-file.txt",
    )
    parsed = parse_message(json.dumps(create))
    assert parsed.events == ()
    assert parsed.ignored == (
        "Microsoft.Storage.BlobCreated (CreateFile) lake/raw/new-file.txt: file not complete yet, FlushWithClose follows",
    )
    flushed = event(create, data_api="FlushWithClose", data_contentLength=4096, data_contentOffset=4096)
    got = only(parse_message(json.dumps(flushed)))
    assert (got.api, got.size, got.key) == ("FlushWithClose", 4096, "lake/raw/new-file.txt")


def test_dfs_host_gives_account_when_there_is_no_source() -> None:
    body = event(
        CE_DELETED,
        source=None,
        subject=None,
        data_api="DeleteFile",
        data_url="https://lakeacct.dfs.core.windows.net/lake/raw/file-to-delete.txt",
    )
    got = only(parse_message(json.dumps(body)))
    assert (got.account, got.container, got.path) == ("lakeacct", "lake", "raw/file-to-delete.txt")


def test_account_from_url_when_subject_present_but_no_topic() -> None:
    assert only(parse_message(json.dumps(event(EG_CREATED, topic=None)))).account == "fakeacct"


def test_path_style_emulator_url() -> None:
    body = event(
        EG_CREATED,
        topic=None,
        subject=None,
        data_url="http://127.0.0.1:10000/devstoreaccount1/incoming/dir/a.jpg",
    )
    got = only(parse_message(json.dumps(body)))
    assert (got.account, got.container, got.path) == ("devstoreaccount1", "incoming", "dir/a.jpg")


def test_path_style_localhost_url() -> None:
    body = event(
        EG_CREATED, topic=None, subject=None, data_url="http://localhost:10000/devstoreaccount1/incoming/a.jpg"
    )
    assert only(parse_message(json.dumps(body))).account == "devstoreaccount1"


def test_percent_encoded_url_path_is_decoded() -> None:
    body = event(
        EG_CREATED,
        subject=None,
        data_url="https://fakeacct.blob.core.windows.net/incoming/menus/caf%C3%A9%20menu.jpg",
    )
    assert only(parse_message(json.dumps(body))).path == "menus/café menu.jpg"


def test_subject_is_taken_literally_not_url_decoded() -> None:
    body = event(EG_CREATED, subject="/blobServices/default/containers/incoming/blobs/menus/café 100%20.jpg")
    assert only(parse_message(b64(body))).path == "menus/café 100%20.jpg"


def test_non_ascii_subject_survives_base64_bytes() -> None:
    body = event(CE_DELETED, subject="/blobServices/default/containers/incoming/blobs/写真/東京 2024.jpg")
    encoded = base64.b64encode(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    assert only(parse_message(encoded)).path == "写真/東京 2024.jpg"


def test_content_length_as_digit_string() -> None:
    assert only(parse_message(json.dumps(event(EG_CREATED, data_contentLength="1024")))).size == 1024


# --- ignored, not malformed --------------------------------------------------------------------------------------


def test_other_storage_events_are_ignored_with_their_type() -> None:
    tier = event(EG_CREATED, eventType="Microsoft.Storage.BlobTierChanged", data_api="SetBlobTier")
    renamed = event(CE_DELETED, type="Microsoft.Storage.BlobRenamed", data_api="RenameFile")
    directory = event(CE_DELETED, type="Microsoft.Storage.DirectoryCreated", data_api="CreateDirectory")
    parsed = parse_message(json.dumps([tier, renamed, directory]))
    assert parsed.events == ()
    assert parsed.ignored == (
        "Microsoft.Storage.BlobTierChanged: not a created or deleted blob",
        "Microsoft.Storage.BlobRenamed: not a created or deleted blob",
        "Microsoft.Storage.DirectoryCreated: not a created or deleted blob",
    )


def test_subscription_validation_is_ignored() -> None:
    validation = {
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        "topic": SOURCE,
        "subject": "",
        "data": {
            "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
            "validationUrl": "https://example.invalid/x",
        },
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-03-01T10:00:00.000Z",
        "metadataVersion": "1",
        "dataVersion": "1",
    }
    parsed = parse_message(b64([validation]))
    assert parsed.events == ()
    assert parsed.ignored[0].startswith("Microsoft.EventGrid.SubscriptionValidationEvent")


def test_ignored_and_blob_events_in_one_array() -> None:
    tier = event(EG_CREATED, eventType="Microsoft.Storage.BlobTierChanged")
    parsed = parse_message(json.dumps([tier, EG_CREATED]))
    assert len(parsed.events) == 1 and len(parsed.ignored) == 1


# --- malformed: the text says what is wrong ----------------------------------------------------------------------


def test_malformed_not_json_nor_base64_quotes_a_short_excerpt() -> None:
    text = malformed("hello world, " * 100)
    assert "neither JSON nor base64-encoded JSON" in text
    assert len(text) < 200


def test_malformed_base64_of_non_json() -> None:
    assert "neither JSON nor base64" in malformed(base64.b64encode(b"not json at all").decode())


def test_malformed_empty_body() -> None:
    assert "empty" in malformed("   ")


def test_malformed_bytes_not_utf8() -> None:
    with pytest.raises(MalformedMessage, match="not UTF-8"):
        parse_message(b"\xff\xfe\x00garbage")


def test_malformed_json_scalar() -> None:
    assert "a JSON string, not an event object or array" in malformed('"just a string"')


def test_malformed_empty_array() -> None:
    assert "empty JSON array" in malformed([])


def test_malformed_array_of_non_objects_names_the_index() -> None:
    assert malformed([EG_CREATED, 42]) == "event 1 of 2: event is a JSON number, not an object"


def test_malformed_no_event_type() -> None:
    assert "no eventType" in malformed({"id": "x", "subject": "y", "data": {}})


def test_malformed_foreign_event_type() -> None:
    assert "'Contoso.Items.ItemReceived' is not a storage event" in malformed(
        event(EG_CREATED, eventType="Contoso.Items.ItemReceived")
    )


def test_malformed_cloudevents_specversion() -> None:
    assert "specversion '0.3'" in malformed(event(CE_DELETED, specversion="0.3"))


def test_malformed_no_subject_and_no_url() -> None:
    assert "neither subject nor data.url" in malformed(event(EG_CREATED, subject=None, data_url=None))


def test_malformed_subject_without_blob_path() -> None:
    text = malformed(event(EG_CREATED, subject="/blobServices/default/containers/incoming"))
    assert "does not name a container and blob" in text


def test_malformed_url_without_blob_path() -> None:
    text = malformed(event(EG_CREATED, subject=None, data_url="https://fakeacct.blob.core.windows.net/incoming/"))
    assert "does not name a container and blob" in text


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a/../../etc/passwd", "'..' segment"),
        ("..\\windows\\a.jpg", "'..' segment"),
        ("/abs/a.jpg", "starts with '/'"),
        ("a\x00b.jpg", "NUL byte"),
    ],
)
def test_malformed_unsafe_paths(path: str, problem: str) -> None:
    text = malformed(event(EG_CREATED, subject=f"/blobServices/default/containers/incoming/blobs/{path}"))
    assert problem in text


def test_malformed_encoded_traversal_in_url() -> None:
    url = "https://fakeacct.blob.core.windows.net/incoming/a/%2E%2E/%2E%2E/b.jpg"
    assert "'..' segment" in malformed(event(EG_CREATED, subject=None, data_url=url))


@pytest.mark.parametrize("container", ["Incoming", "ab", "bad--name", "-lead", "$root", "x" * 64, "abc\n"])
def test_malformed_invalid_container_names(container: str) -> None:
    text = malformed(event(EG_CREATED, subject=f"/blobServices/default/containers/{container}/blobs/a.jpg"))
    assert f"invalid container name {container!r}"[:60] in text


@pytest.mark.parametrize("length", [-1, "12kb", "12\n", "١٢", 1.5, True])
def test_malformed_content_length(length: object) -> None:
    assert "data.contentLength" in malformed(event(EG_CREATED, data_contentLength=length))


def test_one_bad_event_taints_the_whole_array() -> None:
    bad = event(CE_DELETED, id=None)
    text = malformed([EG_CREATED, CE_DELETED, bad])
    assert text == "event 2 of 3: Microsoft.Storage.BlobDeleted event has no id"


def test_malformed_json_null() -> None:
    assert "a JSON null" in malformed("null")


def test_malformed_non_string_subject() -> None:
    assert malformed(event(EG_CREATED, subject=5)) == "subject is a JSON number 5, expected a string"


def test_malformed_url_not_http() -> None:
    assert "not an http(s) URL" in malformed(event(EG_CREATED, subject=None, data_url="wasb://incoming/a.jpg"))
