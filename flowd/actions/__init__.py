"""Every action by its YAML key. A new action is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from flowd.action import Action
from flowd.actions import convert, delete, metadata, quarantine, rename, store, webhook
from flowd.parse import Loc, Parser

Builder = Callable[[object, Loc, Parser], Action | None]

ACTIONS: dict[str, Builder] = {
    "store": store.build_store,
    "move": store.build_move,
    "rename": rename.build_rename,
    "delete": delete.build_delete,
    "quarantine": quarantine.build_quarantine,
    "webhook": webhook.build_webhook,
    "set_metadata": metadata.build_set_metadata,
    "merge_metadata": metadata.build_merge_metadata,
    "strip_metadata": metadata.build_strip_metadata,
    "map_category": metadata.build_map_category,
    "convert": convert.build_convert,
}

__all__ = ["ACTIONS", "Builder"]
