"""The FTP server against hostile clients: passwords, bans, TLS, path escapes, confinement, permissions.

Every test runs a real `flowd run` with its FTP child process on a loopback port and drives it with ftplib.
Only uploads (`ftp: true`) are processed, so files planted by hand (symlinks, a FIFO, another group's
files) stay where the test put them.
"""

from __future__ import annotations

import ftplib
import io
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import JPEG, make_site, tree, wait_for
from ftpsupport import FtpSite

PASSWORD = "correct-horse-1"
WRONG = "Wr0ng-zebra-Pa55"  # distinctive: it must never appear in the log

RULES = """
rules:
  - name: uploads
    if: [{ftp: true}]
    do:
      - store: {to: "{output}/{relpath}"}
"""

TWO_GROUPS = """
[[ftp.groups]]
name = "photographers"
tenant = "default"
hotfolder = "inbox"

[[ftp.groups]]
name = "agency"
tenant = "default"
output = "lake:agency"
"""

TWO_GROUP_RULES = """
rules:
  - name: photographers
    on: [{hotfolder: inbox}]
    if: [{ftp: true}]
    do:
      - store: {to: "{output}/{relpath}"}
  - name: agency
    on: [{ftp: agency}]
    if: [{ftp: true}]  # files planted by the test in the staging folder stay
    do:
      - store: {to: "lake:agency/{relpath}"}  # not {output}: tests/test_ftp.py covers that
"""

REFUSED = (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply)


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[FtpSite]:
    yield from make_site(FtpSite, tmp_path)


def jpeg(tag: str) -> bytes:
    """A structurally complete JPEG whose bytes say which upload it is."""
    return JPEG[:-2] + tag.encode() + b"\xff\xd9"


def refused(call: Callable[[], Any]) -> str:
    """The refusal a command gets; fails if the server accepted it."""
    try:
        reply = call()
    except REFUSED as exc:
        return str(exc)
    raise AssertionError(f"accepted: {reply!r}")


def outcome(call: Callable[[], Any]) -> str:
    """The reply a command gets, refusal or not (for attempts that may be refused or confined)."""
    try:
        return str(call())
    except REFUSED as exc:
        return str(exc)


def stor(client: ftplib.FTP, name: str, data: bytes = JPEG) -> str:
    return client.storbinary(f"STOR {name}", io.BytesIO(data))


def retr(client: ftplib.FTP, name: str) -> bytes:
    buf = io.BytesIO()
    client.retrbinary(f"RETR {name}", buf.write)
    return buf.getvalue()


def open_client(ftp: FtpSite, tls: bool = False) -> ftplib.FTP:
    """FtpSite.connect, closing the socket when the greeting is a refusal (421 for a banned address)."""
    if tls:
        context = ssl.create_default_context(cafile=str(ftp.root / "tls" / "cert.pem"))
        client: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=20)
    else:
        client = ftplib.FTP(timeout=20)
    try:
        client.connect("127.0.0.1", ftp.port)
    except BaseException:
        client.close()
        raise
    return client


def try_login(ftp: FtpSite, user: str, password: str = PASSWORD) -> ftplib.FTP:
    client = open_client(ftp)
    try:
        client.login(user, password)
    except BaseException:
        client.close()
        raise
    return client


def login_fails(ftp: FtpSite, user: str, password: str, tls: bool = False) -> str:
    """The error of a login attempt that must fail: 421 at connect (banned) or 530 at PASS."""
    try:
        client = open_client(ftp, tls)
    except REFUSED as exc:
        return str(exc)
    try:
        return refused(lambda: client.login(user, password))
    finally:
        client.close()


def outside(ftp: FtpSite) -> dict[str, bytes]:
    """Every file of the site that no FTP user may ever write: all but the inbox, lake, database, certs."""
    own = ("hot/inbox/", "lake/", "var/", "tls/", "rules/")
    return {rel: data for rel, data in tree(ftp.root).items()
            if not rel.startswith(own) and rel not in ("flowd.log", "flowd.toml")}


def hidden_leftovers(root: Path) -> list[str]:
    return [rel for rel in tree(root) if Path(rel).name.startswith(".flowd-upload.")]


