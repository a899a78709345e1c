"""`--map 'D:\\CF\\AP\\In=hotfolders/ap-in'` and `--map 'D:\\CF\\AP\\Web=lake:web'`: where each Windows or
UNC path of a Color Factory site lives under flowd. A prefix maps to a local folder or to a storage target;
the longest prefix wins, compared case-insensitively and component by component, as job requests map theirs
(flowd/jrf.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flowd.errors import FlowdError
from flowd.jrf import _is_dots, _split_windows

_STORAGE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):(.*)$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")  # Azure's rule for container names


class MapError(FlowdError):
    """A --map or --storage option that cannot be used, or paths of the export that no --map covers."""


@dataclass(frozen=True, slots=True)
class Local:
    """A local folder: `folder` as the user wrote it (relative paths are relative to the output DIR, where
    config.toml is, as every path in a flowd config is relative to its file)."""

    folder: str

    def join(self, rest: list[str]) -> str:
        base = self.folder.rstrip("/") or "/"
        return "/".join([base, *rest]) if rest else base


@dataclass(frozen=True, slots=True)
class Stored:
    """A storage target: `lake:web` is storage `lake`, key prefix `web`."""

    storage: str
    prefix: str

    def join(self, rest: list[str]) -> str:
        return "/".join(p for p in [self.prefix.strip("/"), *rest] if p)


@dataclass(frozen=True, slots=True)
class Mapping:
    prefix: str  # as given, for messages and [path_map]
    key: tuple[str, ...]  # anchor + lower-cased components
    to: Local | Stored

    @property
    def depth(self) -> int:
        return len(self.key)


@dataclass(frozen=True, slots=True)
class Mapped:
    """A Windows path resolved through one mapping: `rest` are the components below its prefix."""

    path: str
    mapping: Mapping
    rest: list[str]

    @property
    def local(self) -> str | None:
        return self.mapping.to.join(self.rest) if isinstance(self.mapping.to, Local) else None


@dataclass
class PathMapper:
    mappings: list[Mapping]
    storage_kinds: dict[str, str] = field(default_factory=dict)  # --storage NAME=adls|local

    @classmethod
    def parse(cls, maps: list[str], storages: list[str]) -> PathMapper:
        problems: list[str] = []
        kinds: dict[str, str] = {}
        for option in storages:
            name, eq, kind = option.partition("=")
            if not eq or not _STORAGE.match(f"{name}:") or kind not in ("adls", "local"):
                problems.append(f"--storage {option!r}: expected NAME=adls or NAME=local")
                continue
            kinds[name] = kind
        found: dict[tuple[str, ...], Mapping] = {}
        for option in maps:
            windows, eq, target = _split_option(option)
            if not eq or not target:
                problems.append(f"--map {option!r}: expected WINDOWS_PATH=FOLDER or WINDOWS_PATH=STORAGE:PREFIX "
                                "(e.g. --map 'D:\\CF\\AP\\In=hotfolders/ap-in' --map 'D:\\CF\\AP\\Web=lake:web')")
                continue
            split = _split_windows(windows) if "\x00" not in windows else None
            if split is None:
                problems.append(f"--map {option!r}: {windows!r} is not a Windows drive (D:\\...) or UNC "
                                "(\\\\server\\share\\...) path")
                continue
            anchor, components = split
            if any(_is_dots(c) for c in components):
                problems.append(f"--map {option!r}: {windows!r} has a '.' or '..' component")
                continue
            if "\x00" in target:
                problems.append(f"--map {option!r}: the target holds a NUL character")
                continue
            storage = _STORAGE.match(target)
            to: Local | Stored
            if storage and not _DRIVE.match(target) and not target.startswith(("/", ".")):
                name, prefix = storage.group(1), storage.group(2).strip("/")
                if any(_is_dots(c) for c in prefix.split("/") if c) or "\\" in prefix:
                    problems.append(f"--map {option!r}: the key prefix {prefix!r} must be '/'-separated without "
                                    "'.' or '..'")
                    continue
                container = prefix.split("/")[0]
                if kinds.get(name) == "adls" and not _CONTAINER.match(container):
                    problems.append(f"--map {option!r}: in an ADLS storage the first segment after '{name}:' is the "
                                    f"container, 3-63 lower-case letters, digits and single hyphens (got "
                                    f"{container!r}), e.g. {name}:web or {name}:web/Sport")
                    continue
                to = Stored(name, prefix)
            else:
                if any(c == ".." for c in target.replace("\\", "/").split("/")):
                    problems.append(f"--map {option!r}: the folder {target!r} has a '..' component; give it "
                                    "without (relative folders are relative to --out)")
                    continue
                to = Local(target)
            key = anchor + tuple(c.lower() for c in components)
            if key in found:
                problems.append(f"--map {option!r}: {found[key].prefix!r} is already mapped; one mapping per prefix")
                continue
            found[key] = Mapping(windows.rstrip("\\/") if components else windows, key, to)
        if problems:
            raise MapError("\n".join(problems))
        return cls(sorted(found.values(), key=lambda m: m.depth, reverse=True), kinds)

    def resolve(self, path: str) -> Mapped | None:
        """The mapping of a Windows path, or None when no --map covers it."""
        split = _split_windows(path.strip()) if "\x00" not in path else None
        if split is None:
            return None
        anchor, components = split
        if any(_is_dots(c) for c in components):
            return None
        key = anchor + tuple(c.lower() for c in components)
        for m in self.mappings:
            if key[:m.depth] == m.key:
                return Mapped(path, m, components[m.depth - len(anchor):])
        return None

    def why_unmapped(self, path: str) -> str:
        """Why resolve() found nothing, as the end of a sentence."""
        split = _split_windows(path.strip()) if "\x00" not in path else None
        if split is None:
            return "is not an absolute Windows path (D:\\... or \\\\server\\share\\...): fix it in the export"
        if any(_is_dots(c) for c in split[1]):
            return "has a '.' or '..' component, which could point anywhere: fix it in the export"
        return "has no --map"

    def storage_kind(self, name: str) -> str:
        return self.storage_kinds.get(name, "local")


def _split_option(option: str) -> tuple[str, str, str]:
    """`D:\\CF\\In=hotfolders/in`: split at the '=' that ends the Windows path. A UNC share or folder name may
    hold '=' too, but so may a local folder: the split is at the first '=' whose left side is a Windows path."""
    for i in range(len(option)):
        if option[i] == "=" and _split_windows(option[:i]) is not None:
            return option[:i], "=", option[i + 1:]
    return option.partition("=")
