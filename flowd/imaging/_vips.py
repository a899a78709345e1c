"""The one place flowd touches pyvips: process-wide settings, typed shims and error translation.

pyvips is untyped, so images cross this boundary as `VImage` (an alias of Any) and everything read from
them is converted to a plain Python type right here or in the caller.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import pyvips

from flowd.errors import PermanentError, TransientError

VImage: TypeAlias = Any

# Built-in ICC profiles of libvips (lcms2 build): flowd's names -> vips' names.
BUILTIN_PROFILES = {"srgb": "srgb", "cmyk": "cmyk", "gray": "sgrey", "p3": "p3"}

_lock = threading.Lock()
_configured = False
_profiles: dict[str, bytes] = {}


class UnsupportedImageError(PermanentError):
    """A real image format this libvips build has no loader for (PDF without pdfium/poppler, ...)."""


def ensure_configured() -> None:
    """Process-wide libvips settings, applied once on first use rather than at import time.

    The operation cache is switched off: a daemon sees each file once, and a cache keyed by file name would
    keep thousands of decoded headers (and open files) alive for nothing. Concurrency stays at libvips'
    default (one thread per core); libvips releases the GIL while it computes."""
    global _configured
    if _configured:
        return
    with _lock:
        if not _configured:
            pyvips.cache_set_max(0)
            pyvips.cache_set_max_mem(0)
            pyvips.cache_set_max_files(0)
            _configured = True


def release_memory() -> None:
    """Give freed heap back to the OS after a conversion. libvips' worker threads decode into per-thread
    glibc arenas; without this a daemon's RSS creeps up with fragmentation (measured: 60 -> 137 MB over 120
    24-megapixel JPEGs, with every byte libvips tracks freed); with it, a steady ~50 MB. No-op off glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # the running process: libc's symbols, when libc is glibc
    except (OSError, AttributeError):
        return None


def has_operation(name: str) -> bool:
    try:
        pyvips.Operation.new_from_name(name)
    except pyvips.Error:
        return False
    return True


def profile_bytes(name: str) -> bytes:
    """An ICC profile's bytes: a flowd/vips built-in name (srgb, cmyk, gray, p3) or a file path."""
    vips_name = BUILTIN_PROFILES.get(name, name)
    if vips_name not in _profiles:
        ensure_configured()
        if vips_name in BUILTIN_PROFILES.values():
            data = pyvips.Operation.call("profile_load", vips_name)
        else:
            data = Path(vips_name).read_bytes()
        _profiles[vips_name] = bytes(data)
    return _profiles[vips_name]


def vips_profile(name: str) -> str:
    """The argument icc_transform takes for a profile: a built-in name or a file path."""
    return BUILTIN_PROFILES.get(name, name)


def reason(exc: BaseException, *paths: Path) -> str:
    """libvips' own first line of an error, without vips' call-stack noise; `paths` are shown by name only
    (work folders mean nothing to whoever reads the trace)."""
    detail = str(getattr(exc, "detail", "") or "")
    message = str(getattr(exc, "message", "") or exc)
    for line in (*detail.splitlines(), *message.splitlines()):
        line = line.strip()
        if line and not line.startswith("unable to call"):
            for path in paths:
                line = line.replace(str(path), path.name)
            return line.rstrip(".")
    return message.strip() or type(exc).__name__


def read_error(exc: BaseException, src: Path, *paths: Path) -> PermanentError:
    return PermanentError(f"cannot read image: {reason(exc, src, *paths)}")


def pipeline_error(exc: BaseException, src: Path, dst: Path, *paths: Path) -> PermanentError | TransientError:
    """libvips computes lazily, so a decode error in the input surfaces while the output is written.
    Blame the output (a transient condition: full disk, missing work folder) only when vips names it."""
    detail = f"{getattr(exc, 'detail', '')}\n{getattr(exc, 'message', '')}"
    if str(dst) in detail or "No space left on device" in detail:
        return TransientError(f"cannot write {dst.name}: {reason(exc, dst)}")
    return read_error(exc, src, *paths)


def get_int(im: VImage, name: str, default: int) -> int:
    return int(im.get(name)) if im.get_typeof(name) else default


def get_blob(im: VImage, name: str) -> bytes | None:
    return bytes(im.get(name)) if im.get_typeof(name) else None


def set_blob(im: VImage, name: str, data: bytes | None) -> VImage:
    """A copy of `im` with a metadata blob set (or removed when `data` is None). vips images are immutable
    once shared, so metadata edits always go to a fresh copy."""
    out = im.copy()
    if data is None:
        if out.get_typeof(name):
            out.remove(name)
    else:
        out.set_type(pyvips.GValue.blob_type, name, data)
    return out


def set_str(im: VImage, name: str, value: str) -> VImage:
    out = im.copy()
    out.set_type(pyvips.GValue.gstr_type, name, value)
    return out


def set_int(im: VImage, name: str, value: int) -> VImage:
    out = im.copy()
    out.set_type(pyvips.GValue.gint_type, name, value)
    return out


Error = pyvips.Error
Image = pyvips.Image
