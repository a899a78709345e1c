"""Conditions, as a user writes them in rules, decided by the real daemon.

One daemon serves the whole module: five hot folders (names, sizes, ages, formats, logic), each with its
own set of rules (`on: [{hotfolder: ...}]`), plus one rule without `on:` that uses the `hotfolder`
condition. Every rule stores a copy under `assets/<rule>/<relpath>`, and rules fan out, so the lake says
exactly which rules matched which file. Each case below is a spec line: the condition as written in YAML
and the files it must match; every other file of that hot folder must not match. The trace of every file
must show, for every rule, the value the condition looked at and its result.
"""

from __future__ import annotations

import json
import os
import posixpath
import sqlite3
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import JPEG, PDF, PNG, Site, tree

TIFF_LE = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64
TIFF_BE = b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 64
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 32 + b";"  # with its trailer: complete
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
WAVE = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32  # RIFF, but not WebP
PSD = b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x00" * 32
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 32
XML = b'<?xml version="1.0" encoding="utf-8"?>\n<rss><channel/></rss>\n'
XML_BOM = b"\xef\xbb\xbf  \n<root><a>1</a></root>\n"
TEXT = "Grüße aus Köln\nzweite Zeile\n".encode()
BINARY = bytes(range(256))
GZIP = b"\x1f\x8b\x08\x00" + b"\x00" * 32

DAY = 86400


@dataclass(frozen=True)
class Case:
    rule: str
    folder: str
    condition: str  # YAML, exactly as a user writes it after `if:`
    matches: frozenset[str]  # relpaths in `folder` that must match; every other file there must not
    record: Callable[[str], dict[str, Any]]  # what the trace records for a file, without "result"


def case(rule: str, folder: str, condition: str, matches: set[str],
         record: Callable[[str], dict[str, Any]]) -> Any:
    return pytest.param(Case(rule, folder, condition, frozenset(matches), record), id=rule)


# -- the files -------------------------------------------------------------------------------------
NAMES = {
    "IMG_0001.JPG": JPEG, "img_0002.jpg": JPEG, "photo.jpeg": JPEG, "report_draft_v2.pdf": PDF,
    "README": b"read me\n", "archive.tar.gz": GZIP, "sub/photo.jpg": JPEG, "sub/deep/scan.tif": TIFF_LE,
    "top.TIF": TIFF_BE, "other.doc": b"nothing matches me\n",
}
SIZES = {f"{n}.bin": b"s" * n for n in (0, 999, 1000, 1001, 1024, 1025)}
AGES = {"40d.log": 40 * DAY, "10d.log": 10 * DAY, "2h.log": 2 * 3600, "fresh.log": 0}  # name -> age in seconds
FORMATS = {  # name -> (bytes, what flowd must sniff): the extension never decides
    "photo.txt": (JPEG, "jpeg"), "image.pdf": (PNG, "png"), "scan-le.jpg": (TIFF_LE, "tiff"),
    "scan-be.dat": (TIFF_BE, "tiff"), "anim.png": (GIF, "gif"), "pic.gif": (WEBP, "webp"),
    "layers.png": (PSD, "psd"), "doc.jpg": (PDF, "pdf"), "book.epub": (ZIP, "zip"), "feed.json": (XML, "xml"),
    "page.bin": (XML_BOM, "xml"), "notes.jpg": (TEXT, "text"), "noise.txt": (BINARY, "unknown"),
    "empty.jpg": (b"", "unknown"), "sound.webp": (WAVE, "unknown"),
    "truncated.jpg": (b"\xff\xd8" + BINARY, "unknown"), "stub.png": (b"\x89PN", "unknown"),
    "cut.md": (("x" + "ä" * 300).encode(), "text"),  # the 512-byte sample ends inside an "ä"
}
LOGIC = {
    "a.jpg": JPEG, "a_draft.jpg": JPEG, "trash/b.jpg": JPEG, "c.png": PNG, "fake.jpg": b"just text\n",
    "big.pdf": PDF + b"%" * 2000, "small.pdf": PDF, "trash/big.pdf": PDF + b"%" * 2000,
}
FILES: dict[str, dict[str, bytes]] = {
    "names": NAMES,
    "sizes": SIZES,
    "ages": {name: name.encode() for name in AGES},
    "formats": {name: data for name, (data, _) in FORMATS.items()},
    "logic": LOGIC,
}


