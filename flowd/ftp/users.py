"""FTP accounts in the database: one group each, permissions upload/read/delete, a scrypt hash."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from flowd.db import Database, ftp_users
from flowd.errors import FlowdError
from flowd.ftp.passwords import hash_password

PERMS = ("upload", "read", "delete")
USER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}"
MIN_PASSWORD = 8
RESERVED = {"anonymous", "ftp"}  # anonymous login is never possible, whatever is added


@dataclass(frozen=True, slots=True)
class FtpUser:
    name: str
    group: str
    perms: frozenset[str]
    hash: str

    def can(self, perm: str) -> bool:
        return perm in self.perms


def check_name(name: str) -> None:
    if not re.fullmatch(USER_PATTERN, name):
        raise FlowdError(f"bad user name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', "
                         "starting with a letter or digit")
    if name.lower() in RESERVED:
        raise FlowdError(f"the user name {name!r} is reserved: anonymous FTP is never enabled")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise FlowdError(f"a password needs at least {MIN_PASSWORD} characters")
    if any(c in password for c in "\r\n\0"):
        raise FlowdError("a password cannot contain line breaks or NUL (FTP sends it on one line)")


def get(db: Database, name: str) -> FtpUser | None:
    with db.read() as conn:
        row = conn.execute(select(ftp_users).where(ftp_users.c.name == name)).first()
    return _user(row) if row else None


def all_users(db: Database) -> list[FtpUser]:
    with db.read() as conn:
        return [_user(r) for r in conn.execute(select(ftp_users).order_by(ftp_users.c.name))]


def add(db: Database, name: str, group: str, perms: set[str], password: str) -> FtpUser:
    check_name(name)
    check_password(password)
    digest = hash_password(password)
    t = time.time()
    with db.write() as conn:
        if conn.execute(select(ftp_users.c.name).where(ftp_users.c.name == name)).first():
            raise FlowdError(f"FTP user {name!r} already exists (use `flowd ftp-user passwd` to change the password)")
        conn.execute(insert(ftp_users).values(name=name, grp=group, perms=",".join(p for p in PERMS if p in perms),
                                              hash=digest, created=t, updated=t))
    return FtpUser(name, group, frozenset(perms), digest)


def set_password(db: Database, name: str, password: str) -> None:
    check_password(password)
    digest = hash_password(password)
    with db.write() as conn:
        changed = conn.execute(update(ftp_users).where(ftp_users.c.name == name)
                               .values(hash=digest, updated=time.time())).rowcount
    if not changed:
        raise FlowdError(f"no FTP user {name!r}")


def remove(db: Database, name: str) -> None:
    with db.write() as conn:
        if not conn.execute(delete(ftp_users).where(ftp_users.c.name == name)).rowcount:
            raise FlowdError(f"no FTP user {name!r}")


def _user(row: object) -> FtpUser:
    perms = frozenset(p for p in str(row.perms).split(",") if p)  # type: ignore[attr-defined]
    return FtpUser(row.name, row.grp, perms, row.hash)  # type: ignore[attr-defined]
