"""FTP/FTPS drop folders (issue 5), as a user of the server notices them: a real `flowd run` with its FTP
child process on a free loopback port, driven by Python's ftplib.

What is checked: an upload is processed by the right rules the moment it is complete (226 only once it is
attributed and under its final name), with its facts (user, group, client, protocol) in the trace, in
placeholders and in the `ftp` condition; unfinished uploads (ABOR, a cut-short file, a temp name not yet renamed) are never processed;
partial uploads resume with REST/APPE; a taken name is never overwritten; write-only users cannot look;
staging groups; `flowd ftp-user`; configuration errors.
"""

from __future__ import annotations

import ftplib
import io
import json
import re
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import JPEG, make_site, tree, wait_for
from ftpsupport import FtpSite
from imagegen import have_exiftool, read_tags, rgb_jpeg

PASSWORD = "correct-horse-1"
TIMEOUT = 20.0


class ClientSite(FtpSite):
    """Closes every client it connected when the test ends, passed or failed."""

    clients: list[ftplib.FTP]

    def add_user(self, name: str, password: str = PASSWORD, group: str = "photographers",
                 perms: tuple[str, ...] = ("upload",)) -> None:
        """In-process (a `flowd ftp-user add` process costs half a second; the CLI has its own tests)."""
        from flowd.config import load_config
        from flowd.db import Database
        from flowd.ftp import users

        config = load_config(str(self.config))
        config.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(config.database_url)
        try:
            users.add(db, name, group, set(perms), password)
        finally:
            db.close()

    def connect(self, tls: bool = False, timeout: float = TIMEOUT) -> ftplib.FTP:
        client = super().connect(tls, timeout)
        self.clients.append(client)
        return client


@pytest.fixture
def site(tmp_path: Path) -> Iterator[FtpSite]:
    for s in make_site(ClientSite, tmp_path):
        s.clients = []
        yield s
        for client in s.clients:
            client.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real JPEG (the completeness check reads its structure), large enough to cut in half."""
    path = rgb_jpeg(tmp_path_factory.mktemp("img") / "photo.jpg", 640, 480)
    data = path.read_bytes()
    assert len(data) > 20_000 and data.endswith(b"\xff\xd9")
    return data


@pytest.fixture(scope="module")
def photo2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = rgb_jpeg(tmp_path_factory.mktemp("img2") / "photo2.jpg", 320, 240, noise=30.0)
    return path.read_bytes()


# -- helpers -----------------------------------------------------------------------------------------------
STORE_ALL = """
    rules:
      - name: everything
        do:
          - store: {to: "{output}/{name}"}
