"""Who uploaded a file travels with the file: a signed extended attribute, written by the FTP server
before the file takes its final name, read by the worker that processes it.

Whichever detector queues the job (the FTP server itself, the hot folder's watcher, a rescan after a
crash), the facts are there, with no database round trip on the upload's path. The signature (HMAC with
a key kept in the database) binds them to this file's inode, size and modification time, so a local user
who can write to the hot folder cannot claim to be an FTP user, and a copy of the file carries nothing.
On a file system without user xattrs the FTP server records the facts in the database instead
(the `uploads` table, keyed like the job).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from flowd.asset import Upload

XATTR = "user.flowd.upload"
FACTS_KEY = "ftp_facts_key"  # the signing key's name in the database's meta table


def tag(path: Path, st: os.stat_result, upload: Upload, key: bytes) -> bool:
    """Attach the facts to the file. False when the file system has no user xattrs."""
    body = json.dumps(upload.to_dict(), separators=(",", ":"), sort_keys=True)
    value = f"{_mac(key, st, body)}:{body}".encode()
    try:
        os.setxattr(path, XATTR, value, follow_symlinks=False)
    except OSError:
        return False
    return True


def read(path: Path, key: bytes) -> Upload | None:
    """The facts attached to this very file, or None (none, unsigned, or signed for another file)."""
    try:
        raw = os.getxattr(path, XATTR, follow_symlinks=False)
        st = os.lstat(path)
    except OSError:
        return None
    mac, _, body = raw.decode("utf-8", "replace").partition(":")
    if not hmac.compare_digest(mac, _mac(key, st, body)):
        return None
    try:
        d = json.loads(body)
        return Upload(str(d["protocol"]), str(d["user"]), str(d["group"]), str(d["client"]), float(d["at"]))
    except (ValueError, KeyError, TypeError):
        return None


def _mac(key: bytes, st: os.stat_result, body: str) -> str:
    message = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{body}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
