"""Color Factory's file naming in flowd's rules: `rename`'s chars, windows_safe, max_length and cut, and
`store`/`move`'s keep_mtime ("copy file date") and digits (counter digits of `conflict: increment`).

Renames run through `flowd simulate` on real files (the rule parsed as `flowd check` parses it, the step record
as traces show it); keep_mtime and digits write real files, through the storage and through the daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import textwrap
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from actions_support import QuickSite, actions_of, drop_in_turn, quick_site, trace_of
from conftest import JPEG, PNG, TWO_TENANT_SITE, Site, tree
from loguru import logger

from flowd.actions.rename import map_chars, shorten, windows_safe
from flowd.cli import main as cli_main
from flowd.storage.base import Conflict, incremented
from flowd.storage.local import LocalStorage

SITE = """\
[flowd]
data_dir = "var"
database_url = "sqlite:///var/flowd.db"
rules = ["rules/*.yaml"]

[storage.lake]
kind = "local"
root = "lake"

[[hotfolders]]
name = "inbox"
path = "hot/inbox"
output = "lake:assets"
"""

OLD = 1_234_567_890_123_456_789  # 2009-02-13, to the nanosecond: far from any time a test runs at


def main(argv: list[str]) -> int:
    """flowd's CLI in-process; loguru goes back to the real stderr afterwards (it points at capsys's)."""
    try:
        return cli_main(argv)
    finally:
        logger.remove()
        logger.add(sys.__stderr__, level="WARNING")


def simulate(root: Path, rules: str, name: str, data: bytes = JPEG) -> dict[str, Any]:
    """`flowd simulate --json` of one file dropped as `name`, under these rules."""
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "flowd.toml").write_text(SITE)
    (root / "rules" / "r.yaml").write_text(textwrap.dedent(rules))
    path = root / "hot" / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["simulate", "--json", str(path), "-c", str(root / "flowd.toml")])
    assert code == 0, err.getvalue()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def renamed(root: Path, options: str, name: str) -> str:
    """The name `rename: {options}` gives a file called `name` (the step record, and what a store then uses)."""
    trace = simulate(root, f"""
        rules:
          - name: r
            do:
              - rename: {options}
              - store: {{to: "lake:out/{{name}}"}}
    """, name)
    rename, store = actions_of(trace, "r")
    assert rename["action"] == "rename"
    assert store["target"] == f"lake:out/{rename['name']}"
    assert not (root / "lake").exists(), "simulate writes nothing"
    result: str = rename["name"]
    return result


# -- rename: chars ---------------------------------------------------------------------------------------
def test_chars_maps_each_character_once(tmp_path: Path) -> None:
    assert renamed(tmp_path, '{chars: {" ": "_", "å": "aa", "Å": "AA"}}', "Åsa på tur.jpg") == "AAsa_paa_tur.jpg"
    # One pass: a replacement is never mapped again ("a" -> "b" does not turn the "b" from "å" into "c").
    assert map_chars("åab", {"å": "b", "b": "c", "a": ""}) == "bc"


def test_chars_maps_to_nothing_and_works_on_the_rendered_template(tmp_path: Path) -> None:
    assert renamed(tmp_path, '{to: "{stem} (web){ext}", chars: {"(": "", ")": "", " ": "-"}}',
                   "a b.jpg") == "a-b-web.jpg"


def test_a_key_matches_the_decomposed_spelling_macos_uses(tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "på.jpg")
    assert len(nfd) == 7
    assert renamed(tmp_path, '{chars: {"å": "aa"}}', nfd) == "paa.jpg"
    # A decomposed key is the same one character as its composed form.
    key = unicodedata.normalize("NFD", "å")
    assert renamed(tmp_path / "b", '{chars: {"' + key + '": "aa"}}', "på.jpg") == "paa.jpg"


# -- rename: windows_safe --------------------------------------------------------------------------------
def test_windows_safe_replaces_what_windows_refuses(tmp_path: Path) -> None:
    assert renamed(tmp_path, "{windows_safe: true}", 'a<b>:c?.jpg') == "a_b__c_.jpg"
    assert renamed(tmp_path, "{windows_safe: true}", 'x"y|z*\\w\x01\x1f.jpg') == "x_y_z__w__.jpg"
    assert windows_safe("a/b") == "a_b"


def test_windows_safe_replaces_trailing_dots_and_spaces(tmp_path: Path) -> None:
    assert renamed(tmp_path, "{windows_safe: true}", "report..") == "report__"
    assert renamed(tmp_path, "{windows_safe: true}", "report. .") == "report___"
    assert renamed(tmp_path, "{windows_safe: true}", "a. b.jpg") == "a. b.jpg", "only trailing ones"


def test_without_windows_safe_the_names_stay(tmp_path: Path) -> None:
    assert renamed(tmp_path, "{}", "a<b>:c?.jpg") == "a<b>:c?.jpg"
    assert renamed(tmp_path, "{to: '{stem}-1{ext}'}", "a:b.jpg") == "a:b-1.jpg"


# -- rename: max_length ----------------------------------------------------------------------------------
def test_max_length_shortens_the_stem_and_keeps_the_extension(tmp_path: Path) -> None:
    name = "a-very-long-file-name-from-a-camera-1234.jpeg"
    assert renamed(tmp_path, "{max_length: 31}", name) == "a-very-long-file-name-from.jpeg"
    assert renamed(tmp_path, "{max_length: 31, cut: right}", name) == "a-very-long-file-name-from.jpeg"
    assert renamed(tmp_path, "{max_length: 31, cut: left}", name) == "le-name-from-a-camera-1234.jpeg"
    assert len("a-very-long-file-name-from.jpeg") == 31
    assert renamed(tmp_path, "{max_length: 31}", "short.jpg") == "short.jpg"
    assert renamed(tmp_path, "{max_length: 9}", "exactly.j") == "exactly.j"
    assert renamed(tmp_path, "{max_length: 4}", "noextension") == "noex"
    assert renamed(tmp_path, "{max_length: 4, cut: left}", "noextension") == "sion"


def test_an_extension_as_long_as_the_limit_cuts_the_whole_name(tmp_path: Path) -> None:
    assert renamed(tmp_path, "{max_length: 4}", "photo.jpeg") == "phot"
    assert renamed(tmp_path, "{max_length: 5}", "photo.jpeg") == "photo"
    assert renamed(tmp_path, "{max_length: 6}", "photo.jpeg") == "p.jpeg"
    assert renamed(tmp_path, "{max_length: 3, cut: left}", "photo.jpeg") == "peg"
    assert renamed(tmp_path, "{max_length: 1}", "photo.jpeg") == "p"


def test_max_length_counts_characters_and_never_splits_an_accent(tmp_path: Path) -> None:
    name = "Ærø café naïve.jpg"
    assert renamed(tmp_path, "{max_length: 10}", name) == "Ærø ca.jpg"
    assert renamed(tmp_path, "{max_length: 10, cut: left}", name) == " naïve.jpg"
    # Decomposed (macOS): e + combining acute is one letter; a cut takes both or neither.
    assert shorten(unicodedata.normalize("NFD", "café.jpg"), 8) == "caf.jpg"
    assert shorten(unicodedata.normalize("NFD", "étude.jpg"), 8, left=True) == "tude.jpg"
    assert shorten("日本語の写真ファイル.jpg", 7) == "日本語.jpg"
    # A whole name of accents is cut by characters rather than emptied.
    assert shorten("e\u0301e\u0301.jpg", 5) == "e.jpg"


def test_max_length_255_multibyte_still_fails_the_byte_limit(tmp_path: Path) -> None:
    """max_length counts characters; the 255-byte limit of file names still applies after it."""
    trace = simulate(tmp_path, """
        rules:
          - name: r
            do:
              - rename: {to: "{stem}%s{ext}", max_length: 200}
    """.replace("%s", "ø" * 150), "a.jpg")
    assert trace["status"] == "quarantined"
    assert "more than 255 bytes" in json.dumps(trace, ensure_ascii=False)


# -- rename: order and defaults --------------------------------------------------------------------------
def test_order_is_template_then_chars_then_windows_safe_then_max_length(tmp_path: Path) -> None:
    # chars first: its "?" -> "!" wins over windows_safe's "_"; ":" is left to windows_safe.
    options = '{to: "{stem}_x:y?{ext}", chars: {"?": "!", " ": "_"}, windows_safe: true, max_length: 12}'
    assert renamed(tmp_path, options, "my pic.jpg") == "my_pic_x.jpg"
    assert renamed(tmp_path, options.replace("12", "20"), "my pic.jpg") == "my_pic_x_y!.jpg"
    # chars may create what windows_safe then replaces ...
    assert renamed(tmp_path, '{chars: {"+": "*"}, windows_safe: true}', "a+b.jpg") == "a_b.jpg"
    # ... and max_length measures the mapped name (å -> aa makes it longer).
    assert renamed(tmp_path, '{chars: {"å": "aa"}, max_length: 8}', "ååå.jpg") == "aaaa.jpg"


def test_a_cut_that_ends_in_a_dot_stays_windows_safe(tmp_path: Path) -> None:
    assert renamed(tmp_path, "{max_length: 3}", "ab.tiff") == "ab."
    assert renamed(tmp_path, "{max_length: 3, windows_safe: true}", "ab.tiff") == "ab_"


def test_to_defaults_to_the_name(tmp_path: Path) -> None:
    assert renamed(tmp_path, "{max_length: 8}", "abcdefghij.png") == "abcd.png"
    assert renamed(tmp_path, "{}", "same.png") == "same.png"


def test_a_map_that_empties_the_name_is_refused(tmp_path: Path) -> None:
    trace = simulate(tmp_path, """
        rules:
          - name: r
            do:
              - rename: {to: "{stem}", chars: {"a": ""}}
    """, "aaa.jpg")
    assert trace["status"] == "quarantined"
    assert "not a plain file name" in json.dumps(trace)


# -- errors: `flowd check` names the line ----------------------------------------------------------------
def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          rules: str) -> str:
    (tmp_path / "flowd.toml").write_text(TWO_TENANT_SITE)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yaml").write_text(textwrap.dedent(rules))
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FLOWD_")]:
        monkeypatch.delenv(name)
    code = main(["check", "-c", "flowd.toml"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert code == 1, f"exit {code}\n{out}\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == "1 error" and len(lines) == 2, err
    return lines[0]


ERRORS = [
    ("chars-key-two-characters", """\
        rules:
          - name: r
            do:
              - rename:
                  to: "{name}"
                  chars:
                    " ": "_"
                    "ae": "æ"
        """, 8, "rules.0.do.0.rename.chars.ae", "exactly one character", "got 'ae'"),
    ("chars-key-empty", """\
        rules:
          - name: r
            do:
              - rename: {chars: {"": "_"}}
        """, 4, "rules.0.do.0.rename.chars", "exactly one character"),
    ("chars-value-not-text", """\
        rules:
          - name: r
            do:
              - rename:
                  chars: {" ": null}
        """, 5, "rules.0.do.0.rename.chars", "string"),
    ("max-length-zero", """\
        rules:
          - name: r
            do:
              - rename:
                  to: "{name}"
                  max_length: 0
        """, 6, "rules.0.do.0.rename.max_length", "greater than or equal to 1", "got 0"),
    ("max-length-too-long", """\
        rules:
          - name: r
            do:
              - rename: {max_length: 256}
        """, 4, "rules.0.do.0.rename.max_length", "less than or equal to 255", "got 256"),
    ("cut-middle", """\
        rules:
          - name: r
            do:
              - rename:
                  max_length: 31
                  cut: middle
        """, 6, "rules.0.do.0.rename.cut", "not one of the allowed values", "got 'middle'", "'right'", "'left'"),
    ("cut-without-max-length", """\
        rules:
          - name: r
            do:
              - rename:
                  cut: left
        """, 5, "rules.0.do.0.rename.cut", "no max_length", "got 'left'"),
    ("rename-unknown-option", """\
        rules:
          - name: r
            do:
              - rename: {max_lenght: 31}
        """, 4, "rules.0.do.0.rename.max_lenght", "unknown key", "max_length"),
    ("digits-with-conflict-fail", """\
        rules:
          - name: r
            do:
              - store:
                  to: "lake:a/{name}"
                  conflict: fail
                  digits: 3
        """, 7, "rules.0.do.0.store.digits", "conflict: increment", "'fail'", "got 3"),
    ("digits-with-the-default-conflict", """\
        rules:
          - name: r
            do:
              - move:
                  to: "lake:a/{name}"
                  digits: 3
        """, 6, "rules.0.do.0.move.digits", "conflict: increment", "'fail'"),
    ("digits-ten", """\
        rules:
          - name: r
            do:
              - store: {to: "lake:a/{name}", conflict: increment, digits: 10}
        """, 4, "rules.0.do.0.store.digits", "less than or equal to 9", "got 10"),
    ("keep-mtime-not-a-bool", """\
        rules:
          - name: r
            do:
              - store:
                  to: "lake:a/{name}"
                  keep_mtime: sometimes
        """, 6, "rules.0.do.0.store.keep_mtime", "boolean", "got 'sometimes'"),
]


@pytest.mark.parametrize("rules, line, says", [e[1:3] + (e[3:],) for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_naming_options_name_their_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], rules: str, line: int,
                                            says: tuple[str, ...]) -> None:
    message = check(tmp_path, monkeypatch, capsys, rules)
    assert message.startswith(f"rules/bad.yaml:{line}: "), message
    for text in says:
        assert text in message, f"{text!r} not in {message!r}"


def test_the_options_pass_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flowd.toml").write_text(TWO_TENANT_SITE)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ok.yaml").write_text(textwrap.dedent("""\
        rules:
          - name: r
            do:
              - rename: {chars: {" ": "_", "å": "aa", "?": ""}, windows_safe: true, max_length: 31, cut: left}
              - rename: {max_length: 31}
              - store: {to: "lake:a/{name}", conflict: increment, digits: 3, keep_mtime: true}
              - move: {to: "lake:b/{name}", keep_mtime: false}
        """))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "-c", "flowd.toml"]) == 0, capsys.readouterr().err


# -- digits ----------------------------------------------------------------------------------------------
def test_incremented_pads_to_the_digits() -> None:
    assert incremented("a/b/photo.jpg", 1) == "a/b/photo_1.jpg"
    assert incremented("a/b/photo.jpg", 1, digits=3) == "a/b/photo_001.jpg"
    assert incremented("photo.jpg", 42, 3) == "photo_042.jpg"
    assert incremented("photo", 7, 2) == "photo_07"
    assert incremented("photo.jpg", 1234, 3) == "photo_1234.jpg", "a counter past its digits keeps them all"


def test_local_storage_increments_with_digits(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    keys = []
    for n, data in enumerate([b"one", b"two", b"three"]):
        src = tmp_path / f"src{n}"
        src.write_bytes(data)
        assert lake.plan("x/a.jpg", Conflict.INCREMENT, _sha(data), digits=3).key == \
            ["x/a.jpg", "x/a_001.jpg", "x/a_002.jpg"][n]
        keys.append(lake.put_file("x/a.jpg", src, conflict=Conflict.INCREMENT, token=f"t{n}", sha256=_sha(data),
                                  digits=3).key)
    assert keys == ["x/a.jpg", "x/a_001.jpg", "x/a_002.jpg"]
    assert tree(tmp_path / "lake") == {"x/a.jpg": b"one", "x/a_001.jpg": b"two", "x/a_002.jpg": b"three"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[QuickSite]:
    yield from quick_site(tmp_path)


def test_digits_through_the_daemon_and_the_sidecar_follows(site: Site) -> None:
    site.rules("""
        rules:
          - name: numbered
            do:
              - store: {to: "{output}/photos/{name}", conflict: increment, digits: 3}
    """)
    site.start()
    drop_in_turn(site, [("one/a.jpg", JPEG), ("two/a.jpg", PNG), ("three/a.jpg", JPEG + b"3")])
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG, "assets/photos/a_001.jpg": PNG,
                               "assets/photos/a_002.jpg": JPEG + b"3"}
    [store] = actions_of(trace_of(site, "three/a.jpg"), "numbered")
    assert store["target"] == "lake:assets/photos/a_002.jpg" and store["conflict"] == "increment"


def test_simulate_plans_the_padded_name(tmp_path: Path) -> None:
    (tmp_path / "lake" / "assets").mkdir(parents=True)
    (tmp_path / "lake" / "assets" / "a.jpg").write_bytes(b"taken")
    (tmp_path / "lake" / "assets" / "a_01.jpg").write_bytes(b"taken")
    trace = simulate(tmp_path, """
        rules:
          - name: r
            do:
              - store: {to: "{output}/{name}", conflict: increment, digits: 2}
    """, "a.jpg")
    [store] = actions_of(trace, "r")
    assert store["target"] == "lake:assets/a_02.jpg"


# -- keep_mtime: the storage -----------------------------------------------------------------------------
def _sha(data: bytes) -> Callable[[], str]:
    digest = hashlib.sha256(data).hexdigest()
    return lambda: digest


def _old_file(path: Path, data: bytes, mtime_ns: int = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_keep_mtime_on_a_copied_write(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    src = _old_file(tmp_path / "src.jpg", JPEG)
    for conflict in (Conflict.FAIL, Conflict.OVERWRITE):
        key = f"{conflict.value}/a.jpg"
        put = lake.put_file(key, src, conflict=conflict, token=f"t-{conflict.value}", sha256=_sha(JPEG),
                            mtime_ns=OLD)
        assert put.outcome == "written" and not put.linked
        assert (tmp_path / "lake" / key).stat().st_mtime_ns == OLD
    without = lake.put_file("plain/a.jpg", src, conflict=Conflict.FAIL, token="t-plain", sha256=_sha(JPEG))
    assert (tmp_path / "lake" / without.key).stat().st_mtime_ns != OLD, "only when asked"
    assert sorted(tree(tmp_path / "lake")) == ["fail/a.jpg", "overwrite/a.jpg", "plain/a.jpg"], "no temp files left"


def test_keep_mtime_on_a_linked_write_and_the_source_keeps_its_time(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    src = _old_file(tmp_path / "src.jpg", JPEG)
    put = lake.put_file("a.jpg", src, conflict=Conflict.FAIL, token="t1", sha256=_sha(JPEG), may_link=True,
                        mtime_ns=OLD)
    assert put.linked and put.outcome == "written"
    out = tmp_path / "lake" / "a.jpg"
    assert out.stat().st_ino == src.stat().st_ino and out.stat().st_mtime_ns == OLD
    # A source whose time is not the one asked for (changed since it was seen) is copied, never re-dated:
    # re-dating it would also hide the change from the fate's same-file check.
    src2 = _old_file(tmp_path / "src2.jpg", PNG, OLD + 5_000_000_000)
    put = lake.put_file("b.jpg", src2, conflict=Conflict.FAIL, token="t2", sha256=_sha(PNG), may_link=True,
                        mtime_ns=OLD)
    assert not put.linked
    assert (tmp_path / "lake" / "b.jpg").stat().st_mtime_ns == OLD
    assert src2.stat().st_mtime_ns == OLD + 5_000_000_000 and src2.stat().st_nlink == 1


def test_keep_mtime_with_increment_linked_and_copied(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    _old_file(tmp_path / "lake" / "a.jpg", b"someone else's", OLD + 1)
    src = _old_file(tmp_path / "linked.jpg", JPEG)
    put = lake.put_file("a.jpg", src, conflict=Conflict.INCREMENT, token="t1", sha256=_sha(JPEG), may_link=True,
                        mtime_ns=OLD, digits=3)
    assert put.key == "a_001.jpg" and put.linked
    copy = _old_file(tmp_path / "copied.jpg", PNG)
    put = lake.put_file("a.jpg", copy, conflict=Conflict.INCREMENT, token="t2", sha256=_sha(PNG), mtime_ns=OLD)
    assert put.key == "a_1.jpg" and not put.linked
    root = tmp_path / "lake"
    assert [(root / k).stat().st_mtime_ns for k in ("a.jpg", "a_001.jpg", "a_1.jpg")] == [OLD + 1, OLD, OLD]


def test_keep_mtime_leaves_a_skipped_target_alone(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    there = _old_file(tmp_path / "lake" / "a.jpg", JPEG, OLD + 7)
    src = _old_file(tmp_path / "src.jpg", JPEG)
    put = lake.put_file("a.jpg", src, conflict=Conflict.SKIP_IDENTICAL, token="t1", sha256=_sha(JPEG),
                        mtime_ns=OLD)
    assert put.outcome == "skipped"
    assert there.stat().st_mtime_ns == OLD + 7
    assert sorted(tree(tmp_path / "lake")) == ["a.jpg"]


def test_a_retry_recognises_its_own_write(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    src = _old_file(tmp_path / "src.jpg", JPEG)
    first = lake.put_file("a.jpg", src, conflict=Conflict.FAIL, token="t1", sha256=_sha(JPEG), mtime_ns=OLD)
    again = lake.put_file("a.jpg", src, conflict=Conflict.FAIL, token="t1", sha256=_sha(JPEG), mtime_ns=OLD)
    assert (first.outcome, again.outcome) == ("written", "already")
    assert (tmp_path / "lake" / "a.jpg").stat().st_mtime_ns == OLD


def test_unsharing_a_linked_output_keeps_its_time(tmp_path: Path) -> None:
    lake = LocalStorage("lake", tmp_path / "lake", fsync=False)
    src = _old_file(tmp_path / "src.jpg", JPEG)
    assert lake.put_file("a.jpg", src, conflict=Conflict.FAIL, token="t1", sha256=_sha(JPEG), may_link=True,
                         mtime_ns=OLD).linked
    lake.unshare("a.jpg")
    out = tmp_path / "lake" / "a.jpg"
    assert out.stat().st_ino != src.stat().st_ino and out.stat().st_mtime_ns == OLD


# -- keep_mtime: through the daemon ----------------------------------------------------------------------
def drop_old(site: Site, relpath: str, data: bytes, mtime_ns: int = OLD) -> Path:
    """Drop a file whose modification time is long past (set before it appears under its name)."""
    path = site.hot() / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.part"
    _old_file(tmp, data, mtime_ns)
    os.rename(tmp, path)
    return path


def test_store_keep_mtime_copies_the_source_time(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: dated
            do:
              - store: {to: "{output}/dated/{name}", keep_mtime: true}
              - store: {to: "{output}/dated/{name}", keep_mtime: true, conflict: increment, digits: 3}
              - store: {to: "{output}/now/{name}"}
    """)
    site.start()
    drop_old(site, "a.jpg", JPEG)
    site.settled(1)
    lake = site.lake / "assets"
    assert sorted(tree(lake)) == ["dated/a.jpg", "dated/a_001.jpg", "now/a.jpg"]
    assert (lake / "dated/a.jpg").stat().st_mtime_ns == OLD
    assert (lake / "dated/a_001.jpg").stat().st_mtime_ns == OLD
    assert (lake / "now/a.jpg").stat().st_mtime_ns != OLD
    assert (lake / "dated/a.jpg").stat().st_ino != (site.hot() / "a.jpg").stat().st_ino, "after=keep: copied"
    first, second, plain = actions_of(trace_of(site, "a.jpg"), "dated")
    assert first["keep_mtime"] is True and second["keep_mtime"] is True and "keep_mtime" not in plain
    assert second["target"] == "lake:assets/dated/a_001.jpg"


