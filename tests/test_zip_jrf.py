"""ZIP intake (`extract_zip`) and Job Request Files (`jrf`, `prf`, `[path_map]`) against the real daemon:
`python -m flowd run` on real folders with real inotify, as a user would see it (files in the hot folder,
the lake, the errors folder, the PRF beside the request)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path

import pytest
from conftest import JPEG, PDF, Site, tree, wait_for
from zipsupport import build, info, patch, snapshot

# A copy of the sample in ../shared/fixtures/colorfactory/jobs/ (CI has only this repository).
SAMPLE_JRF = Path(__file__).parent / "fixtures" / "nice-image.jrf"

STORE_ALL = """
    rules:
      - name: keep-all
        do:
          - store: {to: "{output}/{relpath}"}
"""



def site_snapshot(site: Site) -> dict[str, bytes | str]:
    """The whole site but the daemon's own state (var/), the quarantine (errors/) and its log."""
    return snapshot(site.root, skip=("var", "errors", "flowd.log", "notify.sock"))


def error_record(site: Site, name: str, folder: str = "inbox") -> dict[str, object]:
    return json.loads((site.root / "errors" / folder / f"{name}.error.json").read_text())


def jobs(site: Site) -> int:
    return sum(site.states().values())


def zip_site(site: Site, extract: str = "true", after: str = "delete", extra: str = "") -> None:
    site.configure(hotfolders=[{"after": after}], extra=f"extract_zip = {extract}\n{extra}")
    site.rules(STORE_ALL)


# -- ZIP: extraction ---------------------------------------------------------------------------------------


def test_zip_entries_extract_beside_it_and_each_becomes_a_job(site: Site) -> None:
    """Exactly at the limits (4 files; folder entries and macOS junk do not count; a 1 MiB blank page may
    compress far beyond zip_max_ratio), the ZIP found in a subfolder: its entries land beside it."""
    big = os.urandom(300_000)
    blank = bytes(1024**2)
    members = [("top.jpg", JPEG), ("docs/", b""), ("docs/guide.pdf", PDF), ("docs/deep/er/data.bin", big),
               ("__MACOSX/docs/._guide.pdf", b"junk"), (".DS_Store", b"junk"), ("blank.tif", blank)]
    limits = f"zip_max_entries = 4\nzip_max_bytes = {len(JPEG) + len(PDF) + len(big) + len(blank)}\n"
    zip_site(site, "true", extra=limits)
    site.start()
    site.drop("drop/pack.zip", build(site.root / "scratch" / "pack.zip", members).read_bytes())
    site.settled(5)
    assert tree(site.lake) == {"assets/drop/top.jpg": JPEG, "assets/drop/docs/guide.pdf": PDF,
                               "assets/drop/docs/deep/er/data.bin": big, "assets/drop/blank.tif": blank}
    assert tree(site.hot()) == {}, "the entries (after: delete) and the ZIP itself are removed once done"
    assert site.states() == {"done": 5}
    assert [t["relpath"] for t in site.traces("data.bin")] == ["drop/docs/deep/er/data.bin"]
    [zip_trace] = [t for t in site.traces("pack.zip") if t["status"] == "finished"]
    assert zip_trace["relpath"] == "drop/pack.zip"


def test_zip_entries_extract_into_a_subfolder_named_after_it(site: Site) -> None:
    members = [("top.jpg", JPEG), ("a/b/c.pdf", PDF), ("__MACOSX/._top.jpg", b"junk"), ("a/", b"")]
    zip_site(site, '"subfolder"', after="keep")
    site.start()
    data = build(site.root / "scratch" / "pack.zip", members).read_bytes()
    site.drop("pack.zip", data)
    site.drop("delivery.dat", data)  # a ZIP by its bytes, whatever its name
    site.drop("photo.zip", JPEG)  # not a ZIP, whatever its name: a file for the rules
    site.settled(7)
    assert tree(site.lake) == {"assets/pack/top.jpg": JPEG, "assets/pack/a/b/c.pdf": PDF,
                               "assets/delivery/top.jpg": JPEG, "assets/delivery/a/b/c.pdf": PDF,
                               "assets/photo.zip": JPEG}
    # after = "keep": the entries and the ZIPs stay, nothing else (no macOS junk, no temp file)
    assert tree(site.hot()) == {"pack.zip": data, "pack/top.jpg": JPEG, "pack/a/b/c.pdf": PDF,
                                "delivery.dat": data, "delivery/top.jpg": JPEG, "delivery/a/b/c.pdf": PDF,
                                "photo.zip": JPEG}
    assert site.states() == {"done": 7}