"""


def upload(client: ftplib.FTP, name: str, data: bytes) -> str:
    return client.storbinary(f"STOR {name}", io.BytesIO(data))


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".flowd-upload.*")) if folder.exists() else []


def quiet(site: FtpSite, seconds: float = 1.0) -> None:
    """Give the daemon time to (wrongly) act; then the caller checks that nothing happened."""
    time.sleep(seconds)
    assert site.proc is not None and site.proc.poll() is None, site.log()


def job_count(site: FtpSite) -> int:
    return sum(site.states().values())


def trace_of(site: FtpSite, name: str) -> dict:
    found = site.traces(name)
    assert len(found) == 1, found
    return found[0]


def cut_upload(client: ftplib.FTP, name: str, data: bytes, verb: str = "STOR") -> str:
    """A client that drops the data connection mid-file: the server sees a normal end of file."""
    conn = client.transfercmd(f"{verb} {name}")
    conn.sendall(data)
    conn.close()
    with pytest.raises(ftplib.error_temp) as err:
        client.voidresp()
    return str(err.value)


# -- 1. an upload is processed by the right rules ------------------------------------------------------------
def test_upload_is_processed_by_ftp_group_rule_and_hot_folder_rule(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules("""
        rules:
          - name: from-photographers
            on: [{ftp: photographers}]
            do:
              - store: {to: "lake:ftp/{name}"}
          - name: inbox
            on: [{hotfolder: inbox}]
            do:
              - store: {to: "{output}/{name}"}
    """)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    reply = upload(client, "pic.jpg", photo)
    assert reply.startswith("226"), reply
    # 226 only once the upload sits complete under its real name (or is queued already): never a reserved name.
    assert job_count(site) == 1 or (site.hot() / "pic.jpg").is_file()
    assert hidden_files(site.hot()) == []
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"ftp/pic.jpg": photo, "assets/pic.jpg": photo}
    assert tree(site.hot()) == {}
    t = trace_of(site, "pic.jpg")
    assert t["status"] == "finished"
    up = t["upload"]
    assert (up["user"], up["group"], up["client"], up["protocol"]) == ("ana", "photographers", "127.0.0.1", "ftp")
    assert abs(up["at"] - time.time()) < 60
    assert {r["rule"] for r in t["rules"] if r["matched"]} == {"from-photographers", "inbox"}


def test_plain_hot_folder_drop_does_not_trigger_ftp_group_rule(site: FtpSite) -> None:
    site.configure_ftp()
    site.rules("""
        rules:
          - name: from-photographers
            on: [{ftp: photographers}]
            do:
              - store: {to: "lake:ftp/{name}"}
          - name: inbox
            on: [{hotfolder: inbox}]
            do:
              - store: {to: "{output}/{name}"}
    """)
    site.start()
    site.drop("plain.jpg", JPEG)
    site.settled(1)
    assert tree(site.lake) == {"assets/plain.jpg": JPEG}
    assert "upload" not in trace_of(site, "plain.jpg")


def test_ftps_upload_is_recorded_as_ftps_and_plain_login_is_refused(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(tls=True)
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    plain = site.connect()
    with pytest.raises(ftplib.error_perm) as err:
        plain.login("ana", PASSWORD)
    assert err.value.args[0].startswith("550") or err.value.args[0].startswith("53"), err.value
    plain.close()
    client = site.login("ana", tls=True)
    assert upload(client, "secure.jpg", photo).startswith("226")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"assets/secure.jpg": photo}
    assert trace_of(site, "secure.jpg")["upload"]["protocol"] == "ftps"


# -- 2. placeholders, the ftp condition, set_metadata ----------------------------------------------------------
def test_placeholders_condition_and_uploaded_by_metadata(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules("""
        rules:
          - name: by-user
            on: [{ftp: photographers}]
            do:
              - set_metadata:
                  - {field: 360, value: "{ftp.user}"}
                  - {field: 362, value: "{ftp.time:%Y-%m-%dT%H:%M:%S}"}
              - store: {to: "lake:by/{ftp.group}/{ftp.user}/{name}"}
          - name: ana-only
            if: {ftp: {user: "ana"}}
            do:
              - store: {to: "lake:ana/{name}"}
          - name: not-ftp
            if: {ftp: false}
            do:
              - store: {to: "lake:plain/{name}"}
          - name: any-ftp
            if: {ftp: {group: photographers, client: "127.0.0.0/8", protocol: ftp}}
            do:
              - store: {to: "lake:anyftp/{name}"}
    """)
    site.add_user("ana")
    site.add_user("bob")
    site.start()
    before = time.time()
    for user, name in (("ana", "a.jpg"), ("bob", "b.jpg")):
        client = site.login(user)
        assert upload(client, name, photo).startswith("226")
        client.quit()
    after = time.time()
    site.drop("c.jpg", JPEG)
    site.settled(3)
    lake = tree(site.lake)
    assert set(lake) == {"by/photographers/ana/a.jpg", "by/photographers/bob/b.jpg", "ana/a.jpg",
                         "plain/c.jpg", "anyftp/a.jpg", "anyftp/b.jpg"}
    assert lake["ana/a.jpg"] == photo and lake["anyftp/b.jpg"] == photo
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        assert trace_of(site, name)["status"] == "finished"

    out = site.lake / "by/photographers/bob/b.jpg"
    if have_exiftool():
        tags = read_tags(out, "-XMP:all")
        by = [v for k, v in tags.items() if k.lower().endswith(":uploadedby")]
        at = [str(v) for k, v in tags.items() if k.lower().endswith(":uploadtime")]
    else:  # pragma: no cover - exiftool is installed on the reference machine
        data = out.read_bytes().decode("latin-1")
        by = re.findall(r"UploadedBy>([^<]*)<", data) + re.findall(r'UploadedBy="([^"]*)"', data)
        at = re.findall(r"UploadTime>([^<]*)<", data) + re.findall(r'UploadTime="([^"]*)"', data)
    assert by == ["bob"], by
    assert len(at) == 1, at
    digits = "".join(re.findall(r"\d", at[0]))[:14]
    stamp = datetime.strptime(digits, "%Y%m%d%H%M%S").timestamp()
    assert before - 2 <= stamp <= after + 2, (at, before, after)


# -- 3. temp names: processed once renamed ---------------------------------------------------------------------
TEMP_NAMES = [("t1.jpg.part", "t1.jpg"), ("t2.jpg.filepart", "t2.jpg"), (".in.t3.jpg", "t3.jpg"),
              ("T4.JPG.PART", "T4.JPG"), ("t5.jpg.tmp", "t5.jpg")]


def test_temp_names_are_processed_only_once_renamed(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    for temp, _ in TEMP_NAMES:
        assert upload(client, temp, photo).startswith("226")
    quiet(site)
    assert job_count(site) == 0
    assert tree(site.lake) == {}
    assert tree(site.hot()) == {temp: photo for temp, _ in TEMP_NAMES}
    for n, (temp, final) in enumerate(TEMP_NAMES, 1):
        reply = client.rename(temp, final)
        assert reply.startswith("250"), reply
        # the rename is answered once the upload sits complete under its final name (or is queued already)
        assert job_count(site) == n or (site.hot() / final).is_file(), (temp, site.states())
    client.quit()
    site.settled(len(TEMP_NAMES))
    assert tree(site.lake) == {f"assets/{final}": photo for _, final in TEMP_NAMES}
    assert tree(site.hot()) == {}
    for _, final in TEMP_NAMES:
        t = trace_of(site, final)
        assert t["status"] == "finished" and t["upload"]["user"] == "ana"


def test_rename_from_temp_to_another_temp_name_is_not_processed(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    assert upload(client, "x.jpg.part", photo).startswith("226")
    assert client.rename("x.jpg.part", "x.jpg.tmp").startswith("250")
    quiet(site)
    assert job_count(site) == 0 and tree(site.lake) == {}
    assert client.rename("x.jpg.tmp", "x.jpg").startswith("250")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"assets/x.jpg": photo}


# -- 4. ABOR ---------------------------------------------------------------------------------------------------
def abort_upload(client: ftplib.FTP, name: str, data: bytes) -> None:
    conn = client.transfercmd(f"STOR {name}")
    conn.sendall(data)
    time.sleep(0.5)  # let the server read what was sent
    reply = client.abort()
    assert reply[:3] in ("426", "225", "226"), reply
    conn.close()
    if reply.startswith("426"):  # pyftpdlib then confirms the ABOR itself
        follow = client.getresp()
        assert follow.startswith("226") or follow.startswith("225"), follow
    assert client.voidcmd("NOOP").startswith("200")


def test_abort_mid_upload_is_never_processed_and_partial_deleted(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    abort_upload(client, "big.jpg", photo[: len(photo) // 2])
    wait_for(lambda: hidden_files(site.hot()) == [], TIMEOUT, message="the aborted partial upload removed")
    quiet(site)
    assert job_count(site) == 0
    assert tree(site.lake) == {}
    assert tree(site.hot()) == {}
    # The name is free again: a full upload afterwards is processed normally, under its own name.
    assert upload(client, "big.jpg", photo).startswith("226")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"assets/big.jpg": photo}


def test_abort_with_partial_keep_leaves_hidden_partial_and_size_reports_it(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(partial="keep")
    site.rules(STORE_ALL)
    site.add_user("ana")  # upload only: SIZE still answers for its own partial upload
    site.start()
    client = site.login("ana")
    half = len(photo) // 2
    abort_upload(client, "big.jpg", photo[:half])
    quiet(site)
    assert job_count(site) == 0
    assert tree(site.lake) == {}
    assert hidden_files(site.hot()) == [".flowd-upload.big.jpg"]
    kept = (site.hot() / ".flowd-upload.big.jpg").read_bytes()
    assert 0 < len(kept) <= half and kept == photo[: len(kept)]
    assert client.size("big.jpg") == len(kept)
    # Hidden from the (non-existent) listing rights and never visible under its final name.
    assert not (site.hot() / "big.jpg").exists()
    client.quit()


# -- 5. a cut-short upload ---------------------------------------------------------------------------------------
def test_truncated_jpeg_gets_426_and_is_never_processed(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    with pytest.raises(ftplib.error_temp) as err:
        upload(client, "cut.jpg", photo[: len(photo) * 2 // 3])
    assert str(err.value).startswith("426"), err.value
    assert "incomplete" in str(err.value).lower()
    # the control connection stays usable
    assert client.voidcmd("NOOP").startswith("200")
    client.quit()
    quiet(site)
    assert job_count(site) == 0
    assert tree(site.lake) == {}
    assert tree(site.hot()) == {}  # deleted (partial = "delete"), no hidden leftovers either


def test_client_dropping_data_connection_gets_426(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    reply = cut_upload(client, "drop.jpg", photo[:5000])
    assert reply.startswith("426"), reply
    client.quit()
    quiet(site)
    assert job_count(site) == 0 and tree(site.lake) == {} and tree(site.hot()) == {}


# -- 6. resume ---------------------------------------------------------------------------------------------------
def test_resume_with_rest_after_cut_short_upload(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(partial="keep")
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    half = len(photo) // 2
    reply = cut_upload(client, "x.jpg", photo[:half])
    assert reply.startswith("426") and "REST" in reply, reply
    quiet(site, 0.5)
    assert job_count(site) == 0 and tree(site.lake) == {}
    offset = client.size("x.jpg")
    assert offset == half
    done = client.storbinary("STOR x.jpg", io.BytesIO(photo[offset:]), rest=offset)
    assert done.startswith("226"), done
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"assets/x.jpg": photo}
    assert tree(site.hot()) == {}
    assert len(site.traces("x.jpg")) == 1
    assert site.states() == {"done": 1}


def test_resume_with_appe_after_cut_short_upload(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(partial="keep")
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    third = len(photo) // 3
    assert cut_upload(client, "y.jpg", photo[:third]).startswith("426")
    assert client.size("y.jpg") == third
    done = client.storbinary("APPE y.jpg", io.BytesIO(photo[third:]))
    assert done.startswith("226"), done
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"assets/y.jpg": photo}
    assert site.states() == {"done": 1}


def test_rest_on_a_complete_file_is_refused(site: FtpSite, photo: bytes) -> None:
    """Resuming into a file that is already complete would corrupt it: refused, the file untouched."""
    site.configure_ftp(partial="keep", hotfolders=[{"after": "keep"}])
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    assert upload(client, "z.jpg", photo).startswith("226")
    site.settled(1)
    with pytest.raises(ftplib.all_errors):
        client.storbinary("STOR z.jpg", io.BytesIO(b"garbage"), rest=100)
    client.close()
    quiet(site, 0.5)
    assert (site.hot() / "z.jpg").read_bytes() == photo
    assert site.states() == {"done": 1}


# -- 7. permissions --------------------------------------------------------------------------------------------
def test_write_only_user_cannot_look_and_reader_can(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(hotfolders=[{"after": "keep"}])
    site.rules(STORE_ALL)
    site.add_user("ana")  # upload only
    site.add_user("rita", perms=("read",))
    site.start()
    site.drop("other.jpg", JPEG)
    site.settled(1)

    ana = site.login("ana")
    for attempt in (lambda: ana.nlst(), lambda: ana.retrbinary("RETR other.jpg", lambda b: None),
                    lambda: ana.size("other.jpg"), lambda: ana.rename("other.jpg", "mine.jpg"),
                    lambda: ana.delete("other.jpg"), lambda: ana.retrlines("LIST")):
        with pytest.raises(ftplib.error_perm) as err:
            attempt()
        assert str(err.value).startswith("550"), err.value
    assert upload(ana, "mine.jpg", photo).startswith("226")  # ... but can upload
    ana.quit()
    site.settled(2)

    rita = site.login("rita")
    names = set(rita.nlst())
    assert {"other.jpg", "mine.jpg"} <= names
    assert not any(n.startswith(".flowd-upload.") for n in names)
    got = io.BytesIO()
    rita.retrbinary("RETR mine.jpg", got.write)
    assert got.getvalue() == photo
    assert rita.size("other.jpg") == len(JPEG)
    with pytest.raises(ftplib.error_perm):
        rita.delete("other.jpg")  # read is not delete
    with pytest.raises(ftplib.error_perm):
        upload(rita, "new.jpg", photo)  # nor upload
    rita.quit()
    assert (site.hot() / "other.jpg").read_bytes() == JPEG
    assert not (site.hot() / "mine.jpg").with_name("new.jpg").exists()


def test_write_only_user_cannot_see_others_partial_upload(site: FtpSite, photo: bytes) -> None:
    """SIZE answers an uploader for a partial upload, never for a complete file it cannot read."""
    site.configure_ftp(partial="keep", hotfolders=[{"after": "keep"}])
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    site.drop("done.jpg", JPEG)
    site.settled(1)
    client = site.login("ana")
    with pytest.raises(ftplib.error_perm):
        client.size("done.jpg")
    with pytest.raises(ftplib.error_perm):
        client.size("nothing.jpg")
    client.quit()


def test_delete_user_can_delete_and_rename(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(hotfolders=[{"after": "keep"}])
    site.rules(STORE_ALL)
    site.add_user("dora", perms=("read", "delete"))
    site.start()
    site.drop("one.jpg", JPEG)
    site.drop("two.jpg", JPEG)
    site.settled(2)
    client = site.login("dora")
    assert client.delete("one.jpg").startswith("250")
    client.quit()
    assert not (site.hot() / "one.jpg").exists()
    assert (site.hot() / "two.jpg").exists()


# -- 8. a taken name --------------------------------------------------------------------------------------------
def test_taken_name_is_never_overwritten(site: FtpSite, photo: bytes, photo2: bytes) -> None:
    site.configure_ftp(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: everything
            do:
              - store: {to: "{output}/{name}", conflict: increment}
    """)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    assert upload(client, "same.jpg", photo).startswith("226")
    site.settled(1)
    reply = upload(client, "same.jpg", photo2)
    assert reply.startswith("226"), reply
    assert "stored as same_1.jpg" in reply, reply
    client.quit()
    site.settled(2)
    assert tree(site.hot()) == {"same.jpg": photo, "same_1.jpg": photo2}
    assert tree(site.lake) == {"assets/same.jpg": photo, "assets/same_1.jpg": photo2}
    assert trace_of(site, "same_1.jpg")["upload"]["user"] == "ana"