def base(relpath: str) -> str:
    return posixpath.basename(relpath)


def ext_of(relpath: str) -> str:
    name = base(relpath)
    return name.rsplit(".", 1)[1].lower() if "." in name.lstrip(".") else ""


def size_of(folder: str) -> Callable[[str], int]:
    return lambda relpath: len(FILES[folder][relpath])


# -- the spec --------------------------------------------------------------------------------------
def name_rec(*patterns: str) -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "name", "value": base(rp), "expect": list(patterns)}


def path_rec(*patterns: str) -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "path", "value": rp, "expect": list(patterns)}


def regex_rec(pattern: str, on: str = "name") -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "regex", "on": on, "value": base(rp) if on == "name" else rp, "expect": pattern}


def ext_rec(*exts: str) -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "extension", "value": ext_of(rp), "expect": sorted(exts)}


def size_rec(**expect: float) -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "size", "value": len(SIZES[rp]), "expect": expect}


def format_rec(*formats: str) -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "format", "value": FORMATS[rp][1], "expect": sorted(formats)}


NAME_CASES = [
    case("name-glob", "names", '{name: "*.jpg"}',
         {"IMG_0001.JPG", "img_0002.jpg", "sub/photo.jpg"}, name_rec("*.jpg")),
    case("name-list", "names", '{name: ["*_draft*", README]}',
         {"report_draft_v2.pdf", "README"}, name_rec("*_draft*", "README")),
    case("name-question-marks", "names", '{name: "img_????.*"}',
         {"IMG_0001.JPG", "img_0002.jpg"}, name_rec("img_????.*")),
    case("name-char-class", "names", '{name: "[st]*.ti?"}',
         {"sub/deep/scan.tif", "top.TIF"}, name_rec("[st]*.ti?")),
    case("regex-search", "names", "{regex: draft}",
         {"report_draft_v2.pdf"}, regex_rec("draft")),
    case("regex-case-sensitive", "names", r"{regex: '^IMG_\d{4}\.'}",
         {"IMG_0001.JPG"}, regex_rec(r"^IMG_\d{4}\.")),
    case("regex-ignore-case", "names", r"{regex: {pattern: '^img_\d{4}\.', ignore_case: true}}",
         {"IMG_0001.JPG", "img_0002.jpg"}, regex_rec(r"^img_\d{4}\.")),
    case("regex-on-name-by-default", "names", "{regex: ^photo}",
         {"photo.jpeg", "sub/photo.jpg"}, regex_rec("^photo")),
    case("regex-on-relpath", "names", r"{regex: {pattern: '^sub/.*\.(jpg|tif)$', on: relpath}}",
         {"sub/photo.jpg", "sub/deep/scan.tif"}, regex_rec(r"^sub/.*\.(jpg|tif)$", "relpath")),
    case("extension-list", "names", "{extension: [jpg, TIF]}",
         {"IMG_0001.JPG", "img_0002.jpg", "sub/photo.jpg", "sub/deep/scan.tif", "top.TIF"}, ext_rec("jpg", "tif")),
    case("extension-is-the-last-one", "names", "{extension: gz}",
         {"archive.tar.gz"}, ext_rec("gz")),
    case("extension-with-dot", "names", "{extension: .jpeg}",
         {"photo.jpeg"}, ext_rec("jpeg")),
    case("path-one-level", "names", '{path: "sub/*"}',
         {"sub/photo.jpg"}, path_rec("sub/*")),
    case("path-any-depth", "names", '{path: "**/*.tif"}',
         {"sub/deep/scan.tif", "top.TIF"}, path_rec("**/*.tif")),
    case("path-below", "names", '{path: "sub/**"}',
         {"sub/photo.jpg", "sub/deep/scan.tif"}, path_rec("sub/**")),
    case("path-case-insensitive", "names", '{path: "SUB/Deep/*"}',
         {"sub/deep/scan.tif"}, path_rec("SUB/Deep/*")),
]

