"""Storages by name, built from [storage.NAME] tables."""

from __future__ import annotations

from flowd.config import Config
from flowd.storage.base import Conflict, Put, Storage
from flowd.storage.local import LocalStorage

__all__ = ["Conflict", "Put", "Storage", "LocalStorage", "build_storages"]


def build_storages(config: Config) -> dict[str, Storage]:
    out: dict[str, Storage] = {}
    for name, spec in config.settings.storage.items():
        tenants = frozenset(spec.tenants) if spec.tenants is not None else None
        out[name] = LocalStorage(name, config.path(spec.root), tenants, spec.fsync, spec.link)
    return out
