"""[events.NAME] kind = "azure_queue": Event Grid blob events read from an Azure Storage Queue.

Each message is received invisible to other readers for `visibility_seconds`; its events become job rows
(committed), and only then is the message deleted. A crash in between redelivers it, and the job's
dedupe key (blob key + ETag) absorbs the duplicate. A message that is not an event, names another account,
or was delivered `max_attempts` times without being handled goes to the poison queue with the reason.
The listener never calls the blob service: a storage outage holds up jobs, not the queue.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from loguru import logger

from flowd.config import AdlsStorageSpec, AzureQueueEventsSpec
from flowd.events.schema import BlobEvent, MalformedMessage, parse_message
from flowd.queue import Detected
from flowd.rules import events_source

Commit = Callable[[Sequence[Detected]], None]  # durably queue jobs; raises if the database cannot


def version_of(event: BlobEvent) -> str:
    """The blob version a created event announces (its ETag, without the quotes HTTP puts around it);
    `id:` marks an event without one, which then only dedupes against itself."""
    if event.etag:
        return event.etag.strip('"')
    return f"id:{event.event_id}"


@dataclass(slots=True)
class Health:
    """The listener's view of its queue, for logs and `flowd status`."""

    ok: bool = True
    reason: str = ""
    since: float = 0.0
    received: int = 0
    queued: int = 0
    ignored: int = 0
    poisoned: int = 0


class QueueListener:
    def __init__(self, name: str, spec: AzureQueueEventsSpec, storage: AdlsStorageSpec, queue: Any, poison: Any,
                 commit: Commit, wants: frozenset[str]) -> None:
        self.name = name
        self.spec = spec
        self.storage = storage
        self.queue = queue  # azure.storage.queue.QueueClient
        self.poison = poison
        self.commit = commit
        self.wants = wants  # the job sources some rule listens to: "@NAME", "@NAME#deleted"
        self.health = Health()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poison_ready = False
        self._account = _account_name(queue)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"events-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        idle = 0.1
        while not self._stop.is_set():
            try:
                handled = self.poll()
            except AzureError as exc:
                self._down(_why(exc))
                self._stop.wait(min(30.0, max(idle, 1.0)))
                idle = min(30.0, max(idle, 1.0) * 2)
                continue
            except Exception as exc:  # a bug must not end the listener: log it, pause, go on
                logger.opt(exception=exc).error("events {}: {}", self.name, exc)
                self._stop.wait(5)
                continue
            self._up()
            if handled:
                idle = 0.1
                continue
            self._stop.wait(idle)  # an empty queue is asked again soon, then less and less often
            idle = min(self.spec.poll_seconds, idle * 2)

    def poll(self) -> int:
        """One receive: handle up to 32 messages. Returns how many were received."""
        messages = list(self.queue.receive_messages(messages_per_page=32, max_messages=32,
                                                    visibility_timeout=self.spec.visibility_seconds))
        for message in messages:
            self.health.received += 1
            self._handle(message)
        return len(messages)

    def _handle(self, message: Any) -> None:
        attempts = int(getattr(message, "dequeue_count", 1) or 1)
        if attempts > self.spec.max_attempts:
            self._to_poison(message, f"delivered {attempts} times without being handled "
                                     f"(max_attempts = {self.spec.max_attempts})")
            return
        try:
            parsed = parse_message(message.content)
        except MalformedMessage as exc:
            self._to_poison(message, f"not a storage event: {exc}")
            return
        jobs: list[Detected] = []
        skipped = list(parsed.ignored)
        for event in parsed.events:
            why = self._foreign(event)
            if why:
                self._to_poison(message, why)
                return
            job = self._job(event)
            if job is None:
                skipped.append(f"{event.kind} {event.key}: outside this stream's storage, or no rule listens")
            else:
                jobs.append(job)
        if jobs:
            self.commit(jobs)  # raises if the database cannot: the message stays and comes back
            self.health.queued += len(jobs)
            logger.info("events {}: queued {} ({})", self.name, ", ".join(d.relpath for d in jobs[:3])
                        + (" ..." if len(jobs) > 3 else ""), ", ".join(sorted({d.hotfolder for d in jobs})))
        for reason in skipped:
            self.health.ignored += 1
            logger.debug("events {}: ignored {}", self.name, reason)
        self._delete(message)

    def _foreign(self, event: BlobEvent) -> str | None:
        """An event about another account means a misrouted subscription: a person has to look."""
        if event.account and self._account and event.account != self._account:
            return (f"announces a blob in account '{event.account}', but storage '{self.spec.storage}' "
                    f"is account '{self._account}'")
        return None

    def _job(self, event: BlobEvent) -> Detected | None:
        container = self.storage.container
        if container is not None and event.container != container:
            return None  # the storage is pinned to another container: not ours to process
        key = event.path if container is not None else event.key
        source = events_source(self.name, event.kind)
        if source not in self.wants:
            return None
        if event.kind == "deleted":  # no ETag any more: each deletion is its own event
            return Detected(self.spec.tenant, source, key, 0, 0, version=f"id:{event.sequencer or event.event_id}")
        return Detected(self.spec.tenant, source, key, event.size or 0, 0, version=version_of(event))

    # -- queue writes --------------------------------------------------------------------------------
    def _delete(self, message: Any) -> None:
        try:
            self.queue.delete_message(message)
        except ResourceNotFoundError:
            pass  # its visibility ran out and another reader took it: the dedupe key absorbs that copy

    def _to_poison(self, message: Any, reason: str) -> None:
        """Keep the message whole with the reason, where a person can read it; then drop it here."""
        if not self._poison_ready:
            try:
                self.poison.create_queue()
            except ResourceExistsError:
                pass
            self._poison_ready = True
        body = json.dumps({"reason": reason, "queue": self.spec.queue, "events": self.name,
                           "message_id": message.id, "dequeue_count": getattr(message, "dequeue_count", None),
                           "inserted_on": str(getattr(message, "inserted_on", "")), "content": message.content},
                          ensure_ascii=False, default=str)
        self.poison.send_message(body, time_to_live=-1)  # kept until someone deals with it
        self._delete(message)
        self.health.poisoned += 1
        logger.warning("events {}: message {} moved to poison queue {}: {}", self.name, message.id,
                       self.spec.poison, reason)

    # -- health --------------------------------------------------------------------------------------
    def _down(self, reason: str) -> None:
        if self.health.ok:
            logger.warning("events {}: queue {} cannot be read: {}; retrying", self.name, self.spec.queue, reason)
            self.health.since = time.time()
        self.health.ok, self.health.reason = False, reason

    def _up(self) -> None:
        if not self.health.ok:
            logger.info("events {}: queue {} is readable again", self.name, self.spec.queue)
            self.health.since = time.time()
        self.health.ok, self.health.reason = True, ""