# -- logins --------------------------------------------------------------------------------------------

def test_wrong_password_is_answered_late_and_like_an_unknown_user(ftp: FtpSite) -> None:
    ftp.configure_ftp(login_failure_delay=0.5, ban_after=100)
    ftp.rules(RULES)
    ftp.add_user("ana")
    ftp.start()

    started = time.monotonic()
    wrong = login_fails(ftp, "ana", WRONG)
    elapsed = time.monotonic() - started
    assert wrong.startswith("530"), wrong
    assert elapsed > 0.4, f"a wrong password was answered after {elapsed:.2f} s, before login_failure_delay"

    started = time.monotonic()
    unknown = login_fails(ftp, "nobody-here", WRONG)
    assert time.monotonic() - started > 0.4
    assert unknown == wrong  # the same words: no way to tell a user name exists

    for name in ("anonymous", "ftp", "Anonymous"):
        for password in ("", "guest@example.com", PASSWORD):
            reply = login_fails(ftp, name, password)
            assert reply.startswith("530"), (name, password, reply)

    client = ftp.login("ana")  # the real password still works
    assert client.pwd() == "/"
    client.quit()
    log = ftp.log()
    assert "FTP login failed for 'ana' from 127.0.0.1" in log
    assert "FTP login failed for 'nobody-here'" in log
    assert WRONG not in log and PASSWORD not in log and "guest@example.com" not in log


def test_failure_delay_is_not_rounded_up_to_the_io_loops_poll_timeout(ftp: FtpSite) -> None:
    """login_failure_delay = 0.05 must answer in about 0.05 s; the best of three attempts is allowed
    half a second (the server polled with a fixed 1 s timeout, so every scheduled call waited for it)."""
    ftp.configure_ftp(login_failure_delay=0.05, ban_after=100)
    ftp.rules(RULES)
    ftp.add_user("ana")
    ftp.start()
    client = ftp.connect()
    times = []
    for _ in range(3):
        client.sendcmd("USER ana")
        started = time.monotonic()
        reply = refused(lambda c=client: c.sendcmd(f"PASS {WRONG}"))
        times.append(time.monotonic() - started)
        assert reply.startswith("530"), reply
        if "Disconnecting" in reply:
            client.close()
            client = ftp.connect()
    client.close()
    assert min(times) < 0.5, f"wrong passwords answered after {times} s with login_failure_delay = 0.05"


def test_an_address_is_banned_after_repeated_failures_then_admitted_again(ftp: FtpSite) -> None:
    # ban_seconds is also the window the failures are counted in (three quick failures fit in 2 s)
    ftp.configure_ftp(ban_after=3, ban_seconds=2)
    ftp.rules(RULES)
    ftp.add_user("ana")
    ftp.start()

    for _ in range(3):
        assert login_fails(ftp, "ana", WRONG)[:3] in ("530", "421")
    banned_at = time.monotonic()
    refusal = login_fails(ftp, "ana", PASSWORD)  # even the right password, during the ban
    assert refusal[:3] in ("421", "530"), refusal

    def admitted() -> bool:
        try:
            try_login(ftp, "ana").quit()
        except REFUSED:
            return False
        return True

    wait_for(admitted, 30, interval=0.25, message="the ban to expire")
    assert time.monotonic() - banned_at > 1.0  # the ban held for (about) ban_seconds
    log = ftp.log()
    assert log.count("FTP login failed for 'ana' from 127.0.0.1") >= 3
    assert "127.0.0.1 banned" in log
    assert WRONG not in log and PASSWORD not in log


def test_a_ban_also_refuses_connections_opened_before_it(ftp: FtpSite) -> None:
    """A brute-forcer opens many connections first, then guesses on all of them: the ban must hold on
    every connection from the address, not only on new ones."""
    ftp.configure_ftp(ban_after=3, ban_seconds=30)
    ftp.rules(RULES)
    ftp.add_user("ana")
    ftp.start()
    early = [open_client(ftp) for _ in range(2)]
    for _ in range(3):
        login_fails(ftp, "ana", WRONG)
    assert login_fails(ftp, "ana", PASSWORD)[:3] in ("421", "530")  # a new connection is refused
    try:
        reply = refused(lambda: early[0].login("ana", PASSWORD))
        assert reply[:3] in ("421", "530"), reply
        # and it cannot keep guessing either
        assert refused(lambda: early[1].login("ana", WRONG))[:3] in ("421", "530")
    finally:
        for client in early:
            client.close()


