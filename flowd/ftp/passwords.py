"""Salted scrypt password hashes (hashlib, OpenSSL): a leaked database does not give the passwords away.

Stored as `scrypt$N$r$p$salt$hash` (base64), so the cost can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# About 60 ms and 16 MiB per check on this project's 2-core reference machine (OWASP's scrypt minimum is
# N=2^17 with r=8 at 128 MiB; this is the interactive-login setting of the scrypt paper).
N, R, P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(password.encode("utf-8", "surrogateescape"), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


_dummy: list[str] = []


def verify_unknown(password: str) -> bool:
    """Spend what checking a real user's password costs, so the time a refusal takes does not tell which
    user names exist. Always False."""
    if not _dummy:
        _dummy.append(hash_password(os.urandom(12).hex()))
    verify_password(password, _dummy[0])
    return False


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