SIZE_CASES = [
    case("size-gt-1KB", "sizes", "{size: {gt: 1KB}}", {"1001.bin", "1024.bin", "1025.bin"}, size_rec(gt=1000)),
    case("size-ge-1KB", "sizes", "{size: {ge: 1KB}}",
         {"1000.bin", "1001.bin", "1024.bin", "1025.bin"}, size_rec(ge=1000)),
    case("size-lt-1KB", "sizes", "{size: {lt: 1KB}}", {"0.bin", "999.bin"}, size_rec(lt=1000)),
    case("size-le-1KiB", "sizes", "{size: {le: 1KiB}}",
         {"0.bin", "999.bin", "1000.bin", "1001.bin", "1024.bin"}, size_rec(le=1024)),
    case("size-eq-1KiB", "sizes", "{size: {eq: 1KiB}}", {"1024.bin"}, size_rec(eq=1024)),
    case("size-range-in-bytes", "sizes", "{size: {gt: 1000, lt: 1025}}",
         {"1001.bin", "1024.bin"}, size_rec(gt=1000, lt=1025)),
    case("size-empty", "sizes", "{size: {eq: 0}}", {"0.bin"}, size_rec(eq=0)),
]


def age_rec(**expect: float) -> Callable[[str], dict[str, Any]]:
    return lambda rp: {"if": "age", "expect": expect}  # the value is checked approximately


AGE_CASES = [
    case("age-gt-30d", "ages", "{age: {gt: 30d}}", {"40d.log"}, age_rec(gt=30 * DAY)),
    case("age-gt-1w", "ages", "{age: {gt: 1w}}", {"40d.log", "10d.log"}, age_rec(gt=7 * DAY)),
    case("age-lt-1d", "ages", "{age: {lt: 1d}}", {"2h.log", "fresh.log"}, age_rec(lt=DAY)),
    case("age-between", "ages", "{age: {ge: 1h, lt: 2d}}", {"2h.log"}, age_rec(ge=3600, lt=2 * DAY)),
    case("age-gt-90m", "ages", "{age: {gt: 90m}}", {"40d.log", "10d.log", "2h.log"}, age_rec(gt=5400)),
]

FORMAT_CASES = [
    case(f"format-{fmt}", "formats", f"{{format: {fmt}}}",
         {name for name, (_, sniffed) in FORMATS.items() if sniffed == fmt}, format_rec(fmt))
    for fmt in ("jpeg", "png", "tiff", "gif", "webp", "psd", "pdf", "zip", "xml", "text", "unknown")
] + [
    case("format-any-image", "formats", "{format: [jpeg, png, tiff, gif, webp, psd]}",
         {"photo.txt", "image.pdf", "scan-le.jpg", "scan-be.dat", "anim.png", "pic.gif", "layers.png"},
         format_rec("jpeg", "png", "tiff", "gif", "webp", "psd")),
]

CASES = NAME_CASES + SIZE_CASES + AGE_CASES + FORMAT_CASES

# Nested logic, in a rule file of its own. Read it as: "a JPEG or PNG that is neither a draft nor in
# trash/, or any PDF of at least 1 KB wherever it is".
LOGIC_RULES = """
rules:
  - name: logic-nested
    on: [{hotfolder: logic}]
    if:
      any:
        - all:
            - format: [jpeg, png]
            - not:
                any:
                  - name: "*_draft*"
                  - path: "trash/**"
        - all:
            - extension: pdf
            - size: {ge: 1KB}
    do:
      - store: {to: "{output}/logic-nested/{relpath}"}

  - name: logic-list-is-all
    on: [{hotfolder: logic}]
    if:
      - path: "trash/**"
      - extension: pdf
    do:
      - store: {to: "{output}/logic-list-is-all/{relpath}"}
"""
LOGIC_MATCHES = {
    "logic-nested": {"a.jpg", "c.png", "big.pdf", "trash/big.pdf"},
    "logic-list-is-all": {"trash/big.pdf"},
}