# -- 9. staging groups ------------------------------------------------------------------------------------------
STAGING = """
[[ftp.groups]]
name = "photographers"
tenant = "default"
hotfolder = "inbox"

[[ftp.groups]]
name = "agency"
tenant = "default"
output = "lake:agency"
"""


def test_staging_group_is_seen_only_by_its_ftp_rules(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(groups=STAGING)
    site.rules("""
        rules:
          - name: agency-in
            on: [{ftp: agency}]
            do:
              - store: {to: "lake:agency/{ftp.user}/{name}"}
          - name: plain
            do:
              - store: {to: "lake:plain/{name}"}
    """)
    site.add_user("wire", group="agency")
    site.start()
    client = site.login("wire")
    assert upload(client, "wire.jpg", photo).startswith("226")
    client.quit()
    site.drop("local.jpg", JPEG)
    site.settled(2)
    assert tree(site.lake) == {"agency/wire/wire.jpg": photo, "plain/local.jpg": JPEG}
    staging = site.root / "var" / "ftp" / "agency"
    assert staging.is_dir()
    assert tree(staging) == {}  # deleted once processed
    t = trace_of(site, "wire.jpg")
    assert t["status"] == "finished"
    assert t["upload"]["group"] == "agency"
    assert [r["rule"] for r in t["rules"] if r["matched"]] == ["agency-in"]


@pytest.mark.parametrize(("group", "user", "expected"), [("agency", "wire", "agency/s.jpg"),
                                                          ("photographers", "ana", "assets/s.jpg")])
def test_ftp_group_rule_may_use_output(site: FtpSite, photo: bytes, group: str, user: str, expected: str) -> None:
    """{output} in an `on: [{ftp: GROUP}]` rule: the staging group's output, or its hot folder's."""
    site.configure_ftp(groups=STAGING)
    site.rules(f"""
        rules:
          - name: by-group
            on: [{{ftp: {group}}}]
            do:
              - store: {{to: "{{output}}/{{name}}"}}
    """)
    r = site.cli("check")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    site.add_user(user, group=group)
    site.start()
    client = site.login(user)
    assert upload(client, "s.jpg", photo).startswith("226")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {expected: photo}


def test_staging_upload_matching_no_rule_is_not_lost(site: FtpSite, photo: bytes) -> None:
    """A staged upload no rule matches must not vanish silently: it stays (or goes to errors)."""
    site.configure_ftp(groups=STAGING)
    site.rules("""
        rules:
          - name: agency-tiffs
            on: [{ftp: agency}]
            if: {extension: tif}
            do:
              - store: {to: "lake:agency/{name}"}
    """)
    site.add_user("wire", group="agency")
    site.start()
    client = site.login("wire")
    assert upload(client, "nomatch.jpg", photo).startswith("226")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {}
    everywhere = {**tree(site.root / "var" / "ftp"), **tree(site.root / "hotfolders"),
                  **tree(site.root / "errors")}
    assert any(k.endswith("nomatch.jpg") and v == photo for k, v in everywhere.items()), sorted(everywhere)


# -- 10. flowd ftp-user -----------------------------------------------------------------------------------------
def user_rows(site: FtpSite) -> list[tuple[str, str, str, str]]:
    conn = sqlite3.connect(site.root / "var" / "flowd.db")
    try:
        return conn.execute("SELECT name, grp, perms, hash FROM ftp_users ORDER BY name").fetchall()
    finally:
        conn.close()


def login_refused(site: FtpSite, user: str, password: str) -> bool:
    client = site.connect()
    try:
        client.login(user, password)
    except ftplib.error_perm as exc:
        assert str(exc).startswith("530"), exc
        return True
    finally:
        client.close()
    return False


def test_ftp_user_add_list_passwd_remove(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.start()
    r = site.cli("ftp-user", "add", "ana", "--group", "photographers", "--perm", "upload", "--perm", "read",
                 "--password-stdin", input=b"first-secret-1\n")
    assert r.returncode == 0, r.stderr
    r = site.cli("ftp-user", "list")
    assert r.returncode == 0 and "ana" in r.stdout and "photographers" in r.stdout, r
    listed = json.loads(site.cli("ftp-user", "list", "--json", check=True).stdout)
    assert listed == [{"name": "ana", "group": "photographers", "perms": ["read", "upload"]}]
    rows = user_rows(site)
    assert len(rows) == 1 and rows[0][:2] == ("ana", "photographers")
    assert rows[0][3].startswith("scrypt$") and "first-secret-1" not in rows[0][3]

    # the daemon is running: user changes apply at the next login
    client = site.login("ana", "first-secret-1")
    assert upload(client, "u.jpg", photo).startswith("226")
    client.quit()

    r = site.cli("ftp-user", "passwd", "ana", "--password-stdin", input=b"second-secret-2\n")
    assert r.returncode == 0, r.stderr
    assert user_rows(site)[0][3] != rows[0][3]
    assert login_refused(site, "ana", "first-secret-1")
    assert not login_refused(site, "ana", "second-secret-2")

    r = site.cli("ftp-user", "remove", "ana")
    assert r.returncode == 0, r.stderr
    assert user_rows(site) == []
    assert login_refused(site, "ana", "second-secret-2")
    r = site.cli("ftp-user", "list")
    assert "ana" not in r.stdout
    site.settled(1)


@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["add", "ana", "--group", "nosuchgroup"], b"long-enough-1\n", "nosuchgroup"),
    (["add", "ana", "--group", "photographers"], b"short\n", "8 characters"),
    (["add", "anonymous", "--group", "photographers"], b"long-enough-1\n", "reserved"),
    (["add", "bad/name", "--group", "photographers"], b"long-enough-1\n", "bad user name"),
    (["passwd", "nobody"], b"long-enough-1\n", "nobody"),
    (["remove", "nobody"], None, "nobody"),
])
def test_ftp_user_errors_are_clear(site: FtpSite, args: list[str], stdin: bytes | None, needle: str) -> None:
    site.configure_ftp()
    r = site.cli("ftp-user", *args, *(["--password-stdin"] if stdin else []), input=stdin)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    if (site.root / "var" / "flowd.db").exists():
        assert user_rows(site) == []


