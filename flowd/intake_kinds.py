"""Files in a hot folder that are not assets themselves but bring assets: ZIP archives (`extract_zip`) and
Job Request Files (`jrf`). The worker hands such a job here instead of to the rules.

A ZIP's entries are extracted (every entry checked first: a hostile archive is refused whole, before
anything is written) and queued as jobs of their own, each remembering the ZIP as its parent; the ZIP job
waits until every entry's job has ended, then the ZIP follows the folder's `after`.

A JRF names a file elsewhere (a Windows or UNC path, mapped by [path_map]): that file is run through the
folder's rules inside the JRF's job (steps journalled under it), the rule's output is copied to the
requested output path under a temp name and renamed, a PRF says how it went, and the JRF is removed. A
request that cannot be honoured (malformed, unmapped, missing input, a failing rule) gets a PRF with the
error and the JRF goes to `errors`: it is never retried forever.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

from loguru import logger

from flowd import jrf as jrfmod
from flowd import unzip
from flowd.asset import Asset, read_head
from flowd.errors import StepError
from flowd.hotfolder import Folder
from flowd.queue import Claimed, Detected, Finished
from flowd.runtime import Runtime
from flowd.stored import blob_storage
from flowd.target import parse_target
from flowd.trace import RunTrace

if TYPE_CHECKING:
    from flowd.worker import Processor

EXTRACT_STEP = "zip/extract"
ZIP_RECHECK = 1.0  # seconds between checks of a ZIP's entries


def is_archive(folder: Folder, asset: Asset) -> bool:
    """A ZIP to unpack. Not one that came out of a ZIP (it carries the extraction's xattr): each archive's
    limits would start from zero again, and a ZIP of ZIPs could multiply without end (a zip quine never
    stops). A nested ZIP is an asset like any other file."""
    if not folder.spec.extract_zip or asset.format() != "zip" or not unzip.is_zip(asset.path):
        return False
    try:
        os.getxattr(asset.path, unzip.XATTR, follow_symlinks=False)
    except OSError:
        return True
    return False


def is_request(folder: Folder, asset: Asset) -> bool:
    return folder.spec.jrf and jrfmod.is_jrf(read_head(asset.path, 16))


# -- ZIP ---------------------------------------------------------------------------------------------
def run_zip(proc: Processor, rt: Runtime, folder: Folder, job: Claimed, asset: Asset, trace: RunTrace) -> Finished:
    done = proc.queue.done_steps(job.id) if job.attempts > 1 else {}
    if EXTRACT_STEP not in done:
        spec = folder.spec
        limits = unzip.ZipLimits(max_total=spec.zip_max_bytes, max_ratio=spec.zip_max_ratio,
                                 max_entries=spec.zip_max_entries)
        into = folder.root / asset.reldir
        token = f"{rt.engine.install_id}-{job.id}"
        try:
            with proc.lane.released():  # inflating is zlib's work, which releases the GIL
                entries = unzip.inspect(asset.path, limits)
                if spec.extract_zip == "subfolder":  # made by extract, which never follows a symlink there
                    entries = [dataclasses.replace(e, relpath=f"{_folder_name(asset.stem)}/{e.relpath}")
                               for e in entries]
                names = unzip.extract(asset.path, into, entries, token, limits)
        except StepError as exc:
            if exc.transient:
                return proc.wait(rt, job, trace, str(exc))
            return quarantine(rt, folder, job, trace, str(exc), zip_record={"refused": str(exc)})
        rels = [(into / n).relative_to(folder.root).as_posix() for n in names]
        children = []
        for rel in rels:
            st = os.lstat(folder.root / rel)
            children.append(Detected(job.tenant, folder.name, rel, st.st_size, st.st_mtime_ns, parent=job.id))
        proc.queue.adopt(children, job.id)
        record = {"entries": len(rels), "into": (into.relative_to(folder.root).as_posix() or "."),
                  "files": rels[:50]}
        trace.rules.append(_pseudo("extract_zip", record))
        trace.status, trace.fate = "waiting", f"{len(rels)} entries queued; the ZIP follows after ({spec.after}) once they are done"
        proc.pool_notify()
        return Finished(job, "waiting", "waiting", error=f"waiting for its {len(rels)} entries",
                        retry_at=time.time() + ZIP_RECHECK, steps=[(EXTRACT_STEP, token, record)],
                        trace=trace.to_dict(), ruleset=rt.digest)
    pending = proc.queue.children_pending(job.id)
    if pending:
        return Finished(job, "waiting", "waiting", error=f"waiting for {pending} of its entries",
                        retry_at=time.time() + ZIP_RECHECK, trace=None, ruleset=rt.digest)
    fate = folder.fate(True, False, False)
    trace.status, trace.fate = "finished", fate
    trace.rules.append(_pseudo("extract_zip", {**done[EXTRACT_STEP], "outcome": "every entry done"}))
    return Finished(job, "done", "finished", fate=fate, trace=trace.to_dict(), ruleset=rt.digest)


# -- JRF ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Result:
    """What the PRF will say, written once the job's outputs are durable (in the worker's finalise)."""

    jrf: Path
    request: jrfmod.JobRequest | None
    output: str
    code: int
    description: str
    remove_input: Path | None = None

    def write(self) -> None:
        jrfmod.write_prf(self.jrf, self.request, self.output, self.code, self.description)
        if self.remove_input is not None and self.code == jrfmod.SUCCESS:
            self.remove_input.unlink(missing_ok=True)


def run_request(proc: Processor, rt: Runtime, folder: Folder, job: Claimed, asset: Asset,
                trace: RunTrace) -> Finished:
    path_map = jrfmod.PathMap({k: str(rt.config.path(v)) for k, v in rt.config.settings.path_map.items()})
    request = None
    try:
        request = jrfmod.parse_jrf(_read_small(asset.path))
        local = path_map.map(request.input_file)
        if local is None:
            raise jrfmod.JrfError(jrfmod.INPUT_NOT_MAPPED, path_map.unmapped_reason(request.input_file))
        out_local = None
        if request.output_file:
            out_local = path_map.map(request.output_file)
            if out_local is None:
                raise jrfmod.JrfError(jrfmod.INPUT_NOT_MAPPED, "output: " + path_map.unmapped_reason(request.output_file))
        try:
            st = os.stat(local)
        except OSError:
            st = None
        if st is None or not os.path.isfile(local):
            raise jrfmod.JrfError(jrfmod.INPUT_NOT_FOUND, f"{request.input_file} (here {local}) does not exist "
                                                          "or is not a file")
    except jrfmod.JrfError as exc:
        return _refused(rt, folder, job, asset, trace, request, exc.code, exc.description)
    facts = {**request.keys, "output_name": _basename(request.output_file) if request.output_file else ""}
    target = Asset(job.id, job.tenant, folder.name, local.parent, local.name, st.st_size, st.st_mtime_ns,
                   asset.detected_at, folder.spec.output, local.name, request=facts)
    done = proc.queue.done_steps(job.id) if job.attempts > 1 else {}
    ctx = proc.context(rt, asset.detected_at, job.tenant)
    outcome = rt.engine.run(target, ctx, trace, done)
    trace_jrf = {"input": request.input_file, "local": str(local), "output": request.output_file or ""}
    if outcome.transient:
        return proc.wait(rt, job, trace, (outcome.error or {}).get("reason"), outcome.steps)
    if outcome.status != "finished":
        why = (outcome.error or {}).get("reason") or (
            f"no rule of hot folder '{folder.name}' matched {local.name}" if outcome.status == "unmatched"
            else f"the input {outcome.status}")
        return _refused(rt, folder, job, asset, trace, request, jrfmod.PROCESSING_FAILED, why, outcome.steps)
    stored = _last_output(trace)
    if stored is None:
        return _refused(rt, folder, job, asset, trace, request, jrfmod.OUTPUT_NOT_WRITTEN,
                        "the rules stored no output (a job request needs a rule that stores one)", outcome.steps)
    try:
        with proc.lane.released():
            shown = _deliver(rt, stored, out_local) if out_local is not None else _where(rt, stored)
            if out_local is not None and folder.spec.jrf_output == "requested":
                _drop(rt, stored)
    except (OSError, StepError) as exc:
        if isinstance(exc, StepError) and exc.transient or isinstance(exc, OSError) and _transient(exc):
            return proc.wait(rt, job, trace, f"cannot write the requested output: {exc}", outcome.steps)
        return _refused(rt, folder, job, asset, trace, request, jrfmod.OUTPUT_NOT_WRITTEN, str(exc), outcome.steps)
    if out_local is not None:
        shown = request.output_file or shown
    trace.rules.append(_pseudo("jrf", {**trace_jrf, "stored": stored, "delivered": shown, "code": 0}))
    trace.fate = "delete (a job request is always removed)"
    result = Result(asset.source, request, shown, jrfmod.SUCCESS, jrfmod.ERRORS[jrfmod.SUCCESS],
                    local if request.remove_input else None)
    return Finished(job, "done", "finished", fate="delete", steps=outcome.steps, ledger=outcome.ledger,
                    trace=trace.to_dict(), ruleset=rt.digest, epilogue=result.write if folder.spec.prf
                    else (lambda: result.remove_input.unlink(missing_ok=True) if result.remove_input else None))


def _refused(rt: Runtime, folder: Folder, job: Claimed, asset: Asset, trace: RunTrace,
             request: jrfmod.JobRequest | None, code: int, description: str,
             steps: list[tuple[str, str, dict[str, Any]]] | None = None) -> Finished:
    result = Result(asset.source, request, request.output_file or "" if request else "", code, description)
    finished = quarantine(rt, folder, job, trace, f"job request refused (PRF code {code}): {description}",
                           steps=steps)
    if folder.spec.prf:
        finished.epilogue = result.write
    return finished


def quarantine(rt: Runtime, folder: Folder, job: Claimed, trace: RunTrace, reason: str,
                zip_record: dict[str, Any] | None = None,
                steps: list[tuple[str, str, dict[str, Any]]] | None = None) -> Finished:
    fate = folder.fate(False, False, True)
    error = {"reason": reason}
    if zip_record:
        trace.rules.append(_pseudo("extract_zip", zip_record))
    trace.status, trace.fate, trace.error = "quarantined", fate, error
    return Finished(job, "quarantined", "quarantined", fate=fate, error=json.dumps({**error, "job": job.id}),
                    steps=steps or [], trace=trace.to_dict(), ruleset=rt.digest)


def _pseudo(kind: str, record: dict[str, Any]) -> Any:
    """A trace entry for what the folder itself did (not a rule): shown like a rule named `(kind)`."""
    from flowd.trace import RuleTrace

    entry = RuleTrace(f"({kind})", "config", True)
    entry.actions.append({"step": 0, "action": kind, **record})
    return entry


def _last_output(trace: RunTrace) -> str | None:
    """The target of the last store (or move) the rules did: the output a job request gets."""
    found = None
    for rule in trace.rules:
        for action in rule.actions:
            if action.get("action") in ("store", "move", "convert") and action.get("target"):
                found = str(action["target"])
    return found


def _where(rt: Runtime, stored: str) -> str:
    """How the PRF names an output in a storage: its file path when the storage is local."""
    target = parse_target(stored)
    root = getattr(rt.storages.get(target.storage), "root", None)
    return str(Path(root) / target.key) if root is not None else stored


def _deliver(rt: Runtime, stored: str, dest: Path) -> str:
    """Copy the stored output to the requested path: a temp name beside it, then renamed over whatever is
    there (the JRF specification says an existing file is replaced), durably."""
    target = parse_target(stored)
    storage = rt.storages[target.storage]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.flowd-jrf.tmp"
    root = getattr(storage, "root", None)
    if not storage.exists(target.key) and dest.is_file():
        return str(dest)  # a retry after the delivery and _drop() (jrf_output = "requested"): it is there
    try:
        if root is not None:
            shutil.copyfile(Path(root) / target.key, tmp)
        else:
            blobs = blob_storage(storage)
            if blobs is None:
                raise OSError(f"storage '{target.storage}' cannot be read back")
            blobs.download(target.key, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(dest)


def _drop(rt: Runtime, stored: str) -> None:
    """jrf_output = "requested": a request that names its output gets it there only, as in Color Factory; the
    rule's copy goes once the delivered file is durable. A copy that cannot be removed stays (logged)."""
    target = parse_target(stored)
    try:
        rt.storages[target.storage].delete(target.key)
    except (OSError, StepError) as exc:
        logger.warning("job request delivered; its copy {} stays: {}", stored, exc)


def _folder_name(stem: str) -> str:
    """The subfolder a ZIP's entries go into: its name without the extension (never empty or hidden)."""
    name = stem.strip().lstrip(".") or "archive"
    return name[:200]


def _read_small(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(jrfmod.MAX_BYTES + 1)


def _basename(path: str) -> str:
    return PureWindowsPath(path).name if "\\" in path or ":" in path else Path(path).name


def _transient(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT)