# -- TLS -----------------------------------------------------------------------------------------------

def test_ftps_upload_and_plain_ftp_refused_when_tls_is_required(ftp: FtpSite) -> None:
    ftp.configure_ftp(tls=True)  # require_tls defaults to true with a certificate
    ftp.rules(RULES)
    ftp.add_user("ana")
    ftp.start()

    client = ftp.login("ana", tls=True)  # FTP_TLS + PROT P
    assert stor(client, "secure.jpg").startswith("226")
    client.quit()
    ftp.settled(1)
    assert tree(ftp.lake) == {"assets/secure.jpg": JPEG}
    [trace] = ftp.traces("secure.jpg")
    assert trace["upload"]["protocol"] == "ftps"
    assert trace["upload"]["user"] == "ana"

    plain = ftp.connect(tls=False)
    reply = refused(lambda: plain.login("ana", PASSWORD))
    assert "SSL/TLS required" in reply, reply
    plain.close()

    clear_data = ftp.connect(tls=True)
    clear_data.login("ana", PASSWORD)  # AUTH TLS on the control channel, but no PROT P
    reply = refused(lambda: stor(clear_data, "clear.jpg"))
    assert "SSL/TLS required" in reply, reply
    clear_data.close()
    assert not (ftp.hot() / "clear.jpg").exists() and not hidden_leftovers(ftp.hot())
    assert PASSWORD not in ftp.log()


def test_plain_ftp_is_allowed_when_tls_is_optional(ftp: FtpSite) -> None:
    ftp.configure_ftp(tls=True, require_tls=False)
    ftp.rules(RULES)
    ftp.add_user("ana")
    ftp.start()
    plain = ftp.login("ana", tls=False)
    assert stor(plain, "plain.jpg", jpeg("plain")).startswith("226")
    plain.quit()
    secure = ftp.login("ana", tls=True)
    assert stor(secure, "secure.jpg", jpeg("secure")).startswith("226")
    secure.quit()
    ftp.settled(2)
    assert tree(ftp.lake) == {"assets/plain.jpg": jpeg("plain"), "assets/secure.jpg": jpeg("secure")}
    assert ftp.traces("plain.jpg")[0]["upload"]["protocol"] == "ftp"
    assert ftp.traces("secure.jpg")[0]["upload"]["protocol"] == "ftps"


# -- path escapes --------------------------------------------------------------------------------------

