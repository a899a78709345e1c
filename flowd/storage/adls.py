"""kind = "adls": an Azure storage account (ADLS Gen2 or plain Blob), written through the Blob API.

The Blob API works on real ADLS Gen2 accounts (multi-protocol access) and on Azurite, which has no DFS
API. A key is "container/path/name"; with a pinned container the whole key is the blob path.

Conflicts are settled by the service, not by a look-then-write: every non-overwriting upload is
conditional (If-None-Match: *), so two writers can never both win one name. Each blob carries its step
token and content hash as metadata, so a retried step recognises its own earlier write.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import mimetypes
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Concatenate, NoReturn, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient, ContentSettings

from flowd.errors import ChangedError, ConflictError, PathEscapeError, PermanentError, StepError, TransientError
from flowd.storage.base import BlobInfo, Conflict, Put, incremented
from flowd.target import TargetError, clean_key

SHA_KEY = "flowd_sha256"
STEP_KEY = "flowd_step"
MTIME_KEY = "flowd_mtime"  # keep_mtime: the source's modification time (Last-Modified cannot be set)
CONTAINER_RULE = ("3-63 characters: lowercase letters, digits and single hyphens, starting and ending with a "
                  "letter or digit")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_MAX_INCREMENT = 100_000
_MAX_RACES = 20


def iso_mtime(mtime_ns: int) -> str:
    """A file time as the `flowd_mtime` metadata holds it: ISO 8601 in UTC, to the microsecond."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=mtime_ns // 1000)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def describe(info: Mapping[str, str]) -> dict[str, str]:
    """Blob metadata travels as HTTP headers: ASCII only, so values are percent-encoded (a source path
    like "Ærø/café.jpg" reads back with urllib.parse.unquote)."""
    return {k: quote(v, safe="/@:+,;=") for k, v in info.items()}


class UnreachableError(TransientError):
    """The account cannot be reached at all (connection refused, DNS, timeout)."""


class Breaker:
    """After the account could not be reached, calls fail at once for a while instead of each waiting out
    the SDK's connection retries: a batch of 64 jobs during an outage becomes 64 quick waits, not 64 x 15 s.
    The first call after the pause tries for real (and closes the breaker if it gets through)."""

    def __init__(self) -> None:
        self._until = 0.0
        self._trips = 0
        self._reason = ""

    def check(self, what: str) -> None:
        if time.monotonic() < self._until:
            raise UnreachableError(f"{what}: {self._reason} (retrying within {self._until - time.monotonic():.0f}s)")

    def trip(self, reason: str) -> None:
        self._trips += 1
        self._reason = reason
        self._until = time.monotonic() + min(30.0, 2.0 ** min(self._trips, 5))

    def ok(self) -> None:
        self._trips = 0
        self._until = 0.0


P = ParamSpec("P")
R = TypeVar("R")


