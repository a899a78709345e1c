"""Many FTP clients at once: every upload becomes exactly one job, every job finishes, nothing is lost,
duplicated or left behind under flowd's reserved upload names."""

from __future__ import annotations

import ftplib
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import JPEG, make_site, tree
from ftpsupport import FtpSite

CLIENTS = 50
FILES = 20

RULES = """
rules:
  - name: to-lake
    if: [{ftp: true}]
    do:
      - store: {to: "{output}/{relpath}"}
"""


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[FtpSite]:
    yield from make_site(FtpSite, tmp_path)


def payload(client: int, n: int) -> bytes:
    """A complete JPEG whose bytes and length differ per upload."""
    return JPEG[:-2] + f"client {client} file {n} ".encode() * (1 + (client + n) % 7) + b"\xff\xd9"


def test_fifty_concurrent_clients_upload_a_thousand_files(ftp: FtpSite) -> None:
    ftp.configure_ftp(workers=4, max_connections_per_ip=64, max_connections=256, ban_after=1000)
    ftp.rules(RULES)
    ftp.add_user("load", perms=("upload",))
    ftp.start()
    port = ftp.port
    replies: dict[str, str] = {}
    errors: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(CLIENTS)

    def client(c: int) -> None:
        try:
            session = ftplib.FTP(timeout=60)
            try:
                session.connect("127.0.0.1", port)
                session.login("load", "correct-horse-1")
                go.wait(60)  # all 50 logged in: the uploads overlap
                for n in range(FILES):
                    name = f"c{c:02d}/f{n:02d}.jpg" if n % 2 else f"c{c:02d}-f{n:02d}.jpg"
                    if n == 1:
                        session.mkd(f"c{c:02d}")
                    reply = session.storbinary(f"STOR {name}", io.BytesIO(payload(c, n)))
                    with lock:
                        replies[name] = reply
                session.quit()
            finally:
                session.close()
        except Exception as exc:  # reported below with the client's number
            with lock:
                errors.append(f"client {c}: {type(exc).__name__}: {exc}")

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,), name=f"ftp-client-{c}") for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "clients still uploading after 120 s"
    uploaded = time.monotonic() - started
    assert not errors, errors[:10]

    total = CLIENTS * FILES
    assert len(replies) == total
    not_226 = {name: r for name, r in replies.items() if not r.startswith("226")}
    assert not not_226, list(not_226.items())[:10]
    assert not any("stored as" in r for r in replies.values())  # every name was free: none renamed

    states = ftp.settled(total, timeout=90)
    assert states == {"done": total}, states  # exactly one job per upload, every one done

    expected = {}
    for c in range(CLIENTS):
        for n in range(FILES):
            name = f"c{c:02d}/f{n:02d}.jpg" if n % 2 else f"c{c:02d}-f{n:02d}.jpg"
            expected[f"assets/{name}"] = payload(c, n)
    lake = tree(ftp.lake)
    assert sorted(lake) == sorted(expected), (set(lake) ^ set(expected))
    wrong = [name for name, data in expected.items() if lake[name] != data]
    assert not wrong, wrong[:10]

    left = tree(ftp.hot())
    assert not [p for p in left if Path(p).name.startswith(".flowd-upload.")], left
    assert not left, list(left)[:10]  # every source removed once stored (after = delete)
    log = ftp.log()
    assert log.count("FTP login load") == CLIENTS
    assert "Traceback" not in log and "ERROR" not in log and "WARNING" not in log
    db = sqlite3.connect(f"file:{ftp.root / 'var' / 'flowd.db'}?mode=ro", uri=True)
    try:  # every job's trace says who uploaded it
        users = [json.loads(body).get("upload", {}).get("user") for (body,) in db.execute("SELECT body FROM traces")]
    finally:
        db.close()
    assert users == ["load"] * total
    print(f"{total} uploads from {CLIENTS} clients in {uploaded:.1f} s")



SAME_NAME_RULES = """
rules:
  - name: to-lake
    if: [{ftp: true}]
    do:
      - store: {to: "{output}/{name}", conflict: increment}
"""


