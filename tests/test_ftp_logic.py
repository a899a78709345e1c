"""The pure parts of the FTP feature, without a server: password hashes, bans, the `ftp` condition and
placeholders as rules compile and evaluate them, and `[ftp]` settings as `flowd check` sees them."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowd.asset import Asset, Upload
from flowd.config import FtpSettings, HotFolder
from flowd.context import RunContext
from flowd.errors import ConfigError, TemplateError
from flowd.ftp.passwords import hash_password, verify_password, verify_unknown
from flowd.ftp.session import Bans
from flowd.placeholders import resolve
from flowd.rules import parse_rule_file
from flowd.template import compile_template

UPLOAD = Upload("ftps", "ana", "photographers", "10.1.2.3", datetime(2026, 11, 28, 10, 15, 2).timestamp())


def asset(upload: Upload | None = UPLOAD) -> Asset:
    return Asset(1, "default", "inbox", Path("/nonexistent"), "a.jpg", 10, 0, datetime(2026, 11, 28), None, "a.jpg",
                 upload=upload)


def test_a_password_is_stored_salted_and_slow_and_checks_only_itself() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second, "each hash has its own salt"
    assert first.startswith("scrypt$16384$8$1$") and "correct horse" not in first
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct hors", first)
    assert not verify_password("correct horse", "plaintext")  # a damaged hash refuses, never raises
    assert not verify_unknown("anything")


def test_an_address_is_banned_after_n_failures_within_the_window_and_released_after() -> None:
    bans = Bans(after=3, seconds=0.3)
    assert not bans.failed("192.0.2.1") and not bans.failed("192.0.2.1")
    assert not bans.banned("192.0.2.1")
    assert bans.failed("192.0.2.1"), "the third failure bans"
    assert bans.banned("192.0.2.1") > 0 and not bans.banned("192.0.2.2"), "only that address"
    time.sleep(0.35)
    assert not bans.banned("192.0.2.1")
    time.sleep(0.35)  # failures older than the window no longer count
    assert not bans.failed("192.0.2.1") and not bans.failed("192.0.2.1")


def rules(text: str, groups: dict[str, str] | None = None) -> tuple[list[Any], list[ConfigError]]:
    errors: list[ConfigError] = []
    found = parse_rule_file(text.encode(), "r.yaml", {"inbox": HotFolder(name="inbox", path="hot/inbox")}, {}, errors,
                            ftp_groups=groups if groups is not None else {"photographers": "default", "other": "news"})
    return found, errors


def check(condition: str, target: Asset) -> bool:
    found, errors = rules(f"rules:\n  - name: r\n    if: {condition}\n    do: [{{delete: {{}}}}]\n")
    assert not errors, errors
    out: list[dict[str, Any]] = []
    ctx = RunContext(now=datetime.now(), storages={}, simulate=True, post_json=lambda *a: 200,
                     seen_content=lambda *a: None)
    result = found[0].condition.check(target, ctx, out)
    assert out and out[-1]["if"] == "ftp"
    return bool(result)


@pytest.mark.parametrize(("condition", "uploaded", "plain"), [
    ("{ftp: true}", True, False),
    ("{ftp: false}", False, True),
    ("{ftp: {user: ana}}", True, False),
    ("{ftp: {user: [bo, 'a*']}}", True, False),
    ("{ftp: {user: Ana}}", False, False),  # user names are case-sensitive, as logins are
    ("{ftp: {group: photographers}}", True, False),
    ("{ftp: {client: 10.0.0.0/8}}", True, False),
    ("{ftp: {client: [192.0.2.0/24, 10.1.2.3]}}", True, False),
    ("{ftp: {client: 192.168.0.0/16}}", False, False),
    ("{ftp: {protocol: ftps}}", True, False),
    ("{ftp: {protocol: ftp}}", False, False),
    ("{ftp: {user: ana, protocol: ftp}}", False, False),  # every key must match
])
def test_the_ftp_condition(condition: str, uploaded: bool, plain: bool) -> None:
    assert check(condition, asset()) is uploaded
    assert check(condition, asset(None)) is plain


@pytest.mark.parametrize(("condition", "message"), [
    ("{ftp: {group: other}}", "no [[ftp.groups]] group of tenant 'default'"),  # another tenant's group
    ("{ftp: {group: nosuch}}", "no [[ftp.groups]] group"),
    ("{ftp: {client: not-an-ip}}", "not an IP address"),
    ("{ftp: {protocol: sftp}}", "unknown protocol"),
    ("{ftp: {usr: ana}}", "unknown key 'usr'"),
    ("{ftp: yes}", "expected true, false or a mapping"),
])
def test_a_bad_ftp_condition_is_a_load_time_error(condition: str, message: str) -> None:
    _, errors = rules(f"rules:\n  - name: r\n    if: {condition}\n    do: [{{delete: {{}}}}]\n")
    assert errors and message in str(errors[0]) and errors[0].line == 3, errors


def test_an_ftp_trigger_names_a_group_of_the_rules_tenant() -> None:
    found, errors = rules("rules:\n  - name: r\n    on: [{ftp: photographers}]\n    do: [{delete: {}}]\n")
    assert not errors and found[0].hotfolders == frozenset({"ftp:photographers"})
    _, errors = rules("rules:\n  - name: r\n    on: [{ftp: other}]\n    do: [{delete: {}}]\n")
    assert errors and "no [[ftp.groups]] group of tenant 'default'" in str(errors[0]) and "photographers" in str(errors[0])


@pytest.mark.parametrize(("template", "value"), [
    ("{ftp.user}", "ana"), ("{ftp.group}", "photographers"), ("{ftp.client}", "10.1.2.3"),
    ("{ftp.time:%Y-%m-%d %H:%M}", "2026-11-28 10:15"), ("{ftp.time}", "2026-11-28T101502"),
    ("{ftp.user|upper}", "ANA"),
])
def test_ftp_placeholders(template: str, value: str) -> None:
    compiled = compile_template(template)
    assert compiled.render(lambda f: resolve(f, asset())) == value
    assert compiled.render(lambda f: resolve(f, asset(None))) == "", "empty for an asset that did not arrive over FTP"


@pytest.mark.parametrize(("template", "message"), [
    ("{ftp.password}", "the FTP facts are ftp.user, ftp.group, ftp.client, ftp.time"),
    ("{ftp.user:%Y}", "takes no format"),
    ("{ftp}", "unknown placeholder {ftp}"),
])
def test_bad_ftp_placeholders(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(template)
    assert message in str(caught.value)


@pytest.mark.parametrize(("settings", "message"), [
    ({"listen": "2121"}, "listen is HOST:PORT"),
    ({"passive_ports": "70000-70010"}, "passive port range"),
    ({"passive_ports": "60100-60000"}, "passive port range"),
    ({"require_tls": True}, "require_tls = true needs tls_cert"),
    ({"tls_key": "k.pem"}, "tls_key needs tls_cert"),
    ({"temp_names": ["a/b"]}, "without '/'"),
    ({"partial": "resume"}, "'delete' or 'keep'"),
    ({"groups": [{"name": "g", "hotfolder": "inbox", "path": "x"}]}, "not both"),
])
def test_bad_ftp_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception) as caught:
        FtpSettings(**settings)
    assert message in str(caught.value)


def test_ftp_settings_defaults_are_safe() -> None:
    s = FtpSettings()
    assert (s.host, s.port, s.tls_required, s.partial, s.ports()) == ("0.0.0.0", 2121, False, "delete", None)
    assert FtpSettings(tls_cert="c.pem").tls_required, "a certificate means TLS is required unless said otherwise"
    assert not FtpSettings(tls_cert="c.pem", require_tls=False).tls_required
    assert FtpSettings(passive_ports="60000-60002").ports() == [60000, 60001, 60002]
    assert FtpSettings(listen="[::1]:21").host == "::1"


def test_on_a_file_system_without_user_xattrs_the_facts_go_to_the_database(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Some mounts (SMB, some NFS) refuse user xattrs: the upload's facts are then recorded in the database,
    keyed like its job, before the file takes its final name, and the worker finds them there."""
    from flowd import upload_facts
    from flowd.config import load_config
    from flowd.db import Database
    from flowd.ftp.intake import Arrival, Group, Intake
    from flowd.hotfolder import build_folders
    from flowd.queue import JobQueue

    (tmp_path / "flowd.toml").write_text(
        '[flowd]\ndata_dir = "var"\ndatabase_url = "sqlite:///var/flowd.db"\n'
        '[storage.lake]\nkind = "local"\nroot = "lake"\n'
        '[[hotfolders]]\nname = "inbox"\npath = "hot"\n'
        '[ftp]\n[[ftp.groups]]\nname = "photographers"\nhotfolder = "inbox"\n')
    config = load_config(tmp_path / "flowd.toml")
    config.data_dir.mkdir()
    db = Database(config.database_url)
    queue = JobQueue(db)
    folder = build_folders(config)["inbox"]
    folder.root.mkdir()
    group = Group("photographers", "default", folder)
    monkeypatch.setattr(upload_facts, "tag", lambda *_args: False)  # what setxattr's ENOTSUP makes of it
    intake = Intake(queue, config.settings.ftp, db.secret(upload_facts.FACTS_KEY), lambda _n: None)
    intake.start()
    reserved = folder.root / ".flowd-upload.a.txt"
    reserved.write_bytes(b"hello")
    reply = intake.arrive(Arrival(reserved, folder.root / "a.txt", group, "ana", "192.0.2.7", "ftps"))
    intake.stop()
    assert reply.startswith("226") and (folder.root / "a.txt").read_bytes() == b"hello" and not reserved.exists()
    assert upload_facts.read(folder.root / "a.txt", b"k") is None  # no xattr on the file
    [job] = queue.claim(10)
    found = queue.upload_of(job)
    assert found is not None and (found.user, found.group, found.client, found.protocol) == \
        ("ana", "photographers", "192.0.2.7", "ftps")
    db.close()