def test_ftp_user_add_twice_is_refused_and_keeps_the_first_password(site: FtpSite) -> None:
    site.configure_ftp()
    site.add_user("ana", "first-secret-1")
    before = user_rows(site)
    r = site.cli("ftp-user", "add", "ana", "--group", "photographers", "--password-stdin",
                 input=b"other-secret-2\n")
    assert r.returncode == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert user_rows(site) == before


def test_wrong_password_and_unknown_user_are_refused_alike(site: FtpSite) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    assert login_refused(site, "ana", "wrong-password")
    assert login_refused(site, "ghost", PASSWORD)
    assert login_refused(site, "anonymous", "guest@example.com")
    assert not login_refused(site, "ana", PASSWORD)


# -- 11/12. configuration errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "groups", "needle"), [
    ({}, '\n[[ftp.groups]]\nname = "p"\ntenant = "default"\nhotfolder = "nosuch"\n', "ftp.groups.0.hotfolder"),
    ({}, '\n[[ftp.groups]]\nname = "p"\ntenant = "other"\nhotfolder = "inbox"\n', "ftp.groups.0.tenant"),
    ({"require_tls": True}, None, "require_tls"),
    ({"passive_ports": "70000-1"}, None, "passive_ports"),
    ({"partial": "maybe"}, None, "partial"),
])
def test_config_errors_name_the_field(site: FtpSite, kwargs: dict, groups: str | None, needle: str) -> None:
    site.configure_ftp(groups=groups, **kwargs)
    site.rules(STORE_ALL)
    r = site.cli("check")
    assert r.returncode == 1, (r.stdout, r.stderr)
    out = r.stdout + r.stderr
    assert needle in out, out
    assert "flowd.toml" in out
    assert "Traceback" not in out