def test_zip_follows_after_only_once_every_entry_is_done(site: Site) -> None:
    """after = "move:done": the ZIP is moved only when all its entries' jobs have ended. One entry is a JPEG
    is a PDF cut short, which waits (incomplete) for a few seconds: meanwhile the ZIP stays and its job waits."""
    cut = PDF[:-7]  # no %%EOF: a PDF still being written, as far as flowd can tell
    members = [("a.jpg", JPEG), ("sub/b.pdf", PDF), ("sub/cut.pdf", cut)]
    zip_site(site, "true", after="move:done", extra="incomplete_seconds = 3\n")
    site.start()
    data = build(site.root / "scratch" / "pack.zip", members).read_bytes()
    site.drop("pack.zip", data)
    wait_for(lambda: len(tree(site.lake)) == 2, message="the complete entries stored")
    wait_for(lambda: (site.root / "done/sub/b.pdf").exists(), message="a complete entry moved to done")
    time.sleep(0.5)
    assert (site.hot() / "pack.zip").read_bytes() == data, "the ZIP left before its entries were done"
    assert (site.hot() / "sub/cut.pdf").exists()
    assert not (site.root / "done/pack.zip").exists()
    assert site.states().get("waiting") == 2, site.states()  # the ZIP and the cut PDF
    site.settled(4, timeout=20)
    assert tree(site.root / "done") == {"pack.zip": data, "a.jpg": JPEG, "sub/b.pdf": PDF}
    assert tree(site.root / "errors/inbox").keys() == {"sub/cut.pdf", "sub/cut.pdf.error.json"}
    assert tree(site.hot()) == {}
    assert site.states() == {"done": 3, "quarantined": 1}


def test_without_extract_zip_a_zip_is_just_a_file(site: Site) -> None:
    site.configure()
    site.rules(STORE_ALL)
    site.start()
    data = build(site.root / "scratch" / "pack.zip", [("a.jpg", JPEG), ("sub/b.pdf", PDF)]).read_bytes()
    site.drop("pack.zip", data)
    site.settled(1)
    time.sleep(0.3)
    assert tree(site.lake) == {"assets/pack.zip": data}
    assert tree(site.hot()) == {}
    assert site.states() == {"done": 1}


# -- ZIP: hostile archives ---------------------------------------------------------------------------------


def _zip_slip(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), ("../x.jpg", JPEG)])


def _absolute(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), ("/etc/x.jpg", JPEG)])


def _symlink(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), (info("photos/link", stat.S_IFLNK | 0o777), b"/etc")])


def _encrypted(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), ("sub/secret.pdf", PDF)], zipfile.ZIP_STORED)
    patch(path, "sub/secret.pdf", flag_bits=0x1)


def _ratio_bomb(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), ("sub/zeros.tif", bytes(20 * 1024**2))])


def _size_bomb(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), ("sub/big.bin", os.urandom(2 * 1000**2))])


def _too_many(path: Path) -> None:
    build(path, [(f"sub/{n}.jpg", JPEG) for n in range(10)])


def _nul_name(path: Path) -> None:
    build(path, [("fine.jpg", JPEG), ("evil.shX.jpg", b"#!/bin/sh\n")])
    path.write_bytes(path.read_bytes().replace(b"evil.shX.jpg", b"evil.sh\x00.jpg"))


def _duplicate(path: Path) -> None:
    build(path, [("a.jpg", JPEG), ("b.jpg", JPEG), ("a.jpg", b"other")])


def _truncated(path: Path) -> None:
    build(path, [("a.jpg", os.urandom(5000)), ("b.jpg", os.urandom(5000))], zipfile.ZIP_STORED)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


HOSTILE = {
    "zip-slip": (_zip_slip, "", "entry '../x.jpg' would be written outside the folder (zip-slip)"),
    "absolute": (_absolute, "", "entry '/etc/x.jpg' has an absolute path"),
    "symlink": (_symlink, "", "entry 'photos/link' is a symbolic link"),
    "encrypted": (_encrypted, "", "entry 'sub/secret.pdf' is encrypted"),
    "ratio-bomb": (_ratio_bomb, "", "entry 'sub/zeros.tif' expands "),
    "size-bomb": (_size_bomb, 'zip_max_bytes = "1MB"\n', "(limit 1000000 bytes in all)"),
    "too-many": (_too_many, "zip_max_entries = 5\n", "entry 'sub/5.jpg' is file number 6 (limit 5 files per archive)"),
    "nul-in-name": (_nul_name, "", "entry 'evil.sh\\x00.jpg' has a control character in its name"),
    "duplicate": (_duplicate, "", "entry 'a.jpg' appears twice (duplicate)"),
    "truncated": (_truncated, "", "not a readable ZIP archive: "),
}