def test_move_keep_mtime_links_and_the_output_keeps_the_time(site: Site) -> None:
    site.configure(hotfolders=[{"after": "keep"}])
    site.rules("""
        rules:
          - name: filed
            do:
              - move: {to: "{output}/filed/{name}", keep_mtime: true}
    """)
    site.start()
    source = drop_old(site, "a.jpg", JPEG)
    inode = source.stat().st_ino
    site.settled(1)
    out = site.lake / "assets/filed/a.jpg"
    assert not source.exists()
    assert out.stat().st_ino == inode, "the move linked the source's inode, not a copy"
    assert out.stat().st_mtime_ns == OLD and out.read_bytes() == JPEG


def test_keep_mtime_after_a_rewrite_still_dates_the_output_as_its_source(site: Site, tmp_path: Path) -> None:
    from imagegen import rgb_jpeg

    picture = rgb_jpeg(tmp_path / "made.jpg", 32, 24, icc=False).read_bytes()
    site.rules("""
        rules:
          - name: stripped
            do:
              - set_metadata: [{field: 116, value: "(c) Test"}]
              - store: {to: "{output}/dated/{name}", keep_mtime: true}
              - store: {to: "{output}/plain/{name}"}
              - store: {to: "{output}/again/{name}", keep_mtime: true}
    """)
    site.start()
    drop_old(site, "a.jpg", picture)
    site.settled(1)
    lake = site.lake / "assets"
    # The rewritten bytes are private: the first output links them, dated; the others are copies.
    assert (lake / "dated/a.jpg").stat().st_mtime_ns == OLD
    assert (lake / "plain/a.jpg").stat().st_mtime_ns != OLD
    assert (lake / "again/a.jpg").stat().st_mtime_ns == OLD
    assert len({(lake / d / "a.jpg").read_bytes() for d in ("dated", "plain", "again")} | {picture}) == 2