def _account_name(client: Any) -> str | None:
    return getattr(client, "account_name", None) or None


def _why(exc: AzureError) -> str:
    """Short and free of URLs (a SAS token would be in them)."""
    if isinstance(exc, ResourceNotFoundError):
        return "the queue does not exist (create it, and point the Event Grid subscription at it)"
    if isinstance(exc, HttpResponseError):
        return f"the service answered {exc.status_code} ({getattr(exc, 'error_code', None) or exc.reason})"
    return f"the service cannot be reached ({type(exc).__name__})"


def build_listeners(settings: Any, commit: Commit, wants: frozenset[str]) -> list[QueueListener]:
    """One listener per [events.NAME] table, on the queue's own account or (by default) the storage's."""
    from azure.storage.queue import QueueClient, QueueServiceClient

    from flowd.storage import account_credential
    from flowd.storage.http import transport

    out = []
    for name, spec in settings.events.items():
        storage: AdlsStorageSpec = settings.storage[spec.storage]
        own = any(getattr(spec, k) is not None for k in ("connection_string_env", "account_key_env",
                                                          "sas_token_env", "credential"))
        conn, url, credential = account_credential(spec if own else storage)
        options: dict[str, Any] = {"retry_total": 2, "connection_timeout": 10, "transport": transport()}
        if conn is not None:
            service = QueueServiceClient.from_connection_string(conn, **options)
        else:
            url = spec.account_url if own else url.replace(".blob.", ".queue.")
            service = QueueServiceClient(url, credential=credential, **options)
        queue: QueueClient = service.get_queue_client(spec.queue)
        poison: QueueClient = service.get_queue_client(spec.poison)
        out.append(QueueListener(name, spec, storage, queue, poison, commit, wants))
    return out