def test_path_escapes_are_refused_or_confined_to_the_group_root(ftp: FtpSite) -> None:
    ftp.configure_ftp(ban_after=1000)
    ftp.rules(RULES)
    ftp.add_user("up", perms=("upload",))
    ftp.add_user("rw", perms=("upload", "read", "delete"))
    root = ftp.hot()
    (ftp.root / "hot" / "sentinel").write_bytes(b"sentinel")  # beside the root: DELE ../sentinel
    (ftp.root / "outside").mkdir()
    (ftp.root / "outside" / "keep.jpg").write_bytes(b"outside")
    etc_name = f"flowd-ftp-escape-{uuid.uuid4().hex}.jpg"
    ftp.start()
    before = outside(ftp)
    replies: dict[str, str] = {}

    up = ftp.login("up")
    rw = ftp.login("rw")

    # `..` above the root is the root: these land inside it (or are refused), never beside it
    confined = {"../a1.jpg": "a1.jpg", "../../a2.jpg": "a2.jpg", "/../a3.jpg": "a3.jpg",
                "/../../../../a4.jpg": "a4.jpg", "..\\a5.jpg": "..\\a5.jpg", "%2e%2e/a6.jpg": None}
    for name in confined:
        replies[f"STOR {name}"] = outcome(lambda n=name: stor(up, n, jpeg(n)))
    rw.mkd("sub")
    replies["STOR sub/../../a7.jpg"] = outcome(lambda: stor(rw, "sub/../../a7.jpg", jpeg("a7")))
    replies["STOR sub/../../../hot/a8.jpg"] = outcome(lambda: stor(rw, "sub/../../../hot/a8.jpg", jpeg("a8")))
    replies[f"STOR /etc/{etc_name}"] = outcome(lambda: stor(up, f"/etc/{etc_name}"))
    rw.mkd("etc")  # an absolute path names a folder inside the root
    replies["STOR /etc/a9.jpg"] = outcome(lambda: stor(rw, "/etc/a9.jpg", jpeg("a9")))

    replies["CWD .."] = outcome(lambda: up.cwd(".."))
    assert up.pwd() == "/"
    replies["STOR after CWD .."] = outcome(lambda: stor(up, "a10.jpg", jpeg("a10")))
    replies["CWD /.."] = outcome(lambda: up.cwd("/.."))
    assert up.pwd() == "/"
    replies["CWD ../../.."] = outcome(lambda: up.cwd("../../.."))
    assert up.pwd() == "/"
    replies["STOR after CWD /.."] = outcome(lambda: stor(up, "a11.jpg", jpeg("a11")))
    replies["CWD /etc (absolute)"] = outcome(lambda: rw.cwd("/etc"))
    assert rw.pwd() == "/etc"
    rw.cwd("/")

    # NUL and over-long names are refused before they reach the file system
    replies["STOR NUL"] = refused(lambda: stor(up, "x\x00.jpg"))
    # a NUL inside a component that `..` removes never reaches the file system: refused or confined
    replies["STOR NUL ../"] = outcome(lambda: stor(up, "../x\x00/../../a14.jpg", jpeg("a14")))
    replies["DELE NUL"] = refused(lambda: rw.voidcmd("DELE a1.jpg\x00"))
    replies["STOR 256 bytes"] = refused(lambda: stor(up, "n" * 252 + ".jpg"))
    replies["STOR 600 bytes"] = refused(lambda: stor(up, "n" * 596 + ".jpg"))
    replies["STOR 255 bytes"] = outcome(lambda: stor(up, "n" * 251 + ".jpg"))  # its reserved name is longer
    replies["STOR 256 UTF-8 bytes"] = refused(lambda: stor(up, "é" * 126 + ".jpg"))
    replies["MKD 256 bytes"] = refused(lambda: rw.mkd("d" * 256))

    # flowd's reserved names cannot be addressed
    replies["STOR reserved"] = refused(lambda: stor(up, ".flowd-upload.x.jpg"))
    replies["STOR reserved in folder"] = refused(lambda: stor(rw, "sub/.flowd-upload.x.jpg"))
    replies["STOR reserved folder"] = refused(lambda: stor(rw, ".flowd-upload.d/x.jpg"))
    replies["RETR reserved"] = refused(lambda: retr(rw, ".flowd-upload.a1.jpg"))
    replies["MKD reserved"] = refused(lambda: rw.mkd(".flowd-upload.d"))

    # other verbs
    replies["MKD ../evil"] = outcome(lambda: rw.mkd("../evil"))
    replies["MKD /../../evil2"] = outcome(lambda: rw.mkd("/../../evil2"))
    replies["DELE ../sentinel"] = refused(lambda: rw.delete("../sentinel"))
    replies["DELE ../../outside/keep.jpg"] = refused(lambda: rw.delete("../../outside/keep.jpg"))
    replies["RMD ../../outside"] = refused(lambda: rw.rmd("../../outside"))
    rw.storbinary("STOR victim.part", io.BytesIO(b"temp"))  # a temp name: not processed until renamed
    replies["RNFR victim.part RNTO ../a12.part"] = outcome(lambda: rw.rename("victim.part", "../a12.part"))
    replies["RNFR ../sentinel"] = refused(lambda: rw.rename("../sentinel", "stolen"))
    replies["RNFR ../../outside/keep.jpg"] = refused(lambda: rw.rename("../../outside/keep.jpg", "stolen.jpg"))
    stor(up, "b.part", b"upload in progress")
    replies["uploader RNFR b.part RNTO ../a13.jpg"] = outcome(lambda: up.rename("b.part", "../a13.jpg"))
    replies["SITE CHMOD"] = refused(lambda: rw.sendcmd("SITE CHMOD 777 a1.jpg"))
    replies["SITE CHMOD outside"] = refused(lambda: rw.sendcmd("SITE CHMOD 777 ../sentinel"))
    replies["MFMT"] = refused(lambda: rw.sendcmd("MFMT 20000101000000 a1.jpg"))
    replies["STOU"] = refused(lambda: rw.sendcmd("STOU"))
    replies["STOU via transfercmd"] = refused(lambda: rw.transfercmd("STOU"))
    replies["RETR /etc/passwd"] = refused(lambda: retr(rw, "/etc/passwd"))
    replies["RETR ../../flowd.toml"] = refused(lambda: retr(rw, "../../flowd.toml"))
    replies["SIZE ../../flowd.toml"] = refused(lambda: rw.size("../../flowd.toml"))
    replies["LIST .."] = outcome(lambda: rw.nlst(".."))
    assert "flowd.toml" not in replies["LIST .."] and "sentinel" not in replies["LIST .."]
    up.quit()
    rw.quit()

    # the uploads that were confined are processed as files of the root (relpath inside it)
    # (a name starting with '.' is ignored by the hot folder: `..\\a5.jpg` stays in the root, unprocessed)
    expected = {f"assets/{v}": jpeg(k) for k, v in confined.items() if v is not None and not v.startswith(".")}
    expected |= {"assets/a7.jpg": jpeg("a7"), "assets/etc/a9.jpg": jpeg("a9"), "assets/a10.jpg": jpeg("a10"),
                 "assets/a11.jpg": jpeg("a11"), "assets/a13.jpg": b"upload in progress"}
    if replies["STOR NUL ../"].startswith("226"):
        expected["assets/a14.jpg"] = jpeg("a14")
    for name in expected:
        if not name.endswith("a13.jpg"):
            wait_for(lambda n=name: (ftp.lake / n).exists(), 30, message=f"{name} in the lake ({replies})")
    ftp.settled(len(expected) - 1, timeout=30)  # a13 is not a JPEG: it may be refused as cut short
    lake = tree(ftp.lake)
    for name, data in expected.items():
        if not name.endswith("a13.jpg"):
            assert lake[name] == data, name
    assert not any(name.startswith("assets/..") for name in lake), lake
    assert (root / "..\\a5.jpg").read_bytes() == jpeg("..\\a5.jpg")  # a literal name inside the root
    assert not any(name.endswith("a8.jpg") for name in lake) or "assets/hot/a8.jpg" in lake, lake

    assert outside(ftp) == before, replies  # nothing beside the root was written, changed or deleted
    assert (ftp.root / "hot" / "sentinel").read_bytes() == b"sentinel"
    assert not (ftp.root / "evil").exists() and not (ftp.root / "hot" / "evil").exists()
    assert not (Path("/etc") / etc_name).exists(), "an absolute path escaped to the real /etc"
    assert (root / "evil").is_dir() or replies["MKD ../evil"].startswith("5")  # MKD ../evil: inside or refused
    assert not hidden_leftovers(ftp.root)
    for key in ("STOR NUL", "STOR 256 bytes", "STOR reserved", "STOU", "SITE CHMOD", "DELE ../sentinel"):
        assert replies[key][:1] == "5", (key, replies[key])


