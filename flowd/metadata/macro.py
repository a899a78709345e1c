"""Color Factory's metadata macro actions, on a field's list of values.

Decisions (Color Factory never documented the fine print):
- A multi-valued field (keywords, supplemental categories, byline) takes a value as a list split on ","
  and ";" (`"sport, football"` is two keywords); surrounding spaces and empty items are dropped, and a
  value already present is not added twice.
- `append` on a single-valued field adds the text exactly as written, with no separator, as Color Factory
  does: write `value: " / AP"` to get one.
- `add_substring` is `append` unless the field already contains the (stripped) text, so running a macro
  twice does not add it twice. On a multi-valued field it adds the values not yet present.
- `replace_substring` replaces every occurrence of `find` in each value; a value left empty is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Action = Literal["clear", "append", "replace", "add_substring", "replace_substring"]
_SPLIT = re.compile(r"[,;]")


def split_values(value: str) -> list[str]:
    """`"a, b; c"` -> `["a", "b", "c"]`, without blanks or repeats."""
    return _unique(v.strip() for v in _SPLIT.split(value))


def apply(current: list[str], action: Action, value: str, find: str | None, multi: bool) -> list[str]:
    if action == "clear":
        return []
    if action == "replace":
        return split_values(value) if multi else ([value] if value.strip() else [])
    if action in ("append", "add_substring"):
        if multi:
            return _unique([*current, *split_values(value)])
        text = ", ".join(current)
        if action == "add_substring" and value.strip() and value.strip() in text:
            return list(current)
        return [text + value] if (text + value).strip() else []
    if action == "replace_substring":
        if not find:
            raise ValueError("replace_substring needs the text to find")
        return [v for v in (c.replace(find, value) for c in current) if v.strip()]
    raise ValueError(f"unknown macro action {action!r}; known: clear, append, replace, add_substring, "
                     "replace_substring")


def _unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out