@pytest.mark.parametrize(("kind", "mode"), [(kind, "true") for kind in HOSTILE]
                         + [("zip-slip", '"subfolder"'), ("ratio-bomb", '"subfolder"')])
def test_a_hostile_zip_is_refused_whole(site: Site, kind: str, mode: str) -> None:
    make, limits, reason = HOSTILE[kind]
    zip_site(site, mode, extra=limits)
    archive = site.root / "scratch" / "evil.zip"
    make(archive)
    data = archive.read_bytes()
    outside = Path("/etc/x.jpg").exists()
    site.hot()
    site.start()
    before = site_snapshot(site)
    site.drop("evil.zip", data)
    site.settled(1)
    time.sleep(0.3)  # any entry written would have become a job by now
    assert site.states() == {"quarantined": 1}
    assert site_snapshot(site) == before, "the hot folder, the lake or the site changed"
    assert Path("/etc/x.jpg").exists() == outside
    assert tree(site.root / "errors") == {"inbox/evil.zip": data,
                                          "inbox/evil.zip.error.json": (site.root / "errors/inbox/evil.zip.error.json").read_bytes()}
    why = str(error_record(site, "evil.zip")["reason"])
    assert why.startswith("refused ZIP: "), why
    assert reason in why, why
    if kind == "ratio-bomb":
        assert why.endswith("times (limit 200)"), why


def test_a_symlinked_folder_in_the_hot_folder_is_not_followed(site: Site) -> None:
    """An entry 'sub/x.jpg' where the hot folder's 'sub' is a symlink to another folder: nothing is written
    there, the ZIP goes to errors saying why."""
    zip_site(site, "true")
    outside = site.root / "outside"
    outside.mkdir()
    (site.hot() / "sub").symlink_to(outside, target_is_directory=True)
    data = build(site.root / "scratch" / "evil.zip", [("a.jpg", JPEG), ("sub/x.jpg", JPEG)]).read_bytes()
    site.start()
    before = site_snapshot(site)
    site.drop("evil.zip", data)
    site.settled(1)
    time.sleep(0.3)
    assert site.states() == {"quarantined": 1}
    assert site_snapshot(site) == before
    assert list(outside.iterdir()) == []
    assert (site.root / "errors/inbox/evil.zip").read_bytes() == data
    assert "is a symbolic link" in str(error_record(site, "evil.zip")["reason"])


def test_nested_zips_do_not_multiply_past_the_entry_limit(site: Site) -> None:
    """zip_max_entries = 3: an outer ZIP of 3 ZIPs of 3 ZIPs of 1 picture (every archive within the limit)
    must not turn into 9 pictures plus 12 archives in the hot folder and the lake."""
    zip_site(site, '"subfolder"', extra="zip_max_entries = 3\n")
    inner = build(site.root / "scratch" / "inner.zip", [("leaf.jpg", JPEG)]).read_bytes()
    mid = build(site.root / "scratch" / "mid.zip", [(f"i{n}.zip", inner) for n in range(3)]).read_bytes()
    outer = build(site.root / "scratch" / "outer.zip", [(f"m{n}.zip", mid) for n in range(3)]).read_bytes()
    site.start()
    site.drop("outer.zip", outer)
    site.settled(1)
    time.sleep(1.5)
    site.settled(1)
    leaves = [k for k in tree(site.lake) if k.endswith("leaf.jpg")]
    assert len(leaves) <= 3, f"{len(leaves)} files from one delivery with zip_max_entries = 3"
    nested = [k for k in tree(site.lake) if k.endswith(".zip")]
    assert len(nested) == 3, f"the three ZIPs inside are assets as they are, not unpacked again: {nested}"


# -- Job Request Files ---------------------------------------------------------------------------------------

JRF_FOLDER = """jrf = true
prf = true

[path_map]
'\\\\cfserver\\images' = "srv/images"
'D:\\CF' = "srv/cf"
"""

STORE_NAME = """
    rules:
      - name: pictures
        if: [{extension: jpg}]
        do:
          - store: {to: "{output}/{name}"}
"""


def jrf_site(site: Site, rules: str = STORE_NAME) -> None:
    site.configure(extra=JRF_FOLDER)
    site.rules(rules)


