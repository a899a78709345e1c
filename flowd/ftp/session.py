"""One FTP control connection: login, bans, permissions, and replies that wait for intake.

Everything here runs on the server's I/O loop and must return quickly. The slow part goes elsewhere: the
scrypt check of a password runs in a small thread pool, and its result comes back through the Mailbox.
A finished upload is taken by Intake.arrive (local system calls only) before its reply is sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from flowd.config import FtpSettings
from flowd.db import Database
from flowd.ftp import users
from flowd.ftp._lib import (
    AsyncChat,
    DTPHandler,
    DummyAuthorizer,
    FTPHandler,
    TLS_DTPHandler,
    TLS_FTPHandler,
)
from flowd.ftp.fs import FlowdFS, hidden, is_hidden, visible
from flowd.ftp.intake import Arrival, Group, Intake, TempNames
from flowd.ftp.passwords import verify_password, verify_unknown
from flowd.ftp.users import FtpUser


class Mailbox(AsyncChat):  # type: ignore[misc]
    """Runs callables on the I/O loop thread, posted from any thread: pyftpdlib's loop is not thread-safe,
    so other threads hand it work through a socketpair it polls like any connection."""

    def __init__(self, ioloop: Any) -> None:
        reader, self._writer = socket.socketpair()
        reader.setblocking(False)
        self._writer.setblocking(False)
        self._calls: deque[Callable[[], None]] = deque()
        super().__init__(reader, ioloop=ioloop)

    def post(self, call: Callable[[], None]) -> None:
        self._calls.append(call)
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the reader has wake-ups pending already (or the loop is gone)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        try:
            self.socket.recv(4096)
        except BlockingIOError:
            pass
        while self._calls:
            call = self._calls.popleft()
            try:
                call()
            except Exception as exc:  # one session's failure must not stop the others
                logger.opt(exception=exc).error("FTP: {}", exc)

    handle_read_event = handle_read


class Bans:
    """Failed logins per client address; after `after` of them within `seconds`, the address is refused
    for `seconds` (whatever user name it tries next). A good login does not wipe earlier failures, or one
    valid account would let an address guess other accounts' passwords forever: they expire instead."""

    def __init__(self, after: int, seconds: float) -> None:
        self.after = after
        self.seconds = seconds
        self._failures: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}

    def banned(self, ip: str) -> float:
        until = self._until.get(ip)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._until[ip]
            return 0.0
        return left

    def failed(self, ip: str) -> bool:
        now = time.monotonic()
        recent = self._failures.setdefault(ip, deque())
        recent.append(now)
        while recent and recent[0] < now - self.seconds:
            recent.popleft()
        if len(recent) >= self.after:
            self._until[ip] = now + self.seconds
            del self._failures[ip]
            return True
        if len(self._failures) > 100_000:  # a scan from many addresses must not grow this without end
            self._failures.clear()
        return False



class Authorizer(DummyAuthorizer):  # type: ignore[misc]
    """Permissions of the users logged in now. Passwords are checked by Session.ftp_PASS, off the loop."""

    def __init__(self, groups: dict[str, Group]) -> None:
        super().__init__()
        self.groups = groups
        self.active: dict[str, FtpUser] = {}

    def has_user(self, username: str) -> bool:
        return username in self.active

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        user = self.active.get(username)
        if user is None:
            return False
        if perm == "e":
            return True
        if perm == "l":  # listing, SIZE, MDTM: readers; an uploader only for the name of their partial upload
            return user.can("read") or (path is not None and os.path.lexists(hidden(path)))
        if perm == "r":
            return user.can("read")
        if perm in "wam":
            return user.can("upload")
        if perm == "d":
            return user.can("delete")
        if perm == "f":  # rename: Session.ftp_RNFR narrows it for uploaders
            return user.can("upload") or user.can("delete")
        return False  # chmod (M), set times (T)

    def get_perms(self, username: str) -> str:
        return "".join(p for p in "elrwamdf" if self.has_perm(username, p))

    def get_home_dir(self, username: str) -> str:
        return str(self.groups[self.active[username].group].root)

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass

    def get_msg_login(self, username: str) -> str:
        return f"Welcome {username}."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."


@dataclass
class ServerContext:
    settings: FtpSettings
    db: Database
    groups: dict[str, Group]
    intake: Intake
    mailbox: Mailbox
    bans: Bans
    authorizer: Authorizer
    verifier: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, "ftp-login"))
    # Reserved names being written by some session now: a second STOR to the same name is refused
    # instead of writing into the same file.
    writing: set[str] = field(default_factory=set)


