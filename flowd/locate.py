"""Map a validation error's location (`hotfolders.0.stable_seconds`) back to a line of the file.

pydantic reports where in the data a value is wrong; a person needs the line. YAML keeps marks on its
node tree; for TOML we index table headers and keys ourselves (tomllib keeps no positions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml

Loc = Sequence[str | int]


def yaml_line(root: yaml.Node | None, loc: Loc) -> int | None:
    """The line of the deepest node along `loc` that exists (1-based)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def toml_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Every table header and key in a TOML file, by data path, with its line."""
    index: dict[tuple[str | int, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    current: tuple[str | int, ...] = ()
    in_multiline = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1:
                in_multiline = False
            continue
        header = _HEADER.match(raw)
        if header:
            names = tuple(_unquote(p) for p in header.group(2).split("."))
            if header.group(1) == "[[":
                arrays[names] = arrays.get(names, -1) + 1
                current = (*names, arrays[names])
                index.setdefault(names, number)
            else:
                current = _with_array_indexes(names, arrays)
            _set_with_parents(index, current, number)
            continue
        key = _KEY.match(raw)
        if key:
            names = tuple(_unquote(p) for p in key.group(1).split("."))
            _set_with_parents(index, (*current, *names), number)
            if raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1:
                in_multiline = True
    return index


def _set_with_parents(index: dict[tuple[str | int, ...], int], path: tuple[str | int, ...], number: int) -> None:
    # [storages.lake] also defines the implicit table `storages`: an error about that key needs a line too.
    for end in range(1, len(path) + 1):
        index.setdefault(path[:end], number)


def toml_line(index: dict[tuple[str | int, ...], int], loc: Loc) -> int | None:
    path = tuple(loc)
    while path:
        if path in index:
            return index[path]
        path = path[:-1]
    return None


def _with_array_indexes(names: tuple[str, ...], arrays: dict[tuple[str, ...], int]) -> tuple[str | int, ...]:
    # [hotfolders.run] after [[hotfolders]] belongs to the latest array element.
    out: list[str | int] = []
    for i, name in enumerate(names):
        out.append(name)
        prefix = names[: i + 1]
        if prefix in arrays and i < len(names) - 1:
            out.append(arrays[prefix])
    return tuple(out)


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part