def test_config_error_line_points_at_the_group(site: FtpSite) -> None:
    site.configure_ftp(groups='\n[[ftp.groups]]\nname = "p"\ntenant = "default"\nhotfolder = "nosuch"\n')
    site.rules(STORE_ALL)
    r = site.cli("check")
    text = site.config.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "nosuch" in t)
    assert f"flowd.toml:{line}:" in r.stderr, r.stderr


def test_rule_on_unknown_ftp_group_is_a_check_error_with_file_and_line(site: FtpSite) -> None:
    site.configure_ftp()
    path = site.rules("""
        rules:
          - name: fine
            do:
              - store: {to: "{output}/{name}"}
          - name: wrong
            on: [{ftp: nosuchgroup}]
            do:
              - store: {to: "{output}/{name}"}
    """)
    r = site.cli("check")
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "nosuchgroup" in t)
    assert re.search(rf"rules\.yaml:{line}\b", r.stderr), r.stderr
    assert "nosuchgroup" in r.stderr and "photographers" in r.stderr
    assert "Traceback" not in r.stderr


def test_ftp_condition_on_unknown_group_is_a_check_error(site: FtpSite) -> None:
    site.configure_ftp()
    site.rules("""
        rules:
          - name: wrong
            if: {ftp: {group: nosuchgroup}}
            do:
              - store: {to: "{output}/{name}"}
    """)
    r = site.cli("check")
    assert r.returncode == 1 and "nosuchgroup" in r.stderr and "rules.yaml:" in r.stderr, r.stderr