def test_symlinks_out_of_the_root_and_a_fifo_are_never_followed(ftp: FtpSite) -> None:
    ftp.configure_ftp(ban_after=1000)
    ftp.rules(RULES)
    ftp.add_user("rw", perms=("upload", "read", "delete"))
    elsewhere = ftp.root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.jpg").write_bytes(b"secret outside the root")
    root = ftp.hot()
    os.symlink(elsewhere, root / "door")  # a folder pointing out
    os.symlink(elsewhere / "secret.jpg", root / "secret.jpg")  # a file pointing out
    os.symlink("/etc/passwd", root / "passwd.jpg")
    os.mkfifo(root / "pipe.jpg")
    (root / "plain.jpg").write_bytes(JPEG)
    ftp.start()

    rw = ftp.login("rw")
    assert sorted(rw.nlst()) == ["door", "passwd.jpg", "pipe.jpg", "plain.jpg", "secret.jpg"]
    assert retr(rw, "plain.jpg") == JPEG
    for call in (lambda: stor(rw, "door/x.jpg"), lambda: stor(rw, "/door/../door/x.jpg"),
                 lambda: rw.nlst("door"), lambda: rw.retrlines("LIST door", lambda _line: None),
                 lambda: retr(rw, "door/secret.jpg"), lambda: rw.cwd("door"), lambda: rw.mkd("door/new"),
                 lambda: rw.delete("door/secret.jpg"), lambda: rw.rename("door/secret.jpg", "got.jpg"),
                 lambda: retr(rw, "secret.jpg"), lambda: retr(rw, "passwd.jpg"), lambda: rw.size("secret.jpg"),
                 lambda: stor(rw, "secret.jpg", b"overwrite through the link"),
                 lambda: rw.rename("plain.jpg", "door/plain.jpg"), lambda: rw.rename("plain.jpg", "door")):
        refused(call)
    stor(rw, "moving.part", b"temp")  # the uploader's temp-name rename path cannot go through it either
    refused(lambda: rw.rename("moving.part", "door/moved.jpg"))
    refused(lambda: rw.storbinary("APPE door/secret.jpg", io.BytesIO(b"appended")))
    refused(lambda: rw.storbinary("APPE secret.jpg", io.BytesIO(b"appended")))
    assert rw.pwd() == "/"

    started = time.monotonic()
    reply = refused(lambda: retr(rw, "pipe.jpg"))
    assert time.monotonic() - started < 10, "RETR of a FIFO hung"
    assert reply.startswith("550"), reply
    assert retr(rw, "plain.jpg") == JPEG  # the session (and the server) still answer
    rw.quit()
    other = ftp.login("rw")
    assert other.pwd() == "/"
    other.quit()

    assert tree(elsewhere) == {"secret.jpg": b"secret outside the root"}
    assert os.readlink(root / "secret.jpg") == str(elsewhere / "secret.jpg")
    assert not hidden_leftovers(ftp.root)