# No `on:`: it is considered in every hot folder of its tenant and decides by the hot folder itself.
HOTFOLDER_RULE = """
  - name: hotfolder-sizes-or-ages
    if: {hotfolder: [sizes, ages]}
    do:
      - store: {to: "{output}/hotfolder-sizes-or-ages/{hotfolder}/{relpath}"}
"""


def rules_yaml() -> str:
    out = ["rules:", HOTFOLDER_RULE.strip("\n")]
    for param in CASES:
        c: Case = param.values[0]
        out.append(textwrap.indent(textwrap.dedent(f"""\
            - name: {c.rule}
              on: [{{hotfolder: {c.folder}}}]
              if: {c.condition}
              do:
                - store: {{to: "{{output}}/{c.rule}/{{relpath}}"}}
            """), "  "))
    return "\n".join(out) + "\n"


def rules_of(folder: str) -> list[str]:
    """The rules considered in a hot folder, in file order (rule files load sorted by name)."""
    own = [p.values[0].rule for p in CASES if p.values[0].folder == folder]
    if folder == "logic":
        own = list(LOGIC_MATCHES)
    return ["hotfolder-sizes-or-ages", *own]


def expected_matches(folder: str) -> dict[str, set[str]]:
    out = {p.values[0].rule: set(p.values[0].matches) for p in CASES if p.values[0].folder == folder}
    if folder == "logic":
        out = {k: set(v) for k, v in LOGIC_MATCHES.items()}
    out["hotfolder-sizes-or-ages"] = set(FILES[folder]) if folder in ("sizes", "ages") else set()
    return out


# -- one daemon for the module ---------------------------------------------------------------------
@dataclass
class Run:
    site: Site
    lake: dict[str, bytes]
    left: dict[str, dict[str, bytes]]  # what is still in each hot folder
    traces: dict[tuple[str, str], dict[str, Any]]  # (hot folder, relpath) -> latest trace
    dropped_at: float


def drop_aged(site: Site, folder: str, relpath: str, data: bytes, age: float) -> None:
    """Write a file whose mtime lies `age` seconds in the past, then rename it into the hot folder."""
    path = site.hot(folder) / relpath
    tmp = path.parent / f".{path.name}.part"
    tmp.write_bytes(data)
    then = time.time() - age
    os.utime(tmp, (then, then))
    os.rename(tmp, path)


