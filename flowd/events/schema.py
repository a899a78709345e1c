"""Parse Azure Storage Queue messages that carry Event Grid blob events into `BlobEvent`s.

Pure: no network and no Azure SDK. Event Grid writes one event per queue message, base64-encoded
JSON, in either the Event Grid schema or CloudEvents 1.0; hand-made test messages are often plain
JSON or an array, so all of these are accepted.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["BlobEvent", "MalformedMessage", "Parsed", "parse_message"]

_KINDS: dict[str, Literal["created", "deleted"]] = {
    "Microsoft.Storage.BlobCreated": "created",
    "Microsoft.Storage.BlobDeleted": "deleted",
}
# Other events from these publishers are legitimate deliveries we have no use for: the caller deletes them.
_IGNORED_PREFIXES = ("Microsoft.Storage.", "Microsoft.EventGrid.")
# Subjects in Microsoft's CloudEvents samples appear both with and without the leading slash.
_SUBJECT = re.compile(r"^/?blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<path>.+)$", re.DOTALL)
_ACCOUNT_ID = re.compile(r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)", re.IGNORECASE)
_CONTAINER = re.compile(r"(?=.{3,63}\Z)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*")
_DIGITS = re.compile(r"[0-9]+")
_SHOW = 80  # characters of a bad value quoted in an error; the poison queue keeps the full message


@dataclass(frozen=True, slots=True)
class BlobEvent:
    kind: Literal["created", "deleted"]
    account: str | None
    container: str
    path: str
    event_id: str
    etag: str | None = None
    size: int | None = None
    content_type: str | None = None
    api: str | None = None
    sequencer: str | None = None
    time: str | None = None

    @property
    def key(self) -> str:
        return f"{self.container}/{self.path}"


@dataclass(frozen=True, slots=True)
class Parsed:
    events: tuple[BlobEvent, ...]
    ignored: tuple[str, ...]


class MalformedMessage(ValueError):
    """The message is not a storage event at all: the text says why, for a person reading the poison queue."""


def parse_message(body: str | bytes) -> Parsed:
    """Blob events and ignored-event reasons from one queue message body; raises MalformedMessage."""
    document = _decode(body)
    if isinstance(document, dict):
        items: list[object] = [document]
    elif isinstance(document, list):
        if not document:
            raise MalformedMessage("message is an empty JSON array: expected at least one event")
        items = document
    else:
        raise MalformedMessage(f"message is a JSON {_kind(document)}, not an event object or array of events")
    events: list[BlobEvent] = []
    ignored: list[str] = []
    for index, item in enumerate(items):
        try:
            result = _parse_event(item)
        except MalformedMessage as exc:
            # One bad event taints the whole message: the caller moves messages aside, not events.
            where = f"event {index} of {len(items)}: " if len(items) > 1 else ""
            raise MalformedMessage(f"{where}{exc}") from None
        if isinstance(result, BlobEvent):
            events.append(result)
        else:
            ignored.append(result)
    return Parsed(events=tuple(events), ignored=tuple(ignored))


def _decode(body: str | bytes) -> object:
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MalformedMessage(f"message is not UTF-8 text: {_show(body)}") from None
    else:
        text = body
    text = text.strip()
    if not text:
        raise MalformedMessage("message is empty: expected JSON or base64-encoded JSON")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8-sig")
        return json.loads(decoded)
    except (binascii.Error, ValueError):
        raise MalformedMessage(f"message is neither JSON nor base64-encoded JSON: {_show(text)}") from None


def _parse_event(item: object) -> BlobEvent | str:
    if not isinstance(item, dict):
        raise MalformedMessage(f"event is a JSON {_kind(item)}, not an object")
    if "specversion" in item and item["specversion"] != "1.0":
        raise MalformedMessage(f'unsupported CloudEvents specversion {_show(item["specversion"])}: expected "1.0"')
    event_type = item.get("eventType", item.get("type"))
    if not isinstance(event_type, str) or not event_type:
        raise MalformedMessage("event has no eventType (Event Grid schema) or type (CloudEvents): not an Azure event")
    kind = _KINDS.get(event_type)
    if kind is None:
        if event_type.startswith(_IGNORED_PREFIXES):
            return f"{event_type}: not a created or deleted blob"
        raise MalformedMessage(f"event type {_show(event_type)} is not a storage event")

    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedMessage(f"{event_type} event has no id")
    data = item.get("data", {})
    if not isinstance(data, dict):
        raise MalformedMessage(f"{event_type} event {event_id}: data is not an object")
    account, container, path = _locate(item, data)
    _check_container(container)
    _check_path(path)
    event = BlobEvent(
        kind=kind,
        account=account,
        container=container,
        path=path,
        event_id=event_id,
        etag=_opt_str(data, "eTag", "data.eTag"),
        size=_size(data),
        content_type=_opt_str(data, "contentType", "data.contentType"),
        api=_opt_str(data, "api", "data.api"),
        sequencer=_opt_str(data, "sequencer", "data.sequencer"),
        time=_opt_str(item, "eventTime") or _opt_str(item, "time"),
    )
    if kind == "created" and event.api == "CreateFile":
        # Data Lake writes announce the empty file first; the content arrives with the FlushWithClose event.
        return f"{event_type} (CreateFile) {event.key}: file not complete yet, FlushWithClose follows"
    return event


def _locate(item: dict[str, object], data: dict[str, object]) -> tuple[str | None, str, str]:
    """Account, container and path: the subject is authoritative and not URL-encoded; data.url is the fallback."""
    source = _opt_str(item, "topic") or _opt_str(item, "source")
    match = _ACCOUNT_ID.search(source) if source else None
    account = match.group("name") if match else None
    subject = _opt_str(item, "subject")
    if subject is not None:
        found = _SUBJECT.match(subject)
        if not found:
            raise MalformedMessage(
                f"subject {_show(subject)} does not name a container and blob "
                "(expected /blobServices/default/containers/<container>/blobs/<path>)"
            )
        if account is None:
            account = _url_account(_opt_str(data, "url", "data.url"))
        return account, found.group("container"), found.group("path")
    url = _opt_str(data, "url", "data.url")
    if url is None:
        raise MalformedMessage("blob event has neither subject nor data.url: cannot tell which blob")
    url_account, container, path = _split_url(url)
    return account or url_account, container, path


def _split_url(url: str) -> tuple[str | None, str, str]:
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise MalformedMessage(f"data.url {_show(url)} is not an http(s) URL")
    segments = parts.path.lstrip("/").split("/")
    account = _host_account(host)
    if _path_style(host):
        # Emulators (Azurite) put the account in the path: http://127.0.0.1:10000/<account>/<container>/<path>
        account, segments = segments[0] or None, segments[1:]
    if len(segments) < 2 or not segments[0] or not "".join(segments[1:]):
        raise MalformedMessage(f"data.url {_show(url)} does not name a container and blob")
    return account, unquote(segments[0]), unquote("/".join(segments[1:]))


def _url_account(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _path_style(host):
        return parts.path.lstrip("/").split("/")[0] or None
    return _host_account(host)


def _host_account(host: str) -> str | None:
    labels = host.split(".")
    # <account>.blob.core.windows.net, <account>.dfs.core.windows.net and the sovereign clouds' equivalents
    if len(labels) >= 4 and labels[1] in ("blob", "dfs") and labels[2] == "core":
        return labels[0]
    return None


def _path_style(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_container(container: str) -> None:
    if not _CONTAINER.fullmatch(container):
        raise MalformedMessage(
            f"invalid container name {_show(container)}: "
            "3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
        )


def _check_path(path: str) -> None:
    # The caller may join the path onto a local directory, so refuse anything that could climb out of it.
    if "\x00" in path:
        raise MalformedMessage(f"blob path {_show(path)} contains a NUL byte")
    if path.startswith("/"):
        raise MalformedMessage(f"blob path {_show(path)} starts with '/'")
    if ".." in re.split(r"[/\\]", path):
        raise MalformedMessage(f"blob path {_show(path)} contains a '..' segment")


def _size(data: dict[str, object]) -> int | None:
    value = data.get("contentLength")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise MalformedMessage(f"data.contentLength {_show(value)} is not a non-negative whole number")


def _opt_str(mapping: dict[str, object], key: str, label: str = "") -> str | None:
    value = mapping.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedMessage(f"{label or key} is a JSON {_kind(value)} {_show(value)}, expected a string")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOW else f"{text[:_SHOW]}…"


def _kind(value: object) -> str:
    """JSON's names for types: the reader of the poison queue sees JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__