# -- groups and permissions ----------------------------------------------------------------------------

def test_users_see_and_write_only_their_own_group(ftp: FtpSite) -> None:
    ftp.configure_ftp(groups=TWO_GROUPS, ban_after=1000)
    ftp.rules(TWO_GROUP_RULES)
    ftp.add_user("ana", group="photographers", perms=("upload", "read", "delete"))
    ftp.add_user("bob", group="agency", perms=("upload", "read", "delete"))
    inbox = ftp.hot()
    staging = ftp.root / "var" / "ftp" / "agency"
    staging.mkdir(parents=True, exist_ok=True)
    (inbox / "ana-private.jpg").write_bytes(b"ana's")
    (staging / "bob-private.jpg").write_bytes(b"bob's")
    ftp.start()

    ana, bob = ftp.login("ana"), ftp.login("bob")
    assert ana.nlst() == ["ana-private.jpg"]
    assert bob.nlst() == ["bob-private.jpg"]
    assert retr(ana, "ana-private.jpg") == b"ana's"
    for path in ("bob-private.jpg", "/bob-private.jpg", "../../var/ftp/agency/bob-private.jpg",
                 "/../var/ftp/agency/bob-private.jpg", "../agency/bob-private.jpg"):
        refused(lambda p=path: retr(ana, p))
        refused(lambda p=path: ana.delete(p))
    for path in ("ana-private.jpg", "../../../hot/inbox/ana-private.jpg", "../../hot/inbox/ana-private.jpg"):
        refused(lambda p=path: retr(bob, p))
        refused(lambda p=path: bob.delete(p))
    refused(lambda: ana.cwd("../../var/ftp/agency"))
    assert ana.pwd() == "/"

    # writes aimed at the other group's root land in the writer's own root (or are refused)
    outcome(lambda: stor(ana, "../../var/ftp/agency/from-ana.jpg", jpeg("ana-escape")))
    outcome(lambda: stor(bob, "../../../hot/inbox/from-bob.jpg", jpeg("bob-escape")))
    assert stor(ana, "ana-upload.jpg", jpeg("ana")).startswith("226")
    assert stor(bob, "bob-upload.jpg", jpeg("bob")).startswith("226")
    ana.quit()
    bob.quit()

    wait_for(lambda: (ftp.lake / "assets/ana-upload.jpg").exists() and (ftp.lake / "agency/bob-upload.jpg").exists(),
             30, message="both uploads stored")
    ftp.settled(2, timeout=30)
    lake = tree(ftp.lake)
    assert lake["assets/ana-upload.jpg"] == jpeg("ana")
    assert lake["agency/bob-upload.jpg"] == jpeg("bob")
    assert not any("from-ana" in name for name in lake if name.startswith("agency/")), lake
    assert not any("from-bob" in name for name in lake if name.startswith("assets/")), lake
    assert tree(staging).get("bob-private.jpg") == b"bob's"
    assert not any("from-ana" in name for name in tree(staging))
    assert tree(inbox).get("ana-private.jpg") == b"ana's"
    assert not any("from-bob" in name for name in tree(inbox))
    [ana_trace] = ftp.traces("ana-upload.jpg")
    assert ana_trace["upload"]["group"] == "photographers" and ana_trace["hotfolder"] == "inbox"
    [bob_trace] = ftp.traces("bob-upload.jpg")
    assert bob_trace["upload"]["group"] == "agency" and bob_trace["upload"]["user"] == "bob"


