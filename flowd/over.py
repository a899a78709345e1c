"""`over:` in a rule: what a sweep lists. A folder, a hot folder, or a storage prefix.

```yaml
over: {folder: "hotfolders/originals", recursive: true}
over: {hotfolder: inbox}
over: {storage: "lake:archive/2025/", keep_newest: 5000}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowd.parse import Loc, Parser
from flowd.target import TargetError, parse_target

OVER_KINDS = ("folder", "hotfolder", "storage")
OVER_OPTIONS = ("recursive", "keep_newest", "remove_empty_folders")


@dataclass(frozen=True, slots=True)
class Over:
    kind: Literal["folder", "hotfolder", "storage"]
    text: str  # as written, for messages
    root: Path | None = None  # folder and hotfolder: the absolute folder; resolved for local storages later
    hotfolder: str | None = None
    storage: str | None = None
    prefix: str = ""  # storage: "container/path" (no trailing '/'), listed recursively or one level
    recursive: bool = True
    keep_newest: int | None = None  # only what is beyond the newest N (by modification time) is swept
    remove_empty_folders: bool = False  # folders left empty by the sweep are removed (local only)

    def describe(self) -> str:
        extra = [] if self.recursive else ["not recursive"]
        if self.keep_newest is not None:
            extra.append(f"keeping the newest {self.keep_newest:,}")
        return f"{self.kind} {self.text}" + (f" ({', '.join(extra)})" if extra else "")


def parse_over(value: object, loc: Loc, p: Parser) -> Over | None:
    if not isinstance(value, dict):
        p.error(loc, "expected {folder: PATH}, {hotfolder: NAME} or {storage: \"STORAGE:container/prefix\"}",
                value, ", ".join(OVER_KINDS))
        return None
    kinds = [k for k in value if k in OVER_KINDS]
    ok = True
    for key in value:
        if key not in OVER_KINDS and key not in OVER_OPTIONS:
            p.error([*loc, str(key)], f"unknown key '{key}' in over", key, ", ".join(OVER_KINDS + OVER_OPTIONS))
            ok = False
    if len(kinds) != 1:
        p.error(loc, "over names exactly one of folder, hotfolder, storage", value, ", ".join(OVER_KINDS))
        return None
    kind = kinds[0]
    arg = value[kind]
    recursive = value.get("recursive", True)
    if not isinstance(recursive, bool):
        p.error([*loc, "recursive"], "expected true or false", recursive)
        ok = False
    keep = value.get("keep_newest")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        p.error([*loc, "keep_newest"], "expected a whole number of files to keep (0 or more)", keep)
        ok = False
    prune = value.get("remove_empty_folders", False)
    if not isinstance(prune, bool):
        p.error([*loc, "remove_empty_folders"], "expected true or false", prune)
        ok = False
    if not isinstance(arg, str) or not arg.strip():
        p.error([*loc, kind], f"expected a {kind} name or path", arg)
        return None
    if not ok:
        return None
    common = {"text": arg, "recursive": bool(recursive), "keep_newest": keep, "remove_empty_folders": bool(prune)}
    if kind == "hotfolder":
        own = p.hotfolders_of_tenant()
        spec = p.hotfolders.get(arg)
        if arg not in own or spec is None:
            p.error([*loc, kind], f"no hot folder of tenant '{p.tenant}' has this name", arg,
                    ", ".join(sorted(own)) or "(none)")
            return None
        root = _resolve(spec.path, p)
        return Over("hotfolder", root=root, hotfolder=arg,
                    **{**common, "recursive": bool(value.get("recursive", spec.recursive))})  # type: ignore[arg-type]
    if kind == "folder":
        root = _resolve(arg, p)
        for name, hf in p.hotfolders.items():
            other = _resolve(hf.path, p)
            if hf.tenant != p.tenant and (root == other or root.is_relative_to(other) or other.is_relative_to(root)):
                p.error([*loc, kind], f"overlaps hot folder '{name}' of another tenant ('{hf.tenant}')", arg)
                return None
        for name, st in p.storages.items():
            local = getattr(st, "root", None)
            if local is None or st.tenants is None or p.tenant in st.tenants:
                continue
            other = _resolve(local, p)
            if root == other or root.is_relative_to(other) or other.is_relative_to(root):
                p.error([*loc, kind], f"overlaps storage '{name}', which is not open to tenant '{p.tenant}'", arg)
                return None
        return Over("folder", root=root, **common)  # type: ignore[arg-type]
    try:
        target = parse_target(arg if ":" in arg else arg + ":")
    except TargetError as exc:
        p.error([*loc, kind], str(exc), arg, "STORAGE:container or STORAGE:container/prefix/")
        return None
    storage = p.storages.get(target.storage)
    if storage is None:
        p.error([*loc, kind], f"no storage named '{target.storage}'", arg, ", ".join(sorted(p.storages)) or "(none)")
        return None
    if storage.tenants is not None and p.tenant not in storage.tenants:
        p.error([*loc, kind], f"storage '{target.storage}' is not open to tenant '{p.tenant}'", arg,
                ", ".join(storage.tenants))
        return None
    folder: str | None = getattr(storage, "root", None)  # a local storage: swept as a folder
    where = _resolve(folder, p) / target.key if folder is not None else None
    return Over("storage", storage=target.storage, prefix=target.key, root=where, **common)  # type: ignore[arg-type]


def _resolve(path: str, p: Parser) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and p.base is not None:
        candidate = p.base / candidate
    return candidate.resolve()