def request(input_file: str, output_file: str = "", version: str = "2", extra: str = "") -> bytes:
    text = f"[JRF]\r\nM_VERSION={version}\r\nM_INPUT_FILE={input_file}\r\nM_OUTPUT_FILE={output_file}\r\n{extra}"
    return text.encode("cp1252")


def images(site: Site, rel: str, data: bytes = JPEG) -> Path:
    path = site.root / "srv/images" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_prf(path: Path) -> dict[str, str]:
    raw = path.read_bytes()
    assert raw.startswith(b"[PRF]\r\n") and raw.endswith(b"\r\n"), raw
    assert raw.count(b"\n") == raw.count(b"\r\n"), f"not CRLF: {raw!r}"
    lines = raw.decode("cp1252").split("\r\n")[1:-1]
    return dict(line.split("=", 1) for line in lines)


def test_sample_request_with_empty_output_names_the_lake_file(site: Site) -> None:
    jrf_site(site)
    source = images(site, "Hires/Nice Image.jpg")
    site.start()
    shutil.copyfile(SAMPLE_JRF, site.root / "scratch.jrf")
    os.rename(site.root / "scratch.jrf", site.hot() / "nice-image.jrf")
    prf = site.hot() / "nice-image.prf"
    wait_for(prf.exists, message="the PRF")
    site.settled(1)
    result = read_prf(prf)
    assert result["M_ERROR_CODE"] == "0", result
    assert result["M_ERROR_TEXT"] == "success"
    assert result["M_INPUT_FILE"] == "\\\\cfserver\\images\\Hires\\Nice Image.jpg"
    lake_file = site.lake / "assets/Nice Image.jpg"
    assert Path(result["M_OUTPUT_FILE"]).resolve() == lake_file.resolve()
    assert tree(site.lake) == {"assets/Nice Image.jpg": JPEG}
    assert tree(site.hot()) == {"nice-image.prf": prf.read_bytes()}, "the JRF is removed on success"
    assert source.read_bytes() == JPEG, "the input stays (no M_REMOVE_INPUT_FILE)"
    # the rule's steps are journalled under the JRF's job
    [trace] = site.traces("nice-image.jrf")
    assert trace["status"] == "finished"
    targets = [a.get("target") for r in trace["rules"] for a in r["actions"]]
    assert "lake:assets/Nice Image.jpg" in targets, trace
    # the PRF is not a job of its own
    time.sleep(0.5)
    assert jobs(site) == 1
    assert site.traces("nice-image.prf") == []


def test_requested_output_is_copied_to_the_mapped_path(site: Site) -> None:
    jrf_site(site)
    picture = os.urandom(64)
    images(site, "Hires/in.jpg", JPEG + picture)
    (site.root / "srv/cf/Out").mkdir(parents=True)
    site.start()
    site.drop("req.jrf", request("\\\\CFSERVER\\Images\\Hires\\in.jpg", "D:\\CF\\Out\\result.jpg"))
    prf = site.hot() / "req.prf"
    wait_for(prf.exists, message="the PRF")
    site.settled(1)
    result = read_prf(prf)
    assert result["M_ERROR_CODE"] == "0", result
    assert result["M_OUTPUT_FILE"] == "D:\\CF\\Out\\result.jpg"
    assert tree(site.root / "srv/cf") == {"Out/result.jpg": JPEG + picture}, "output missing or a temp left"
    assert tree(site.lake) == {"assets/in.jpg": JPEG + picture}
    assert not (site.hot() / "req.jrf").exists()


def test_jrf_output_requested_leaves_the_output_at_the_requested_path_only(site: Site) -> None:
    """Color Factory's semantics (jrf_output = "requested"): a request naming M_OUTPUT_FILE gets its output
    there and nowhere else; one without still gets the channel's output."""
    site.configure(extra=JRF_FOLDER.replace("prf = true", 'prf = true\njrf_output = "requested"'))
    site.rules(STORE_NAME)
    picture = os.urandom(64)
    images(site, "Hires/in.jpg", JPEG + picture)
    images(site, "Hires/other.jpg", JPEG)
    site.start()
    site.drop("req.jrf", request("\\\\cfserver\\images\\Hires\\in.jpg", "D:\\CF\\Out\\result.jpg"))
    site.drop("plain.jrf", request("\\\\cfserver\\images\\Hires\\other.jpg"))
    for name in ("req.prf", "plain.prf"):
        wait_for((site.hot() / name).exists, message=name)
    site.settled(2)
    assert read_prf(site.hot() / "req.prf")["M_ERROR_CODE"] == "0"
    assert tree(site.root / "srv/cf") == {"Out/result.jpg": JPEG + picture}
    assert tree(site.lake) == {"assets/other.jpg": JPEG}, "only the request without M_OUTPUT_FILE keeps a copy"