def test_upload_only_users_cannot_list_fetch_delete_or_rename(ftp: FtpSite) -> None:
    ftp.configure_ftp(ban_after=1000)
    ftp.rules(RULES)
    ftp.add_user("drop", perms=("upload",))
    root = ftp.hot()
    (root / "existing.jpg").write_bytes(b"someone else's")
    (root / "folder").mkdir()
    ftp.start()

    drop = ftp.login("drop")
    for call in (lambda: drop.nlst(), lambda: drop.nlst("folder"), lambda: drop.retrlines("LIST", lambda _l: None),
                 lambda: drop.retrlines("MLSD", lambda _l: None), lambda: drop.sendcmd("MLST existing.jpg"),
                 lambda: retr(drop, "existing.jpg"), lambda: drop.size("existing.jpg"),
                 lambda: drop.sendcmd("MDTM existing.jpg"), lambda: drop.delete("existing.jpg"),
                 lambda: drop.rename("existing.jpg", "mine.jpg"), lambda: drop.rmd("folder")):
        reply = refused(call)
        assert reply.startswith("5"), reply
    assert stor(drop, "new.jpg").startswith("226")  # what it may do
    reply = stor(drop, "existing.jpg", jpeg("not an overwrite"))  # a taken name is never overwritten
    assert reply.startswith("226") and "existing_1.jpg" in reply, reply
    drop.quit()
    ftp.settled(2)
    assert (root / "existing.jpg").read_bytes() == b"someone else's"
    assert (root / "folder").is_dir()
    assert tree(ftp.lake) == {"assets/new.jpg": JPEG, "assets/existing_1.jpg": jpeg("not an overwrite")}


# -- the protocol around the files ---------------------------------------------------------------------