def _guarded(method: Callable[Concatenate[AdlsStorage, P], R]) -> Callable[Concatenate[AdlsStorage, P], R]:
    @functools.wraps(method)
    def wrapper(self: AdlsStorage, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self.breaker.check(f"{self.name}: {self.host}")
        try:
            result = method(self, *args, **kwargs)
        except UnreachableError as exc:
            # Only the cause is kept: the failed request's own key belongs to another job's message.
            self.breaker.trip(str(exc).rpartition(": ")[2])
            raise
        self.breaker.ok()
        return result
    return wrapper


def client_options(block_size: int, *, retries: int = 3, backoff: float = 1) -> dict[str, Any]:
    """BlobServiceClient options. Few, quick SDK retries: a longer outage is the job queue's to wait out,
    with its own backoff. Anything above one block is uploaded in blocks streamed from the file."""
    return {"retry_total": retries, "retry_connect": 1, "initial_backoff": backoff, "increment_base": 2,
            "connection_timeout": 10,
            "max_block_size": block_size, "max_single_put_size": block_size}


class _Digest:
    """A file's sha256: taken from the bytes as they are uploaded, or from the caller's callable when a
    comparison needs it before any upload (asked once)."""

    def __init__(self, compute: Callable[[], str]) -> None:
        self._compute = compute
        self.value: str | None = None

    def __call__(self) -> str:
        if self.value is None:
            self.value = self._compute()
        return self.value


class AdlsStorage:
    remote = True
    def __init__(self, name: str, client: BlobServiceClient, *, container: str | None = None,
                 create_containers: bool = True, tenants: frozenset[str] | None = None,
                 max_concurrency: int = 4, datalake: Callable[[], Any] | None = None) -> None:
        self.name = name
        # Builds a DataLakeServiceClient on the same account and credential: used only for renames on a
        # hierarchical-namespace account, which Azurite is not.
        self._datalake = datalake
        self._hns: bool | None = None
        self.tenants = tenants
        self.client = client
        self.container = container
        self.create_containers = create_containers
        self.max_concurrency = max_concurrency
        # The sizes client_options set: one request up to a block, blocks of block_size above that.
        config = getattr(client, "_config", None)
        self._block = int(getattr(config, "max_block_size", 4 * 2**20))
        self._single_put = int(getattr(config, "max_single_put_size", self._block))
        self.host = urlsplit(client.url).netloc  # what messages may show: never a key or a SAS token
        self._ready: set[str] = set()
        self._clients: dict[str, ContainerClient] = {}
        self.breaker = Breaker()
        self._lock = threading.Lock()
        if container is not None:
            _check_container(container)

    # -- keys ----------------------------------------------------------------------------------------
    def _split(self, key: str) -> tuple[str, str]:
        try:
            key = clean_key(key)
        except TargetError as exc:
            raise PathEscapeError(str(exc)) from None
        if self.container is not None:
            return self.container, key
        container, _, blob = key.partition("/")
        if not blob:
            raise PermanentError(f"{self.name}:{key}: the key needs a container and a path (container/path/name)")
        _check_container(container)
        return container, blob

    def _container(self, container: str) -> ContainerClient:
        """The container, created on first use if allowed; known ones are not asked about again (and their
        client is kept: building one costs more CPU than sending a small file's request)."""
        client = self._clients.get(container)
        if client is not None and container in self._ready:
            return client
        client = self.client.get_container_client(container)
        where = f"{self.name}: container '{container}' on {self.host}"
        try:
            if not client.exists():
                if not self.create_containers:
                    raise PermanentError(f"{where} does not exist and create_containers is false "
                                         "(create it, or set create_containers = true)")
                try:
                    client.create_container()
                except ResourceExistsError:
                    pass  # created meanwhile by another worker
        except AzureError as exc:
            _raise(exc, where)
        with self._lock:
            self._ready.add(container)
            self._clients[container] = client
        return client

    # -- writes --------------------------------------------------------------------------------------
    @_guarded
    def put_file(self, key: str, source: Path, *, conflict: Conflict, token: str,
                 sha256: Callable[[], str], may_link: bool = False, info: Mapping[str, str] | None = None,
                 replaces: str | None = None, mtime_ns: int | None = None, digits: int = 0) -> Put:
        """`mtime_ns`: a blob's Last-Modified is the service's own and cannot be set, so the time is kept in its
        metadata instead, as `flowd_mtime` (ISO 8601, UTC, e.g. 2024-05-01T09:30:00.123456Z)."""
        container, _ = self._split(key)
        client = self._container(container)
        # The hash goes into the blob's metadata, computed from the very bytes uploaded as they are read;
        # `sha256` is asked only when a comparison comes before any upload (skip_identical looks first).
        digest = _Digest(sha256)
        if mtime_ns is not None:
            info = {**(info or {}), MTIME_KEY: iso_mtime(mtime_ns)}
        tags = {**describe(info or {}), STEP_KEY: token}
        if replaces is not None:
            return self._replace(client, key, source, tags, replaces, digest)
        n, races = 0, 0
        while n < _MAX_INCREMENT:
            candidate = key if n == 0 else incremented(key, n, digits)
            blob = self._split(candidate)[1]
            # Identical bytes need no upload at all, so skip_identical looks first. The other policies upload
            # conditionally straight away (one request per file) and look only when refused.
            settled = self._settle(client, candidate, blob, conflict, token, digest) \
                if conflict is Conflict.SKIP_IDENTICAL else True
            if settled is False:
                n += 1
                continue
            if settled is not True:
                return settled
            try:
                self._upload(client, blob, source, tags, digest, overwrite=conflict is Conflict.OVERWRITE)
                return Put(candidate, "written")
            except ResourceExistsError:
                # The name is taken (by us in an earlier attempt, by identical bytes, or by another writer).
                settled = self._settle(client, candidate, blob, conflict, token, digest)
                if settled is False:
                    n += 1
                    continue
                if settled is not True:
                    return settled
                races += 1  # deleted again since the refusal: try the same name once more
                if races > _MAX_RACES:
                    raise TransientError(f"{self.name}: {candidate} on {self.host} keeps being taken "
                                         "by other writers") from None
            except ResourceNotFoundError:
                with self._lock:
                    self._ready.discard(container)  # deleted under us: the retry creates it again
                raise TransientError(f"{self.name}: container '{container}' on {self.host} disappeared "
                                     f"while writing {candidate}") from None
            except AzureError as exc:
                _raise(exc, f"{self.name}: cannot write {candidate} on {self.host}")
        raise ConflictError(f"more than {_MAX_INCREMENT} names taken for {self.name}:{key}")

    def _replace(self, client: ContainerClient, key: str, source: Path, meta: dict[str, str], etag: str,
                 digest: _Digest) -> Put:
        """An in-place edit: overwrite the very version that was read (If-Match), never a newer one."""
        blob = self._split(key)[1]
        current = self._metadata(client, key, blob)
        if current is not None and current.get(STEP_KEY) == meta[STEP_KEY]:
            return Put(key, "already")  # this step's own earlier write (its ETag is new, so If-Match fails)
        try:
            self._upload(client, blob, source, meta, digest, overwrite=True, etag=etag)
        except AzureError as exc:
            self._bound_failed(exc, key, "processed", f"{self.name}: cannot write {key} on {self.host}")
        return Put(key, "written")

    def _bound_failed(self, exc: AzureError, key: str, doing: str, what: str) -> NoReturn:
        """A request bound to one version of `key` (If-Match) failed. Gone or replaced is a ChangedError, which
        the job's retry settles as vanished or superseded; anything else is classified as every failure is."""
        if isinstance(exc, ResourceNotFoundError):
            raise ChangedError(f"{self.name}:{key} was deleted while it was being {doing}") from None
        if isinstance(exc, HttpResponseError) and exc.status_code == 412:
            raise ChangedError(f"{self.name}:{key} changed while it was being {doing}; the new version is "
                               "left for its own job") from None
        _raise(exc, what)

    def _upload(self, client: ContainerClient, blob: str, source: Path, meta: dict[str, str], digest: _Digest,
                overwrite: bool, etag: str | None = None) -> None:
        """Write the file as one request (up to one block) or as blocks staged in parallel and committed at
        once; either way the hash of the bytes read is in the metadata of the one request that creates the
        blob, and that request carries the conditions (If-None-Match: * unless overwriting; If-Match etag)."""
        kind, _ = mimetypes.guess_type(blob)
        settings = ContentSettings(content_type=kind or "application/octet-stream")
        conditions: dict[str, Any] = ({"etag": etag, "match_condition": MatchConditions.IfNotModified}
                                      if etag is not None else
                                      {} if overwrite else {"match_condition": MatchConditions.IfMissing})
        target = client.get_blob_client(blob)
        try:
            # Unbuffered: blocks are read whole into their own bytes objects, so a buffer would only copy.
            fh = open(source, "rb", buffering=0)  # streamed block by block, never read whole
        except OSError as exc:
            raise TransientError(f"cannot read {source}: {exc.strerror}") from None
        try:
            with fh:
                length = os.fstat(fh.fileno()).st_size
                if length <= self._single_put:
                    data = _read(fh, length, source)
                    digest.value = hashlib.sha256(data).hexdigest()
                    target.upload_blob(data, length=len(data), blob_type="BlockBlob", overwrite=overwrite,
                                       content_settings=settings, metadata={**meta, SHA_KEY: digest.value},
                                       **conditions)
                    return
                blocks = self._stage(target, fh, source, digest)
            target.commit_block_list(blocks, content_settings=settings, metadata={**meta, SHA_KEY: digest()},
                                     **conditions)
        except ResourceModifiedError as exc:
            if etag is None and not overwrite:
                raise ResourceExistsError(message="the blob already exists", response=exc.response) from None
            raise

    def _stage(self, target: BlobClient, fh: BinaryIO, source: Path, digest: _Digest) -> list[BlobBlock]:
        """Read the file in blocks, hashing each as it passes, and stage them on `max_concurrency` threads
        with at most one more block read ahead (memory stays at a few blocks, whatever the file's size).
        Block ids carry a prefix of this attempt's own: a retried or concurrent upload of the same name
        never commits another attempt's blocks."""
        prefix = uuid.uuid4().hex
        h = hashlib.sha256()
        blocks: list[BlobBlock] = []
        workers = max(1, self.max_concurrency)
        with ThreadPoolExecutor(workers, thread_name_prefix="flowd-upload") as pool:
            pending: set[Future[Any]] = set()
            try:
                while True:
                    data = _read(fh, self._block, source)  # read ahead while all workers are busy
                    if not data:
                        break
                    if len(pending) >= workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            f.result()
                    block = base64.b64encode(f"{prefix}-{len(blocks):06d}".encode()).decode()
                    blocks.append(BlobBlock(block))
                    pending.add(pool.submit(target.stage_block, block, data, length=len(data)))
                    h.update(data)  # while the block travels (bytes are immutable: safe to share)
                    del data
                for f in pending:
                    f.result()
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        digest.value = h.hexdigest()
        return blocks

    def _metadata(self, client: ContainerClient, key: str, blob: str) -> dict[str, str] | None:
        """The blob's metadata, or None when the name is free."""
        try:
            return dict(client.get_blob_client(blob).get_blob_properties().metadata or {})
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot read {key} on {self.host}")

    def _settle(self, client: ContainerClient, key: str, blob: str, conflict: Conflict, token: str,
                digest: _Digest) -> Put | bool:
        """Look at the name: True when it is free, False to try the next name, or how the write ends."""
        meta = self._metadata(client, key, blob)
        if meta is None:
            return True
        put = self._decide(client, key, blob, meta, conflict, token, digest)
        return False if put is None else put

    def _decide(self, client: ContainerClient, key: str, blob: str, meta: dict[str, str], conflict: Conflict,
                token: str, digest: Callable[[], str]) -> Put | None:
        """The key is taken: our own earlier write, identical bytes, or a conflict. None: try the next name."""
        if meta.get(STEP_KEY) == token:
            return Put(key, "already")
        if conflict is Conflict.SKIP_IDENTICAL and self._same(client, blob, meta, digest):
            return Put(key, "skipped")
        if conflict is Conflict.INCREMENT:
            return None
        raise ConflictError(
            f"target {self.name}:{key} exists"
            + (" with different content" if conflict is Conflict.SKIP_IDENTICAL else "")
            + f" and the conflict policy is '{conflict.value}' (use conflict: increment, overwrite or skip_identical)")

    def _same(self, client: ContainerClient, blob: str, meta: dict[str, str], digest: Callable[[], str]) -> bool:
        if SHA_KEY in meta:
            return meta[SHA_KEY] == digest()
        # Not written by flowd: hash its bytes as they stream past.
        h = hashlib.sha256()
        try:
            for chunk in client.download_blob(blob).chunks():
                h.update(chunk)
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot read {blob} on {self.host}")
        return h.hexdigest() == digest()

    @_guarded
    def plan(self, key: str, conflict: Conflict, sha256: Callable[[], str], digits: int = 0) -> Put:
        container, _ = self._split(key)
        client = self.client.get_container_client(container)
        for n in range(_MAX_INCREMENT):
            candidate = key if n == 0 else incremented(key, n, digits)
            blob = self._split(candidate)[1]
            meta = self._metadata(client, candidate, blob)
            if meta is None:
                return Put(candidate, "written")  # also when the container itself is missing
            if conflict is Conflict.OVERWRITE:
                return Put(candidate, "written")
            if conflict is Conflict.SKIP_IDENTICAL and self._same(client, blob, meta, sha256):
                return Put(candidate, "skipped")
            if conflict is not Conflict.INCREMENT:
                raise ConflictError(f"target {self.name}:{candidate} exists and the conflict policy is "
                                    f"'{conflict.value}'")
        raise ConflictError(f"more than {_MAX_INCREMENT} names taken for {self.name}:{key}")

    def unshare(self, key: str) -> None:
        """Nothing is ever linked: every upload is its own copy."""

    def sync(self) -> None:
        """A completed upload is already durable (the service acknowledged the commit)."""

    # -- the rest of the contract --------------------------------------------------------------------
    @_guarded
    def exists(self, key: str) -> bool:
        container, blob = self._split(key)
        try:
            return bool(self.client.get_blob_client(container, blob).exists())
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot read {key} on {self.host}")

    @_guarded
    def read_bytes(self, key: str) -> bytes:
        container, blob = self._split(key)
        try:
            return bytes(self.client.get_blob_client(container, blob).download_blob().readall())
        except ResourceNotFoundError:
            raise PermanentError(f"{self.name}: no blob {key} on {self.host}") from None
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot read {key} on {self.host}")

    @_guarded
    def delete(self, key: str, etag: str | None = None) -> bool:
        """Delete the blob; with an ETag only that version (a newer one is left for its own job)."""
        container, blob = self._split(key)
        conditions: dict[str, Any] = ({"etag": etag, "match_condition": MatchConditions.IfNotModified}
                                      if etag is not None else {})
        try:
            self.client.get_blob_client(container, blob).delete_blob(**conditions)
            return True
        except ResourceNotFoundError:
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                if self.stat(key) is None:
                    return False  # If-Match on a blob that is gone fails as a precondition, not as missing
                raise ChangedError(f"{self.name}:{key} changed since it was read; the new version stays") from None
            _raise(exc, f"{self.name}: cannot delete {key} on {self.host}")
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot delete {key} on {self.host}")

    @_guarded
    def stat(self, key: str) -> BlobInfo | None:
        """The blob's size, version and metadata; None when there is no such blob."""
        container, blob = self._split(key)
        try:
            props = self.client.get_blob_client(container, blob).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot read {key} on {self.host}")
        modified = props.last_modified.timestamp() if props.last_modified else time.time()
        return BlobInfo(int(props.size), str(props.etag), int(modified * 1e9), props.content_settings.content_type,
                        dict(props.metadata or {}))

    @_guarded
    def download(self, key: str, dest: Path, etag: str | None = None) -> None:
        """Stream the blob into `dest` (never whole in memory). With an ETag, exactly that version: a blob
        replaced meanwhile raises ChangedError rather than mixing two versions' bytes."""
        container, blob = self._split(key)
        conditions: dict[str, Any] = ({"etag": etag, "match_condition": MatchConditions.IfNotModified}
                                      if etag is not None else {})
        try:
            with open(dest, "wb") as fh:
                stream = self.client.get_blob_client(container, blob).download_blob(
                    max_concurrency=self.max_concurrency, **conditions)
                stream.readinto(fh)
        except AzureError as exc:
            self._bound_failed(exc, key, "read", f"{self.name}: cannot read {key} on {self.host}")
        except OSError as exc:
            raise TransientError(f"cannot write the download of {self.name}:{key}: {exc.strerror}") from None

    # -- moves -------------------------------------------------------------------------------------------
    def hierarchical(self) -> bool:
        """Whether the account has a hierarchical namespace (ADLS Gen2), asked once."""
        if self._hns is None:
            try:
                info = self.client.get_account_information()
            except HttpResponseError:
                info = {}  # a SAS scoped to a container cannot ask: fall back to copy + delete
            except AzureError as exc:
                _raise(exc, f"{self.name}: cannot reach {self.host}")
            self._hns = bool(info.get("is_hns_enabled")) and self._datalake is not None
        return self._hns

    @_guarded
    def rename(self, source: str, key: str, *, conflict: Conflict, etag: str | None, digits: int = 0) -> Put | None:
        """Move a blob within this account by the Data Lake API's atomic rename: no bytes travel, and the
        source version (ETag) and a free destination (If-None-Match: *) are conditions of the one request.
        None: not possible here (no hierarchical namespace, or skip_identical needs a look at the bytes):
        the caller copies and then deletes instead."""
        if conflict is Conflict.SKIP_IDENTICAL or not self.hierarchical():
            return None
        assert self._datalake is not None
        src_container, src_path = self._split(source)
        self._container(self._split(key)[0])
        service = self._datalake()
        for n in range(_MAX_INCREMENT):
            candidate = key if n == 0 else incremented(key, n, digits)
            container, path = self._split(candidate)
            conditions: dict[str, Any] = {}
            if etag is not None:
                conditions.update(source_etag=etag, source_match_condition=MatchConditions.IfNotModified)
            if conflict is not Conflict.OVERWRITE:
                conditions["match_condition"] = MatchConditions.IfMissing
            try:
                service.get_file_client(src_container, src_path).rename_file(f"{container}/{path}", **conditions)
                return Put(candidate, "written")
            except AzureError as exc:
                # The name is taken: a 409, or a 412 on If-None-Match while the source is still the version read.
                taken = isinstance(exc, ResourceExistsError) or (
                    isinstance(exc, HttpResponseError) and exc.status_code == 412
                    and (etag is None or ((info := self.stat(source)) is not None
                                          and info.etag.strip('"') == etag.strip('"'))))
                if not taken:
                    self._bound_failed(exc, source, "moved", f"{self.name}: cannot move {source} to {candidate} "
                                       f"on {self.host}")
                if conflict is Conflict.INCREMENT:
                    continue
                raise ConflictError(f"target {self.name}:{candidate} exists and the conflict policy is "
                                    f"'{conflict.value}' (use conflict: increment or overwrite)") from None
        raise ConflictError(f"more than {_MAX_INCREMENT} names taken for {self.name}:{key}")

    def probe(self, timeout: float = 5) -> str | None:
        """None when the service answers; else why not (for `flowd status`). One quick request, no retries."""
        try:
            self.client.get_account_information(retry_total=0, connection_timeout=timeout, read_timeout=timeout)
            return None
        except AzureError as exc:
            try:
                _raise(exc, f"{self.host}")
            except StepError as err:
                return str(err)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under a folder-like prefix ("raw/2024" lists raw/2024/..., not raw/2024x), streamed page by page."""
        prefix = clean_key(prefix, allow_empty=True) if prefix else ""
        if self.container is not None:
            yield from self._list(self.container, prefix, "")
            return
        if not prefix:
            try:
                names = [c.name for c in self.client.list_containers()]
            except AzureError as exc:
                _raise(exc, f"{self.name}: cannot list containers on {self.host}")
            for container in names:
                yield from self._list(container, "", f"{container}/")
            return
        container, _, rest = prefix.partition("/")
        _check_container(container)
        yield from self._list(container, rest, f"{container}/")

    def list_info(self, prefix: str) -> Iterator[tuple[str, BlobInfo]]:
        """Keys under a prefix with their size, version and time, streamed page by page (a sweep's
        listing: one request per 5,000 blobs, never a stat per blob)."""
        prefix = clean_key(prefix, allow_empty=True) if prefix else ""
        if self.container is not None:
            container, folder, shown = self.container, prefix, ""
        else:
            container, _, folder = prefix.partition("/")
            _check_container(container)
            shown = f"{container}/"
        client = self.client.get_container_client(container)
        try:
            for item in client.list_blobs(name_starts_with=f"{folder}/" if folder else None):
                modified = item.last_modified.timestamp() if item.last_modified else 0.0
                settings = item.content_settings
                yield f"{shown}{item.name}", BlobInfo(int(item.size), str(item.etag), int(modified * 1e9),
                                                      settings.content_type if settings else None)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot list {shown}{folder} on {self.host}")

    def _list(self, container: str, folder: str, shown: str) -> Iterator[str]:
        client = self.client.get_container_client(container)
        try:
            for item in client.list_blobs(name_starts_with=f"{folder}/" if folder else None):
                yield f"{shown}{item.name}"
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            _raise(exc, f"{self.name}: cannot list {shown}{folder} on {self.host}")


def _read(fh: BinaryIO, size: int, source: Path) -> bytes:
    """Up to `size` bytes (fewer only at the end of the file); an unbuffered read may return less."""
    try:
        data = fh.read(size)
        if len(data) == size or not data:
            return data
        parts = [data]
        got = len(data)
        while got < size:
            more = fh.read(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)
    except OSError as exc:
        raise TransientError(f"cannot read {source}: {exc.strerror}") from None


def _check_container(name: str) -> None:
    if not _CONTAINER.match(name):
        raise PermanentError(f"'{name}' is not a valid container name: {CONTAINER_RULE}")


def _raise(exc: AzureError, what: str) -> NoReturn:
    """Network trouble, throttling and service faults are worth waiting for; refusals are not.

    Only `what` (storage name, account host, key) and the service's error code are shown: the SDK's own
    message can quote request URLs, which carry a SAS token."""
    error: StepError
    if isinstance(exc, ClientAuthenticationError):
        error = PermanentError(f"{what}: access denied ({_code(exc)}); check the storage's credential")
    elif isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        error = UnreachableError(f"{what}: the service cannot be reached ({type(exc).__name__})")
    elif isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status >= 500 or status in (408, 429):
            error = TransientError(f"{what}: the service answered {status} ({_code(exc)})")
        elif status == 403:
            error = PermanentError(f"{what}: access denied ({_code(exc)}); check the storage's credential")
        else:
            error = PermanentError(f"{what}: refused with {status} ({_code(exc)})")
    else:
        error = UnreachableError(f"{what}: {type(exc).__name__}")
    raise error from None


def _code(exc: HttpResponseError) -> str:
    code: Any = getattr(exc, "error_code", None)
    return str(code) if code else (exc.reason or "no error code")