class Session:
    """Mixed into pyftpdlib's FTPHandler (or TLS_FTPHandler) by make_handler."""

    ctx: ServerContext
    is_temp: TempNames
    user: FtpUser | None = None
    hold_completion = False
    # from FTPHandler
    remote_ip: str
    username: str
    authenticated: bool
    fs: FlowdFS
    _closed: bool
    _rnfr: str | None

    # -- connection ----------------------------------------------------------------------------------
    def handle(self) -> None:
        left = self.ctx.bans.banned(self.remote_ip)
        if left:
            self.respond(f"421 Too many failed logins from {self.remote_ip}; try again in {left:.0f} s.")
            self.close_when_done()
            return
        super().handle()  # type: ignore[misc]

    def respond(self, resp: str, logfun: Any = None) -> None:
        if self.hold_completion and resp.startswith("226"):
            self.hold_completion = False  # Intake.arrive's reply replaces it (226 once in place, or 426/451)
            return
        if logfun is None:
            super().respond(resp)  # type: ignore[misc]
        else:
            super().respond(resp, logfun)  # type: ignore[misc]

    @property
    def protocol(self) -> str:
        return "ftps" if getattr(self, "_ssl_established", False) else "ftp"

    # -- login ---------------------------------------------------------------------------------------
    def ftp_PASS(self, line: str) -> None:
        if self.authenticated:
            self.respond("503 User already authenticated.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        if self.ctx.bans.banned(self.remote_ip):  # a connection opened before the ban gets no more guesses
            self.respond("421 Too many failed logins; this address is refused for a while.")
            self.close_when_done()
            return
        name, password = self.username, line
        self.del_channel()  # no further commands until the password is checked
        ctx = self.ctx

        def check() -> FtpUser | None:
            user = users.get(ctx.db, name)
            if user is None or user.group not in ctx.groups:
                verify_unknown(password)  # as long as a real check: the timing tells no user names
                return None
            return user if verify_password(password, user.hash) else None

        future = ctx.verifier.submit(check)
        future.add_done_callback(lambda f: ctx.mailbox.post(lambda: self._checked(name, password, f)))

    def _checked(self, name: str, password: str, future: Future[FtpUser | None]) -> None:
        if self._closed:
            return
        self.add_channel()
        try:
            user = future.result()
        except Exception as exc:  # the database is unreachable: a refusal the client may retry
            logger.warning("FTP login of {!r} from {} not checked: {}", name, self.remote_ip, exc)
            self.respond("421 Service not available now; try again later.")
            self.close_when_done()
            return
        if user is None:
            self.username = name
            self.handle_auth_failed("Authentication failed.", password)
            return
        self.user = user
        self.ctx.authorizer.active[name] = user
        self.username = name
        self.handle_auth_success(str(self.ctx.groups[user.group].root), password, f"Welcome {name}.")
        logger.info("FTP login {} (group {}, {}) from {} over {}", name, user.group, ",".join(sorted(user.perms)),
                    self.remote_ip, self.protocol.upper())

    def on_login_failed(self, username: str, password: str) -> None:
        logger.warning("FTP login failed for {!r} from {}", username, self.remote_ip)
        if self.ctx.bans.failed(self.remote_ip):
            logger.warning("FTP: {} banned for {:.0f} s after {} failed logins", self.remote_ip,
                           self.ctx.bans.seconds, self.ctx.bans.after)
            if not self._closed:
                self.respond("421 Too many failed logins; this address is refused for a while.")
                self.close_when_done()

    # -- commands ------------------------------------------------------------------------------------
    def ftp_SIZE(self, path: str) -> None:
        if not os.path.lexists(path):
            partial = self.fs.partial_size(path)
            if partial is not None:  # the resume offset of a partial upload
                self.respond(f"213 {partial}")
                return
        if self.user is None or not self.user.can("read"):
            self.respond("550 Not enough privileges.")
            return
        super().ftp_SIZE(path)  # type: ignore[misc]

    def ftp_RNFR(self, path: str) -> None:
        if self.user is None or (not self.user.can("delete") and not self.is_temp(path)):
            self.respond("550 Not enough privileges: without the delete permission only an upload's temporary "
                         "name (*.part ...) can be renamed.")
            return
        super().ftp_RNFR(path)  # type: ignore[misc]

    def ftp_RNTO(self, path: str) -> None:
        src = self._rnfr
        assert self.user is not None
        if src and self.is_temp(src) and not self.is_temp(path) and not os.path.isdir(src) \
                and not os.path.isdir(path):
            self._rnfr = None
            if hidden(path) in self.ctx.writing:
                self.respond("450 An upload to that name is in progress; try again later.")
                return
            self._arrived(src, path, "RNTO")
            return
        if not self.user.can("delete") and os.path.lexists(path):
            self._rnfr = None
            self.respond("550 Not enough privileges to replace an existing file.")
            return
        if super().ftp_RNTO(path) and os.path.isfile(path):  # type: ignore[misc]
            # An upload renamed while its facts are fresh: the watcher leaves such files to this server.
            self.ctx.intake.renamed(self.ctx.groups[self.user.group], Path(path))

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:
        if hidden(file) in self.ctx.writing:  # 450: clients retry a transient refusal later
            self.respond("450 An upload to that name is in progress; try again later.")
            return None
        return super().ftp_STOR(file, mode)  # type: ignore[misc]

    def ftp_STOU(self, line: str) -> None:
        self.respond("502 STOU is not supported; upload with STOR.")

    def ftp_SITE_CHMOD(self, path: str, mode: str) -> None:
        self.respond("550 Not enough privileges.")

    # -- transfers ---------------------------------------------------------------------------------
    def claim(self, path: str) -> bool:
        """Reserve a name for this session's upload (FlowdFS.open); False if another upload holds it."""
        if path in self.ctx.writing:
            return False
        self.ctx.writing.add(path)
        self._mine().add(path)
        return True

    def release(self, path: str) -> None:
        self.ctx.writing.discard(path)
        self._mine().discard(path)

    def _mine(self) -> set[str]:
        mine: set[str] | None = self.__dict__.get("_claimed")
        if mine is None:
            mine = self.__dict__["_claimed"] = set()
        return mine

    def close(self) -> None:
        for path in list(self._mine()):  # a STOR whose data connection never came
            self.release(path)
        super().close()  # type: ignore[misc]

    def on_file_received(self, file: str) -> None:
        self.hold_completion = False
        if not is_hidden(file):
            return
        try:
            self._arrived(file, visible(file), "STOR")
        finally:
            self.release(file)

    def on_incomplete_file_received(self, file: str) -> None:
        self.hold_completion = False
        self.release(file)
        if is_hidden(file) and self.user is not None:
            self.ctx.intake.partial(Path(file), self.ctx.groups[self.user.group], self.username, self.remote_ip,
                                    "transfer aborted or timed out")

    def _arrived(self, file: str, final: str, verb: str) -> None:
        assert self.user is not None
        item = Arrival(Path(file), Path(final), self.ctx.groups[self.user.group], self.username, self.remote_ip,
                       self.protocol, verb)
        try:
            reply = self.ctx.intake.arrive(item)
        except OSError as exc:
            logger.warning("FTP upload {} by {}: {}", final, self.username, exc)
            reply = f"451 The upload could not be queued ({exc.strerror}); send it again."
        if not self._closed:
            self.respond(reply)

    if TYPE_CHECKING:  # pyftpdlib's, reached through the MRO; declared for the type checker only
        def close_when_done(self) -> None: ...
        def del_channel(self) -> None: ...
        def add_channel(self) -> None: ...
        def handle_auth_failed(self, msg: str, password: str) -> None: ...
        def handle_auth_success(self, home: str, password: str, msg_login: str) -> None: ...


def make_handler(ctx: ServerContext, temp_names: TempNames) -> type:
    """A handler class for this server (never attributes set on pyftpdlib's own classes)."""
    settings = ctx.settings
    tls = settings.tls_cert is not None
    if tls and TLS_FTPHandler is None:
        raise RuntimeError("FTPS needs pyOpenSSL: pip install 'pyftpdlib[ssl]'")
    base: type = TLS_FTPHandler if tls else FTPHandler
    dtp_base: type = TLS_DTPHandler if tls else DTPHandler

    class Transfer(dtp_base):  # type: ignore[misc]
        timeout = settings.data_timeout
        # Reads of up to 256 KiB instead of pyftpdlib's 64 KiB: a quarter of the recv() and write() calls,
        # and of the Python around each, per uploaded megabyte.
        ac_in_buffer_size = 256 * 1024

        def close(self) -> None:
            if not self._closed and self.receive and self.transfer_finished and self.file_obj is not None:
                self.cmd_channel.hold_completion = True
            super().close()

    proto: dict[str, dict[str, Any]] = base.proto_cmds  # type: ignore[attr-defined]
    commands = {k: dict(v) for k, v in proto.items() if k not in ("SITE CHMOD", "MFMT")}
    attrs: dict[str, Any] = {
        "ctx": ctx, "is_temp": temp_names, "authorizer": ctx.authorizer, "abstracted_fs": FlowdFS,
        "dtp_handler": Transfer, "timeout": settings.idle_timeout, "banner": settings.banner,
        "passive_ports": settings.ports(), "masquerade_address": settings.masquerade_address,
        "auth_failed_timeout": settings.login_failure_delay, "max_login_attempts": 3, "proto_cmds": commands,
        "permit_foreign_addresses": False, "permit_privileged_ports": False,
    }
    # Session methods are bound to the concrete pyftpdlib methods through the MRO: Session first.
    if tls:
        from OpenSSL import SSL

        attrs.update(certfile=str(settings.tls_cert), keyfile=str(settings.tls_key or settings.tls_cert),
                     tls_control_required=settings.tls_required, tls_data_required=settings.tls_required,
                     ssl_context=None, ssl_options=SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1
                     | SSL.OP_NO_TLSv1_1)
    return type("FlowdFTPHandler", (Session, base), attrs)