def test_simulate_records_keep_mtime_and_writes_nothing(tmp_path: Path) -> None:
    trace = simulate(tmp_path, """
        rules:
          - name: r
            do:
              - store: {to: "{output}/{name}", keep_mtime: true}
              - move: {to: "{output}/m/{name}", keep_mtime: true, conflict: increment, digits: 4}
              - store: {to: "{output}/p/{name}"}
    """, "a.jpg")
    store, move, plain = actions_of(trace, "r")
    assert store["keep_mtime"] is True and move["keep_mtime"] is True and "keep_mtime" not in plain
    assert store["target"] == "lake:assets/a.jpg" and move["target"] == "lake:assets/m/a.jpg"
    assert not (tmp_path / "lake").exists()


# -- keep_mtime and digits on ADLS (Azurite) -------------------------------------------------------------
def test_iso_mtime_is_utc_to_the_microsecond() -> None:
    from flowd.storage.adls import iso_mtime

    assert iso_mtime(OLD) == "2009-02-13T23:31:30.123456Z"
    assert iso_mtime(0) == "1970-01-01T00:00:00.000000Z"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import azurite as emulator

    if not emulator.available():
        if os.environ.get("CI"):
            pytest.fail(f"{emulator.AZURITE} is missing: run `npm ci` (make test does)")
        pytest.skip(f"Azurite is not installed ({emulator.AZURITE} missing)")
    with emulator.running(tmp_path_factory.mktemp("azurite")) as running:
        yield running


