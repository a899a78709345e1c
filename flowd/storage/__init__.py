"""Storages by name, built from [storage.NAME] tables."""

from __future__ import annotations

import os

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
    if errors:
        raise ConfigErrors(errors)
    return out


class _MissingSecret(Exception):
    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(message)


def _secret(spec: AdlsStorageSpec, key: str) -> str:
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

    options = client_options(spec.block_size)
    if spec.connection_string_env:
        client = BlobServiceClient.from_connection_string(_secret(spec, "connection_string_env"), **options)
    elif spec.account_key_env:
        client = BlobServiceClient(spec.account_url or "", credential=_secret(spec, "account_key_env"), **options)
    elif spec.sas_token_env:
        from azure.core.credentials import AzureSasCredential

        token = _secret(spec, "sas_token_env").lstrip("?")
        client = BlobServiceClient(spec.account_url or "", credential=AzureSasCredential(token), **options)
    else:
        try:
            from azure.identity import DefaultAzureCredential  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise _MissingSecret("credential", 'credential = "default" needs the azure-identity package '
                                               "(pip install azure-identity)") from None
        client = BlobServiceClient(spec.account_url or "", credential=DefaultAzureCredential(), **options)
    return AdlsStorage(name, client, container=spec.container, create_containers=spec.create_containers,
                       tenants=tenants, max_concurrency=spec.max_concurrency)


def _secret_error(config: Config, name: str, exc: _MissingSecret) -> ConfigError:
    try:
        line = toml_line(toml_index(config.file.read_text("utf-8")), ("storage", name, exc.key))
    except (OSError, UnicodeDecodeError):
        line = None
    shown = os.path.relpath(config.file)
    return ConfigError(config.file.as_posix() if shown.startswith("..") else shown, line, f"storage.{name}.{exc.key}", exc.message)