def test_jrf_output_placeholder_is_the_requested_file_name(site: Site) -> None:
    jrf_site(site, """
        rules:
          - name: renamed
            do:
              - store: {to: "{output}/{jrf.M_CHANNEL}/{jrf.output}"}
    """)
    images(site, "Hires/in.jpg")
    site.start()
    site.drop("orders/req.jrf", request("\\\\cfserver\\images\\Hires\\in.jpg",
                                        "\\\\cfserver\\images\\Out\\Final Name.jpg", extra="M_CHANNEL=web\r\n"))
    prf = site.hot() / "orders/req.prf"  # beside the request, in its subfolder
    wait_for(prf.exists, message="the PRF")
    site.settled(1)
    assert read_prf(prf)["M_ERROR_CODE"] == "0"
    assert tree(site.lake) == {"assets/web/Final Name.jpg": JPEG}
    assert (site.root / "srv/images/Out/Final Name.jpg").read_bytes() == JPEG


def test_without_prf_requests_are_honoured_or_refused_silently(site: Site) -> None:
    site.configure(extra=JRF_FOLDER.replace("prf = true\n", ""))
    site.rules(STORE_NAME)
    images(site, "Hires/in.jpg")
    site.start()
    site.drop("good.jrf", request("\\\\cfserver\\images\\Hires\\in.jpg"))
    site.drop("bad.jrf", request("\\\\cfserver\\images\\Hires\\missing.jpg"))
    site.settled(2)
    assert site.states() == {"done": 1, "quarantined": 1}
    assert tree(site.hot()) == {}, "no PRF without prf = true, and the good JRF is removed"
    assert tree(site.lake) == {"assets/in.jpg": JPEG}
    assert tree(site.root / "errors/inbox").keys() == {"bad.jrf", "bad.jrf.error.json"}
    assert "PRF code 2" in str(error_record(site, "bad.jrf")["reason"])


def test_windows_1252_file_name_in_the_request(site: Site) -> None:
    jrf_site(site)
    images(site, "Hires/Bjørn.jpg")
    (site.root / "srv/cf").mkdir(parents=True)
    site.start()
    body = request("\\\\cfserver\\images\\Hires\\Bjørn.jpg", "D:\\CF\\Bjørn-web.jpg")
    assert b"Bj\xf8rn.jpg" in body  # windows-1252, not UTF-8
    site.drop("bjorn.jrf", body)
    prf = site.hot() / "bjorn.prf"
    wait_for(prf.exists, message="the PRF")
    site.settled(1)
    result = read_prf(prf)
    assert result["M_ERROR_CODE"] == "0", result
    assert result["M_INPUT_FILE"] == "\\\\cfserver\\images\\Hires\\Bjørn.jpg"
    assert result["M_OUTPUT_FILE"] == "D:\\CF\\Bjørn-web.jpg"
    assert b"Bj\xf8rn.jpg" in prf.read_bytes()
    assert tree(site.lake) == {"assets/Bjørn.jpg": JPEG}
    assert tree(site.root / "srv/cf") == {"Bjørn-web.jpg": JPEG}  # named in UTF-8 on disk


REFUSING_RULES = """
    rules:
      - name: pictures
        if: [{extension: jpg}]
        do:
          - store: {to: "{output}/{name}"}
      - name: not-for-print
        if: [{extension: tif}]
        do:
          - quarantine: {reason: "no TIFF for the web"}
      - name: renamed-only
        if: [{extension: png}]
        do:
          - rename: {to: "x{ext}"}
"""

HIRES = "\\\\cfserver\\images\\Hires\\"

