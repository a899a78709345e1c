"""A hot folder at run time: its paths resolved, and what happens to a source once its job is decided."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowd.config import DEFAULT_IGNORE, Config, HotFolder, ftp_staging
from flowd.errors import PermanentError, TransientError
from flowd.glob import compile_glob
from flowd.samefile import same_file
from flowd.storage.base import incremented

if TYPE_CHECKING:
    from flowd.over import Over


@dataclass(frozen=True, slots=True)
class Folder:
    spec: HotFolder
    root: Path
    errors: Path | None  # None: a failed file stays where it is (a sweep's), its job says why
    unmatched: Path | None
    after_move: Path | None
    ignore: tuple[Any, ...]
    ftp: bool = False  # FTP users upload into it: a job may carry the upload's facts

    @property
    def name(self) -> str:
        return self.spec.name

    def ignored(self, name: str) -> bool:
        return any(p.match(name) for p in self.ignore)

    def fate(self, matched: bool, consumes: bool, quarantined: bool) -> str:
        """What happens to the source: decided after every step is journalled, applied last."""
        if quarantined:
            return "quarantine"
        if not matched:
            return "unmatched" if self.unmatched else "keep"
        if consumes:
            return "delete"
        return self.spec.after


# An FTP upload in progress (or a partial one kept for resume) is written under this prefix beside its
# final name: never a job, whatever a folder's own ignore patterns say.
UPLOAD_PREFIX = ".flowd-upload."


def ftp_source(group: str) -> str:
    """The job source of a staging FTP group's uploads. Hot folder names cannot hold ':'."""
    return f"ftp:{group}"


def sweep_source(tenant: str, rule: str) -> str:
    """The job source of a sweep rule's jobs. Hot folder names cannot start with '~'."""
    return f"~{tenant}/{rule}"


def sweep_folder(source: str, tenant: str, over: Over, output: str | None = None) -> Folder:
    """The local folder a sweep rule lists, as the worker and the scanner see it: its files are kept unless
    the rule consumes them, and one that fails is left where it is (its job says why)."""
    assert over.root is not None
    hf = HotFolder.model_construct(
        name=source, tenant=tenant, path=str(over.root), output=output, stable_seconds=0.0, ignore=[],
        after="keep", unmatched="leave", errors="", incomplete_seconds=0.0, recursive=over.recursive,
        poll_seconds=0.0, enabled=True, run="always", extract_zip=False, jrf=False, prf=False,
        remove_empty_folders=over.remove_empty_folders)
    return Folder(spec=hf, root=over.root, errors=None, unmatched=None, after_move=None,
                  ignore=(compile_glob(UPLOAD_PREFIX + "*", ignore_case=False),
                          compile_glob(".flowd-*", ignore_case=False)))


def build_folders(config: Config) -> dict[str, Folder]:
    """The hot folders, plus one folder per staging FTP group (named "ftp:GROUP"). A folder FTP users
    upload into also ignores the FTP temp names: such a file is processed once it is renamed."""
    ftp = config.settings.ftp
    served = {g.hotfolder for g in ftp.groups if g.hotfolder} if ftp else set()
    specs = list(config.settings.hotfolders)
    if ftp is not None:
        for group in ftp.groups:
            staging = ftp_staging(config, group)
            if staging is None:
                continue
            # Built without validation: the name holds ':' on purpose (no hot folder can be called that).
            specs.append(HotFolder.model_construct(
                name=ftp_source(group.name), tenant=group.tenant, path=str(staging), output=group.output,
                stable_seconds=0.0, ignore=list(DEFAULT_IGNORE), after="delete", unmatched="leave",
                errors=group.errors, incomplete_seconds=0.0, recursive=True, poll_seconds=0.0, enabled=True))
            served.add(ftp_source(group.name))
    out = {}
    for hf in specs:
        temp = ftp.temp_names if ftp and hf.name in served else []
        # FTP temp names match case-insensitively (Windows clients write X.PART), as the FTP server sees them.
        # The daemon's own temp names (uploads, ZIP entries being extracted) are never jobs, whatever the folder's
        # ignore list says; neither are the PRF results a job request folder writes.
        own = [UPLOAD_PREFIX + "*", ".flowd-*"] + (["*.prf"] if getattr(hf, "jrf", False) else [])
        patterns = [compile_glob(p, ignore_case=False) for p in dict.fromkeys([*hf.ignore, *own])]
        patterns += [compile_glob(p, ignore_case=True) for p in temp]
        out[hf.name] = Folder(
            spec=hf, root=config.path(hf.path).resolve(), errors=config.path(hf.errors),
            unmatched=None if hf.unmatched == "leave" else config.path(hf.unmatched),
            after_move=config.path(hf.after[5:]) if hf.after.startswith("move:") else None,
            ignore=tuple(patterns),
            ftp=hf.name in served,
        )
    return out




def apply_fate(folder: Folder, relpath: str, size: int, mtime_ns: int, fate: str,
               error: dict[str, Any] | None = None, real_dirs: dict[str, bool] | None = None) -> str:
    """Remove, move or keep the source. Idempotent: a source already gone means it was done before.
    A source replaced by new bytes is left alone for the job that will handle those bytes."""
    src = folder.root / relpath
    if fate == "keep":
        return "kept"
    if not same_file(src, size, mtime_ns, real_dirs):
        return "already gone" if not src.exists() else "left (changed since detection)"
    try:
        if fate == "delete":
            os.unlink(src)
            return "deleted"
        if fate == "unmatched" and folder.unmatched is not None:
            return "moved to " + str(_move(src, folder.unmatched, relpath))
        if fate.startswith("move:") and folder.after_move is not None:
            return "moved to " + str(_move(src, folder.after_move, relpath))
        if fate == "quarantine":
            if folder.errors is None:
                return "left in place (quarantined)"
            dest = _move(src, folder.errors, relpath)
            _write_error(dest, relpath, error or {})
            return "quarantined to " + str(dest)
    except FileNotFoundError:
        return "already gone"
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL):
            raise PermanentError(f"cannot apply '{fate}' to {relpath!r}: {exc.strerror}") from None
        raise TransientError(f"cannot apply '{fate}' to {relpath!r}: {exc.strerror}") from None
    raise PermanentError(f"unknown fate {fate!r}")


def _move(src: Path, folder: Path, relpath: str) -> Path:
    """Move into `folder`, mirroring the relative path; never overwrite (append _1, _2 ...)."""
    for n in range(100_000):
        dest = folder / (relpath if n == 0 else incremented(relpath, n))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):
            continue
        try:
            os.link(src, dest)  # same file system: atomic, and never replaces
            os.unlink(src)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copy2(src, dest, follow_symlinks=False)
            with open(dest, "rb") as fh:
                os.fsync(fh.fileno())
            os.unlink(src)
        return dest
    raise PermanentError(f"no free name for {relpath!r} in {folder}")


def _write_error(dest: Path, relpath: str, error: dict[str, Any]) -> None:
    # The error's own "file" is the rule's file:line; it must not replace the quarantined file's name.
    extra = {("rule_file" if k == "file" else k): v for k, v in error.items()}
    body = {"file": relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"),
            "quarantined": str(dest), "time": datetime.now().astimezone().isoformat(), **extra}
    name = dest.name + ".error.json"
    if len(name.encode("utf-8", "surrogateescape")) > 255 - len("..tmp"):  # the temp name must fit too
        name = dest.name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore") + "~.error.json"
    tmp = dest.parent / f".{name}.tmp"
    tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8",
                   errors="backslashreplace")
    os.replace(tmp, dest.parent / name)