def test_valid_ftp_config_checks_clean(site: FtpSite) -> None:
    site.configure_ftp(groups=STAGING, passive_ports="60000-60100", partial="keep")
    site.rules("""
        rules:
          - name: agency
            on: [{ftp: agency}]
            if: {ftp: {user: ["ana", "stringer-*"], protocol: ftp}}
            do:
              - store: {to: "lake:agency/{ftp.user}/{ftp.time:%Y}/{name}"}
    """)
    r = site.cli("check")
    assert r.returncode == 0, r.stderr


# -- robustness a user would notice -----------------------------------------------------------------------------
def test_many_uploads_in_one_session_each_processed_once(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    client.mkd("sub")
    for i in range(8):
        assert upload(client, f"sub/p{i}.jpg", photo).startswith("226")
    client.quit()
    site.settled(8)
    assert tree(site.lake) == {f"assets/p{i}.jpg": photo for i in range(8)}
    assert site.states() == {"done": 8}


def test_reserved_upload_names_cannot_be_addressed(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(partial="keep")
    site.rules(STORE_ALL)
    site.add_user("ana", perms=("upload", "read", "delete"))
    site.start()
    client = site.login("ana")
    with pytest.raises(ftplib.error_perm):
        upload(client, ".flowd-upload.evil.jpg", photo)
    assert cut_upload(client, "p.jpg", photo[:4000]).startswith("426")
    with pytest.raises(ftplib.error_perm):
        client.retrbinary("RETR .flowd-upload.p.jpg", lambda b: None)
    assert ".flowd-upload.p.jpg" not in client.nlst()
    client.quit()
    quiet(site, 0.5)
    assert job_count(site) == 0


def test_confined_to_group_root(site: FtpSite) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana", perms=("upload", "read"))
    site.start()
    (site.root / "secret.txt").write_text("top secret")
    client = site.login("ana")
    client.cwd("..")
    assert client.pwd() == "/"
    for path in ("../secret.txt", "/../secret.txt", "../../secret.txt"):
        with pytest.raises(ftplib.error_perm):
            client.retrbinary(f"RETR {path}", lambda b: None)
    client.quit()


def test_stop_with_ftp_running_is_clean(site: FtpSite) -> None:
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.start()
    port = site.port
    assert site.stop() == 0
    assert not (site.root / "var" / "ftp.json").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- more that a user would notice -------------------------------------------------------------------------------
def test_rename_from_temp_onto_taken_name_gets_next_number(site: FtpSite, photo: bytes, photo2: bytes) -> None:
    site.configure_ftp(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: everything
            do:
              - store: {to: "{output}/{name}", conflict: increment}
    """)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    assert upload(client, "k.jpg", photo).startswith("226")
    site.settled(1)
    assert upload(client, "k.jpg.part", photo2).startswith("226")
    reply = client.rename("k.jpg.part", "k.jpg")
    assert reply.startswith("250") and "stored as k_1.jpg" in reply, reply
    client.quit()
    site.settled(2)
    assert tree(site.hot()) == {"k.jpg": photo, "k_1.jpg": photo2}
    assert tree(site.lake) == {"assets/k.jpg": photo, "assets/k_1.jpg": photo2}


def test_two_clients_uploading_the_same_name_at_once_lose_nothing(site: FtpSite, photo: bytes,
                                                                  photo2: bytes) -> None:
    """Two photographers sending IMG_0001.jpg at the same moment: neither upload may corrupt the other."""
    site.configure_ftp(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: everything
            do:
              - store: {to: "{output}/{name}", conflict: increment}
    """)
    site.add_user("ana")
    site.add_user("bob")
    site.start()
    ana, bob = site.login("ana"), site.login("bob")
    conn = ana.transfercmd("STOR IMG_0001.jpg")
    half = len(photo) // 2
    conn.sendall(photo[:half])
    time.sleep(0.3)
    try:
        bob_reply = upload(bob, "IMG_0001.jpg", photo2)
    except ftplib.Error as exc:  # refused while the other upload is in progress: acceptable
        bob_reply = str(exc)
    conn.sendall(photo[half:])
    conn.close()
    ana_reply = ana.voidresp()
    assert ana_reply.startswith("226"), ana_reply
    ana.quit()
    bob.quit()
    done = 2 if bob_reply.startswith("226") else 1
    site.settled(done)
    files = sorted(tree(site.hot()).values(), key=len)
    assert photo in files, "ana's upload was corrupted or lost"
    if done == 2:
        assert photo2 in files, "bob's upload was corrupted or lost"
    else:
        assert bob_reply[:1] in "45", bob_reply
    assert hidden_files(site.hot()) == []


def test_failed_logins_ban_the_address(site: FtpSite) -> None:
    site.configure_ftp(ban_after=2, ban_seconds=60)
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    assert login_refused(site, "ana", "wrong-one-1")
    client = site.connect()
    with pytest.raises(ftplib.Error):
        client.login("ana", "wrong-two-2")
    client.close()
    # banned now: a new connection from this address is refused before it can try the right password
    with socket.create_connection(("127.0.0.1", site.port), timeout=TIMEOUT) as raw:
        banner = raw.recv(4096).decode()
    assert banner.startswith("421"), banner


def test_kept_partial_survives_a_restart_and_resumes(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(partial="keep")
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    half = len(photo) // 2
    assert cut_upload(client, "r.jpg", photo[:half]).startswith("426")
    client.quit()
    assert site.stop() == 0
    site.start()
    client = site.login("ana")
    assert client.size("r.jpg") == half
    assert client.storbinary("STOR r.jpg", io.BytesIO(photo[half:]), rest=half).startswith("226")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"assets/r.jpg": photo}
    assert site.states() == {"done": 1}


def test_stalled_upload_times_out_and_is_never_processed(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp(data_timeout=5)
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    conn = client.transfercmd("STOR stall.jpg")
    conn.sendall(photo[:1000])
    wait_for(lambda: hidden_files(site.hot()) != [], TIMEOUT, message="the upload started")
    wait_for(lambda: hidden_files(site.hot()) == [], TIMEOUT, message="the stalled upload dropped")
    conn.close()
    quiet(site, 0.5)
    assert job_count(site) == 0
    assert tree(site.lake) == {} and tree(site.hot()) == {}


def test_upload_of_non_image_is_processed(site: FtpSite) -> None:
    """The completeness check only holds back what its format says is cut short."""
    site.configure_ftp()
    site.rules(STORE_ALL)
    site.add_user("ana")
    site.start()
    client = site.login("ana")
    assert upload(client, "notes.txt", b"hello\n").startswith("226")
    assert upload(client, "empty.bin", b"").startswith("226")
    client.quit()
    site.settled(2)
    assert tree(site.lake) == {"assets/notes.txt": b"hello\n", "assets/empty.bin": b""}


def test_sighup_with_a_new_group_restarts_the_ftp_server(site: FtpSite, photo: bytes) -> None:
    site.configure_ftp()
    site.rules("""
        rules:
          - name: agency-in
            on: [{ftp: photographers}]
            do:
              - store: {to: "lake:ph/{name}"}
    """)
    site.start()
    r = site.cli("ftp-user", "add", "wire", "--group", "agency", "--password-stdin", input=b"correct-horse-1\n")
    assert r.returncode == 1 and "agency" in r.stderr
    state = site.root / "var" / "ftp.json"
    old = json.loads(state.read_text())
    site.configure_ftp(groups=STAGING)
    site.rules("""
        rules:
          - name: agency-in
            on: [{ftp: agency}]
            do:
              - store: {to: "lake:agency/{name}"}
    """)
    site.add_user("wire", group="agency")
    site.signal(signal.SIGHUP)
    def restarted() -> bool:
        try:
            return bool(json.loads(state.read_text())["pid"] != old["pid"])
        except (OSError, ValueError):  # between the old server's exit and the new one's start
            return False

    wait_for(restarted, TIMEOUT, message="the FTP server restarted")
    client = site.login("wire")
    assert upload(client, "hup.jpg", photo).startswith("226")
    client.quit()
    site.settled(1)
    assert tree(site.lake) == {"agency/hup.jpg": photo}


def test_passive_ports_masquerade_address_and_banner_are_what_clients_get(site: FtpSite, photo: bytes) -> None:
    """Behind NAT a server must name its public address in PASV replies and open data ports only in the
    range the firewall lets through."""
    with socket.socket() as probe:  # a free range on this machine: the port a probe got and the next ones
        probe.bind(("127.0.0.1", 0))
        first = max(probe.getsockname()[1], 20000)
    first = min(first, 65000)
    site.configure_ftp(passive_ports=f"{first}-{first + 20}", masquerade_address="203.0.113.7",
                       banner="Example Media drop box")
    site.add_user("ana")
    site.start()
    client = site.connect()
    assert "Example Media drop box" in client.getwelcome()
    client.login("ana", PASSWORD)
    reply = client.sendcmd("PASV")
    numbers = [int(n) for n in re.search(r"\((\d+(?:,\d+){5})\)", reply).group(1).split(",")]  # type: ignore[union-attr]
    assert numbers[:4] == [203, 0, 113, 7], reply
    assert first <= numbers[4] * 256 + numbers[5] <= first + 20, reply
    epsv = client.sendcmd("EPSV")
    port = int(re.search(r"\(\|\|\|(\d+)\|\)", epsv).group(1))  # type: ignore[union-attr]
    assert first <= port <= first + 20, epsv
    client.close()


def test_a_taken_port_stops_the_daemon_with_a_clear_message(site: FtpSite) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site.configure_ftp(listen=f"127.0.0.1:{port}")
        site.rules("rules:\n  - name: all\n    do: [{store: {to: \"{output}/{name}\"}}]\n")
        proc = site.start(wait_ready=False)
        assert proc.wait(60) == 1
    log = site.log()
    assert f"cannot listen on 127.0.0.1:{port}" in log and "the FTP server did not start" in log, log
    assert "Traceback" not in log, log
