"""Storages by name, built from [storage.NAME] tables."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from flowd.config import AdlsStorageSpec, Config
from flowd.errors import ConfigError, ConfigErrors
from flowd.locate import toml_index, toml_line
from flowd.storage.base import Conflict, Put, Storage
from flowd.storage.local import LocalStorage

__all__ = ["Conflict", "Put", "Storage", "LocalStorage", "build_storages"]


def build_storages(config: Config) -> dict[str, Storage]:
    out: dict[str, Storage] = {}
    errors: list[ConfigError] = []
    for name, spec in config.settings.storage.items():
        tenants = frozenset(spec.tenants) if spec.tenants is not None else None
        if isinstance(spec, AdlsStorageSpec):
            try:
                out[name] = _build_adls(name, spec, tenants)
            except _MissingSecret as exc:
                errors.append(_secret_error(config, name, exc))
        else:
            out[name] = LocalStorage(name, config.path(spec.root), tenants, spec.fsync, spec.link)
    for name, ev in config.settings.events.items():
        for key in ("connection_string_env", "account_key_env", "sas_token_env"):
            if getattr(ev, key) is not None:
                try:
                    _secret(ev, key)
                except _MissingSecret as exc:
                    errors.append(_secret_error(config, name, exc, "events"))
    if errors:
        raise ConfigErrors(errors)
    return out


class _MissingSecret(Exception):
    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(message)


def _secret(spec: Any, key: str) -> str:
    """Secrets come only from the environment variable the config names, read when the storage is built."""
    var: str = getattr(spec, key)
    value = os.environ.get(var, "")
    if not value.strip():
        raise _MissingSecret(key, f"environment variable {var} is not set (it should hold the "
                                  f"{key.removesuffix('_env').replace('_', ' ')})")
    return value.strip()


def _build_adls(name: str, spec: AdlsStorageSpec, tenants: frozenset[str] | None) -> Storage:
    # Imported here: a site with only local storages never loads the Azure SDK.
    from azure.storage.blob import BlobServiceClient

    from flowd.storage.adls import AdlsStorage, client_options
    from flowd.storage.http import transport

    options = {**client_options(spec.block_size), "transport": transport()}
    conn, url, credential = account_credential(spec)
    if conn is not None:
        client = BlobServiceClient.from_connection_string(conn, **options)
    else:
        client = BlobServiceClient(url, credential=credential, **options)

    def datalake() -> Any:
        from azure.storage.filedatalake import DataLakeServiceClient

        if conn is not None:
            return DataLakeServiceClient.from_connection_string(conn, **options)
        return DataLakeServiceClient(url.replace(".blob.", ".dfs."), credential=credential, **options)

    return AdlsStorage(name, client, container=spec.container, create_containers=spec.create_containers,
                       tenants=tenants, max_concurrency=spec.max_concurrency, datalake=datalake)


def account_credential(spec: Any) -> tuple[str | None, str, Any]:
    """(connection string, account URL, credential) from a spec's one credential option; the secret is
    read from its environment variable now. Shared by storages and the queues that announce their blobs."""
    if spec.connection_string_env:
        return _secret(spec, "connection_string_env"), "", None
    url = spec.account_url or ""
    if spec.account_key_env:
        parts = urlsplit(url)
        host = parts.hostname or ""
        # Path-style URLs (emulators, custom endpoints on an IP) carry the account as the first segment.
        path_style = host == "localhost" or host.replace(".", "").isdigit() or ":" in host
        account = parts.path.strip("/").split("/")[0] if path_style else host.split(".")[0]
        return None, url, {"account_name": account, "account_key": _secret(spec, "account_key_env")}
    if spec.sas_token_env:
        from azure.core.credentials import AzureSasCredential

        return None, url, AzureSasCredential(_secret(spec, "sas_token_env").lstrip("?"))
    from azure.identity import DefaultAzureCredential

    return None, url, DefaultAzureCredential()


def _secret_error(config: Config, name: str, exc: _MissingSecret, table: str = "storage") -> ConfigError:
    try:
        line = toml_line(toml_index(config.file.read_text("utf-8")), (table, name, exc.key))
    except (OSError, UnicodeDecodeError):
        line = None
    shown = os.path.relpath(config.file)
    return ConfigError(config.file.as_posix() if shown.startswith("..") else shown, line, f"{table}.{name}.{exc.key}",
                       exc.message)