def test_nothing_before_login_no_port_bounce_and_a_connection_limit_per_address(ftp: FtpSite) -> None:
    ftp.configure_ftp(ban_after=1000, max_connections_per_ip=3)
    ftp.rules(RULES)
    ftp.add_user("rw", perms=("upload", "read", "delete"))
    assert ftp.cli("ftp-user", "add", "anonymous", "--group", "photographers", "--password-stdin",
                   input=b"some-long-password\n").returncode != 0  # anonymous cannot even be created
    ftp.start()

    anon = open_client(ftp)
    for command in ("PASV", "LIST", "RETR a.jpg", "STOR a.jpg", "CWD /", "MKD x", "DELE a.jpg",
                    "SIZE a.jpg", "RNFR a.jpg"):
        reply = refused(lambda c=command: anon.sendcmd(c))
        assert reply.startswith("530"), (command, reply)
    anon.close()

    rw = try_login(ftp, "rw")
    # FTP bounce: an active-mode data connection to another host, or to a privileged port, is refused
    for port_arg in ("10,0,0,1,0,80", "192,0,2,7,4,1", "127,0,0,1,0,22"):
        reply = refused(lambda a=port_arg: rw.sendcmd(f"PORT {a}"))
        assert reply[:1] in ("5", "4"), (port_arg, reply)
    refused(lambda: rw.sendcmd("EPRT |1|10.0.0.1|8080|"))
    assert stor(rw, "after.jpg").startswith("226")  # the session is still usable

    # max_connections_per_ip = 3: rw holds one, two more are fine, the fourth is refused at once
    extra = [open_client(ftp), open_client(ftp)]
    try:
        reply = refused(lambda: open_client(ftp))
        assert reply.startswith("421"), reply
    finally:
        for client in extra:
            client.close()
    rw.quit()

    def admitted() -> bool:
        try:
            try_login(ftp, "rw").quit()
        except REFUSED:
            return False
        return True

    wait_for(admitted, 20, interval=0.2, message="a connection once the others closed")
    ftp.settled(1)
    assert tree(ftp.lake) == {"assets/after.jpg": JPEG}


def _unblock(fifo: Path) -> None:
    """Open a FIFO's read end for a moment: a writer blocked in open() on it (the server) goes on."""
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    time.sleep(1)
    os.close(fd)


def test_a_fifo_under_a_reserved_name_cannot_hang_the_server(ftp: FtpSite) -> None:
    """Someone with local (or NFS) access plants a FIFO where flowd writes an upload in progress. STOR of
    that name must be refused or written to a regular file, never block the server's I/O loop in open()."""
    ftp.configure_ftp(ban_after=1000)
    ftp.rules(RULES)
    ftp.add_user("rw", perms=("upload", "read", "delete"))
    fifo = ftp.hot() / ".flowd-upload.w.jpg"
    os.mkfifo(fifo)
    ftp.start()
    rw = try_login(ftp, "rw")
    rw.timeout = 10  # the data connection
    rw.sock.settimeout(10)
    try:
        try:
            reply = stor(rw, "w.jpg")
        except REFUSED as exc:
            reply = str(exc)
        except OSError:  # TimeoutError: no answer at all
            reply = "no answer within 10 s"
    finally:
        _unblock(fifo)  # let a hung server go on, so the test can end cleanly
        rw.close()
    assert reply[:1] in ("2", "4", "5"), f"STOR onto a planted FIFO: {reply}"
    other = try_login(ftp, "rw")  # the server still serves
    assert other.pwd() == "/"
    other.quit()


def test_listings_and_replies_do_not_reveal_server_paths(ftp: FtpSite) -> None:
    """A read user sees names relative to the group root: not where the root or a symlink's target is on
    the server (LIST used to print `door -> /srv/.../elsewhere`)."""
    ftp.configure_ftp(ban_after=1000)
    ftp.rules(RULES)
    ftp.add_user("rw", perms=("upload", "read", "delete"))
    elsewhere = ftp.root / "elsewhere"
    elsewhere.mkdir()
    root = ftp.hot()
    os.symlink(elsewhere, root / "door")
    os.symlink(elsewhere / "nothing.jpg", root / "dangling.jpg")
    (root / "plain.jpg").write_bytes(JPEG)
    ftp.start()
    rw = try_login(ftp, "rw")
    lines: list[str] = []
    rw.retrlines("LIST", lines.append)
    rw.retrlines("LIST -la", lines.append)
    rw.retrlines("MLSD", lines.append)
    for command in ("STAT", "STAT /", "MLST door", "MLST plain.jpg", "SIZE door", "MDTM door", "RETR door",
                    "CWD door", "DELE nothing", "RMD door", "RETR dangling.jpg", "SIZE dangling.jpg"):
        lines.append(outcome(lambda c=command: rw.sendcmd(c)))
    rw.quit()
    leaks = [line for line in lines if str(ftp.root) in line or "/tmp/" in line]
    assert not leaks, leaks