def test_concurrent_uploads_to_one_name_never_overwrite_each_other(ftp: FtpSite) -> None:
    """20 clients upload `same.jpg` 5 times each, all at once. A client refused (450: an upload to that
    name is in progress) sends again, as clients do. In the end: one job per 226, every stored file is
    exactly one client's bytes, none lost, none mixed."""
    ftp.configure_ftp(workers=2, max_connections_per_ip=64, ban_after=1000)
    ftp.rules(SAME_NAME_RULES)
    ftp.add_user("load", perms=("upload",))
    ftp.start()
    port = ftp.port
    clients, rounds = 20, 5
    replies: list[str] = []
    retried: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(clients)

    def client(c: int) -> None:
        try:
            session = ftplib.FTP(timeout=60)
            try:
                session.connect("127.0.0.1", port)
                session.login("load", "correct-horse-1")
                go.wait(60)
                for n in range(rounds):
                    for _attempt in range(50):
                        try:
                            reply = session.storbinary("STOR same.jpg", io.BytesIO(payload(c, n)))
                            break
                        except (ftplib.error_temp, ftplib.error_perm) as exc:  # busy: send it again later
                            with lock:
                                retried.append(str(exc))
                            time.sleep(0.05)
                    else:
                        raise AssertionError(f"upload {n} refused 50 times")
                    with lock:
                        replies.append(reply)
                session.quit()
            finally:
                session.close()
        except Exception as exc:
            with lock:
                errors.append(f"client {c}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:10]
    assert len(replies) == clients * rounds
    assert all(r.startswith("226") for r in replies), [r for r in replies if not r.startswith("226")][:5]
    states = ftp.settled(clients * rounds, timeout=60)
    lake = tree(ftp.lake)
    sent = sorted(payload(c, n) for c in range(clients) for n in range(rounds))
    mixed = [name for name, data in lake.items() if data not in sent]
    assert not mixed, f"{len(mixed)} stored files are no client's bytes (4xx retries: {retried[:3]})"
    assert sorted(lake.values()) == sent
    assert states == {"done": clients * rounds}, states
    assert not tree(ftp.hot())


def test_a_second_upload_to_a_name_in_progress_cannot_corrupt_the_first(ftp: FtpSite) -> None:
    """A is half-way through `STOR same.jpg` when B uploads `same.jpg` too. B may be refused (4xx) or both
    kept; what must never happen is a 226-acknowledged file that is not exactly its client's bytes."""
    ftp.configure_ftp(ban_after=1000)
    ftp.rules(SAME_NAME_RULES)
    ftp.add_user("load", perms=("upload",))
    ftp.start()
    first = JPEG[:-2] + b"A" * 100_000 + b"\xff\xd9"
    second = JPEG[:-2] + b"B" * 50_000 + b"\xff\xd9"
    a, b = ftp.login("load"), ftp.login("load")
    a.voidcmd("TYPE I")
    data = a.transfercmd("STOR same.jpg")
    data.sendall(first[:60_000])
    time.sleep(0.3)  # the server has (some of) A's bytes
    try:
        b_reply = b.storbinary("STOR same.jpg", io.BytesIO(second))
    except (ftplib.error_temp, ftplib.error_perm) as exc:  # refused while A's upload is in progress: fine
        b_reply = str(exc)
    data.sendall(first[60_000:])
    data.close()
    try:
        a_reply = a.voidresp()
    except ftplib.all_errors as exc:
        a_reply = str(exc)
    a.quit()
    b.quit()
    acknowledged = [d for d, r in ((first, a_reply), (second, b_reply)) if r.startswith("226")]
    assert first in acknowledged, f"A finished its upload but got {a_reply!r} (B got {b_reply!r})"
    ftp.settled(len(acknowledged), timeout=30)
    lake = tree(ftp.lake)
    assert sorted(lake.values()) == sorted(acknowledged), (
        f"A: {a_reply!r}, B: {b_reply!r}; stored sizes {[len(v) for v in lake.values()]}, "
        f"sent {len(first)} and {len(second)}")