# name: (request bytes, PRF code, text in M_ERROR_TEXT)
REFUSED = {
    "missing-input": (request(HIRES + "nope.jpg"), 2, "does not exist or is not a file"),
    "input-is-a-folder": (request("\\\\cfserver\\images\\Hires"), 2, "does not exist or is not a file"),
    "unmapped": (request("\\\\otherserver\\share\\a.jpg"), 3, "no [path_map] entry maps"),
    "dot-dot": (request("\\\\cfserver\\images\\..\\..\\flowd.toml"), 3, "'..' component"),
    "symlink-out": (request(HIRES + "passwd.jpg"), 3, "which a symlink leads out of the mapped roots"),
    "output-unmapped": (request(HIRES + "in.jpg", "E:\\elsewhere\\out.jpg"), 3, "output: no [path_map] entry"),
    "output-symlink-out": (request(HIRES + "in.jpg", "\\\\cfserver\\images\\escape\\out.jpg"), 3,
                           "which a symlink leads out of the mapped roots"),
    "too-large": (b"[JRF]\r\nM_VERSION=2\r\n" + b";" * 70_000 + b"\r\n", 1, "a job request may be at most"),
    "nul-byte": (request(HIRES + "in.jpg") + b"X=\x00\r\n", 1, "contains a NUL byte"),
    "no-input-key": (b"[JRF]\r\nM_VERSION=2\r\nM_OUTPUT_FILE=\r\n", 1, "M_INPUT_FILE is missing"),
    "garbage-line": (request(HIRES + "in.jpg", extra="this is not an ini line\r\n"), 1, "line 5 is not key=value"),
    "no-version": (b"[JRF]\r\nM_INPUT_FILE=" + HIRES.encode() + b"in.jpg\r\n", 1, "M_VERSION is missing"),
    "version-3": (request(HIRES + "in.jpg", version="3"), 6, "M_VERSION='3' is not supported"),
    "no-rule-matches": (request(HIRES + "in.gif"), 4, "no rule of hot folder 'inbox' matched in.gif"),
    "rule-quarantines": (request(HIRES + "in.tif"), 4, "no TIFF for the web"),
    "nothing-stored": (request(HIRES + "in.png"), 5, "the rules stored no output"),
}


def test_requests_that_cannot_be_honoured_get_a_prf_and_go_to_errors(site: Site) -> None:
    """Every way a request can fail, each its own JRF in one daemon: the PRF says why (code and text), the
    JRF is quarantined (not retried), nothing is written to the lake, the mapped folders or outside them."""
    jrf_site(site, REFUSING_RULES)
    images(site, "Hires/in.jpg")
    images(site, "Hires/in.gif", b"GIF89a" + bytes(32))
    images(site, "Hires/in.tif", b"II*\x00" + bytes(64))
    images(site, "Hires/in.png", b"\x89PNG\r\n\x1a\n")
    outside = site.root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not for requesters")
    (site.root / "srv/images/Hires/passwd.jpg").symlink_to(outside / "secret.txt")
    (site.root / "srv/images/escape").symlink_to(outside, target_is_directory=True)
    site.start()
    before = site_snapshot(site)
    for name, (body, _, _) in REFUSED.items():
        site.drop(f"{name}.jrf", body)
    site.settled(len(REFUSED))
    time.sleep(0.5)  # a PRF taken for a job would have been queued by now
    assert site.states() == {"quarantined": len(REFUSED)}, "a refused request must end quarantined, once"
    prfs = {f"{name}.prf" for name in REFUSED}
    after = site_snapshot(site)
    assert {k for k in after if k not in before} == {f"hot/inbox/{p}" for p in prfs}, "written besides the PRFs"
    assert {k for k in before if k not in after or after[k] != before[k]} == set(), "changed or removed"
    problems = []
    for name, (body, code, why) in REFUSED.items():
        result = read_prf(site.hot() / f"{name}.prf")
        if result["M_ERROR_CODE"] != str(code) or why not in result["M_ERROR_TEXT"]:
            problems.append(f"{name}: expected code {code} with {why!r}, got {result}")
        if (site.root / "errors/inbox" / f"{name}.jrf").read_bytes() != body:
            problems.append(f"{name}: the JRF in errors is not the request")
        reason = str(error_record(site, f"{name}.jrf")["reason"])
        if f"PRF code {code}" not in reason:
            problems.append(f"{name}: error.json reason {reason!r}")
    assert problems == []
    assert tree(site.lake) == {}




def test_jrf_output_needs_jrf_and_names_its_values(site: Site) -> None:
    site.configure(extra='jrf_output = "requested"\n')
    site.rules(STORE_NAME)
    result = site.cli("check")
    assert result.returncode == 1 and "jrf_output" in result.stderr and "needs jrf = true" in result.stderr
    site.configure(extra=JRF_FOLDER.replace("prf = true", 'prf = true\njrf_output = "only"'))
    result = site.cli("check")
    assert result.returncode == 1 and "jrf_output" in result.stderr and "both" in result.stderr, result.stderr