def test_adls_keeps_the_time_in_metadata_and_pads_the_counter(azurite: Any, tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    from flowd.storage.adls import AdlsStorage, client_options

    options = client_options(8 * 1024 * 1024, retries=1, backoff=0.1)
    client = BlobServiceClient.from_connection_string(azurite.connection_string, **options)
    lake = AdlsStorage("lake", client)
    box = f"t-{uuid.uuid4().hex[:12]}"
    src = _old_file(tmp_path / "a.jpg", JPEG)
    keys = [lake.put_file(f"{box}/x/a.jpg", src, conflict=Conflict.INCREMENT, token=f"t{n}", sha256=_sha(JPEG),
                          info={"flowd_rule": "r"}, mtime_ns=OLD if n else None, digits=3).key for n in range(3)]
    assert keys == [f"{box}/x/a.jpg", f"{box}/x/a_001.jpg", f"{box}/x/a_002.jpg"]
    assert lake.plan(f"{box}/x/a.jpg", Conflict.INCREMENT, _sha(JPEG), digits=3).key == f"{box}/x/a_003.jpg"
    meta = dict(client.get_blob_client(box, "x/a_001.jpg").get_blob_properties().metadata)
    assert unquote(meta["flowd_mtime"]) == "2009-02-13T23:31:30.123456Z" and meta["flowd_rule"] == "r"
    assert "flowd_mtime" not in client.get_blob_client(box, "x/a.jpg").get_blob_properties().metadata