def db_traces(site: Site) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest trace of every job: the same rows `flowd trace --json` prints, read in one query
    (one CLI call per file would cost more than the whole run)."""
    conn = sqlite3.connect(f"file:{site.root / 'var/flowd.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT j.hotfolder, j.relpath, j.state, t.body FROM traces t "
                            "JOIN jobs j ON j.id = t.job_id ORDER BY t.id").fetchall()
    finally:
        conn.close()
    return {(hf, rp): {"hotfolder": hf, "relpath": rp, "state": state, **json.loads(body)}
            for hf, rp, state, body in rows}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    site = Site(tmp_path_factory.mktemp("conditions"))
    site.configure(hotfolders=[{"name": name} for name in FILES])
    site.rules(rules_yaml(), "conditions.yaml")
    site.rules(LOGIC_RULES, "logic.yaml")
    try:
        site.start()
        dropped_at = time.time()
        for folder, files in FILES.items():
            for relpath, data in files.items():
                if folder == "ages":
                    drop_aged(site, folder, relpath, data, AGES[relpath])
                else:
                    site.drop(relpath, data, folder=folder)
        site.settled(sum(len(files) for files in FILES.values()), timeout=30)
        yield Run(site, tree(site.lake), {name: tree(site.hot(name)) for name in FILES}, db_traces(site),
                  dropped_at)
        assert site.stop() == 0
    finally:
        site.kill()
        if site.notify is not None:
            site.notify.close()


def matched_in_lake(run: Run, rule: str) -> dict[str, bytes]:
    prefix = f"assets/{rule}/"
    return {k.removeprefix(prefix): v for k, v in run.lake.items() if k.startswith(prefix)}


def rule_trace(run: Run, folder: str, relpath: str, rule: str) -> dict[str, Any]:
    trace = run.traces[(folder, relpath)]
    found = [r for r in trace["rules"] if r["rule"] == rule]
    assert len(found) == 1, f"rule {rule} not considered exactly once for {folder}/{relpath}: {trace}"
    return found[0]


# -- the tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CASES)
def test_condition_routes_exactly_the_matching_files(run: Run, c: Case) -> None:
    stored = matched_in_lake(run, c.rule)
    assert set(stored) == c.matches
    for relpath, data in stored.items():
        assert data == FILES[c.folder][relpath], f"{c.rule} stored other bytes for {relpath}"


@pytest.mark.parametrize("c", [p for p in CASES if p.values[0].folder != "ages"])
def test_trace_records_each_conditions_value_and_result(run: Run, c: Case) -> None:
    for relpath in FILES[c.folder]:
        matched = relpath in c.matches
        rt = rule_trace(run, c.folder, relpath, c.rule)
        assert rt["matched"] is matched, relpath
        assert rt["conditions"] == [{**c.record(relpath), "result": matched}], relpath
        if matched:
            assert rt["actions"][0]["target"] == f"lake:assets/{c.rule}/{relpath}"
        else:
            assert "actions" not in rt


@pytest.mark.parametrize("c", AGE_CASES)
def test_age_is_seconds_since_mtime_in_the_trace(run: Run, c: Case) -> None:
    for relpath, age in AGES.items():
        matched = relpath in c.matches
        rt = rule_trace(run, "ages", relpath, c.rule)
        [record] = rt["conditions"]
        assert rt["matched"] is matched
        assert {k: v for k, v in record.items() if k != "value"} == {**c.record(relpath), "result": matched}
        # Age is measured at detection; allow for a slow, busy machine.
        assert age - 5 <= record["value"] <= age + (time.time() - run.dropped_at) + 5, (relpath, record)


def test_size_units_are_si_and_iec(run: Run) -> None:
    """1KB is 1000 bytes, 1KiB is 1024: a 1001..1024 byte file is above one and not above the other."""
    above_kb = set(matched_in_lake(run, "size-gt-1KB"))
    at_most_kib = set(matched_in_lake(run, "size-le-1KiB"))
    assert above_kb & at_most_kib == {"1001.bin", "1024.bin"}


def test_format_is_sniffed_from_bytes_not_the_extension(run: Run) -> None:
    assert set(matched_in_lake(run, "format-jpeg")) == {"photo.txt"}
    assert "photo.txt" not in matched_in_lake(run, "format-text")
    assert set(matched_in_lake(run, "format-pdf")) == {"doc.jpg"}
    assert "image.pdf" in matched_in_lake(run, "format-png")
    trace = run.traces[("formats", "photo.txt")]
    values = {r["rule"]: r["conditions"][0]["value"] for r in trace["rules"] if r["rule"].startswith("format-")}
    assert set(values.values()) == {"jpeg"}, "every format rule sees the same sniffed value"


def test_nested_all_any_not_route_and_trace(run: Run) -> None:
    assert set(matched_in_lake(run, "logic-nested")) == LOGIC_MATCHES["logic-nested"]
    assert set(matched_in_lake(run, "logic-list-is-all")) == LOGIC_MATCHES["logic-list-is-all"]

    # A draft JPEG: the first branch fails inside not(any(...)); `all` stops at its first false
    # condition and `any` at its first true one, so unevaluated conditions are not in the trace.
    rt = rule_trace(run, "logic", "a_draft.jpg", "logic-nested")
    assert rt["matched"] is False
    assert rt["conditions"] == [{"if": "any", "result": False, "of": [
        {"if": "all", "result": False, "of": [
            {"if": "format", "value": "jpeg", "expect": ["jpeg", "png"], "result": True},
            {"if": "not", "result": False, "of": [
                {"if": "any", "result": True, "of": [
                    {"if": "name", "value": "a_draft.jpg", "expect": ["*_draft*"], "result": True},
                ]},
            ]},
        ]},
        {"if": "all", "result": False, "of": [
            {"if": "extension", "value": "jpg", "expect": ["pdf"], "result": False},
        ]},
    ]}]

    rt = rule_trace(run, "logic", "trash/b.jpg", "logic-nested")
    inner_any = rt["conditions"][0]["of"][0]["of"][1]["of"][0]
    assert inner_any == {"if": "any", "result": True, "of": [
        {"if": "name", "value": "b.jpg", "expect": ["*_draft*"], "result": False},
        {"if": "path", "value": "trash/b.jpg", "expect": ["trash/**"], "result": True},
    ]}

    rt = rule_trace(run, "logic", "trash/big.pdf", "logic-nested")
    assert rt["matched"] is True
    assert rt["conditions"] == [{"if": "any", "result": True, "of": [
        {"if": "all", "result": False, "of": [
            {"if": "format", "value": "pdf", "expect": ["jpeg", "png"], "result": False},
        ]},
        {"if": "all", "result": True, "of": [
            {"if": "extension", "value": "pdf", "expect": ["pdf"], "result": True},
            {"if": "size", "value": len(LOGIC["trash/big.pdf"]), "expect": {"ge": 1000}, "result": True},
        ]},
    ]}]

    # A list under `if:` is an implicit `all`.
    rt = rule_trace(run, "logic", "big.pdf", "logic-list-is-all")
    assert rt["matched"] is False
    assert rt["conditions"] == [{"if": "all", "result": False, "of": [
        {"if": "path", "value": "big.pdf", "expect": ["trash/**"], "result": False},
    ]}]


def test_hotfolder_condition(run: Run) -> None:
    stored = set(matched_in_lake(run, "hotfolder-sizes-or-ages"))
    assert stored == {f"sizes/{n}" for n in SIZES} | {f"ages/{n}" for n in AGES}
    for folder, files in FILES.items():
        for relpath in files:
            rt = rule_trace(run, folder, relpath, "hotfolder-sizes-or-ages")
            inside = folder in ("sizes", "ages")
            assert rt["conditions"] == [{"if": "hotfolder", "value": folder, "expect": ["ages", "sizes"],
                                         "result": inside}]


@pytest.mark.parametrize("folder", list(FILES))
def test_each_file_is_decided_once_with_every_rule_of_its_folder(run: Run, folder: str) -> None:
    expected = expected_matches(folder)
    for relpath in FILES[folder]:
        trace = run.traces[(folder, relpath)]
        # `on:` limits a rule to its hot folders; a rule without `on:` is considered everywhere.
        assert [r["rule"] for r in trace["rules"]] == rules_of(folder), relpath
        hits = {rule for rule, files in expected.items() if relpath in files}
        assert {r["rule"] for r in trace["rules"] if r["matched"]} == hits, relpath
        assert trace["status"] == ("finished" if hits else "unmatched"), relpath
        assert trace["fate"] == ("delete" if hits else "keep"), relpath
    # after = "delete" removes matched sources; unmatched = "leave" keeps the rest where they were.
    unmatched = {rp for rp in FILES[folder] if not any(rp in files for files in expected.values())}
    assert set(run.left[folder]) == unmatched


def test_cli_trace_shows_the_same_record(run: Run) -> None:
    [shown] = run.site.traces("report_draft_v2.pdf")
    mine = run.traces[("names", "report_draft_v2.pdf")]
    assert {key: shown.get(key) for key in mine} == mine
    text = run.site.cli("trace", "report_draft_v2.pdf").stdout
    assert "rule name-list" in text and "matched" in text
    assert "yes name = 'report_draft_v2.pdf'  expected ['*_draft*', 'README']" in text
