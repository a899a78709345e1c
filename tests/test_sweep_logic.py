"""Sweep logic without a daemon: the cheap-condition prefilter, `keep_newest`, and how `flowd check` reports
a broken `over:` or schedule.

The prefilter is three-valued: True or False when names, sizes and times settle a rule, None when it needs
the file's bytes (format, metadata, pixels). An entry is dropped from a sweep only on False, so `any` and
`not` never lose a file the full rule would have matched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import TWO_TENANT_SITE

from flowd.asset import Asset
from flowd.condition import Condition
from flowd.config import HotFolder
from flowd.context import RunContext
from flowd.errors import ConfigError
from flowd.rules import parse_rule_file
from flowd.sweep import Listed, Tally, beyond_newest, prefilter

PY = sys.executable
NOW = datetime(2026, 5, 17, 12, 0, tzinfo=UTC)
DAY = 86400
HOTFOLDERS = {"inbox": HotFolder(name="inbox", path="hot/inbox"),
              "scans": HotFolder(name="scans", path="hot/scans")}


def condition(yaml_if: str) -> Condition | None:
    """The compiled `if:` of a one-rule file, as flowd's own parser builds it."""
    text = textwrap.dedent(f"""\
        rules:
          - name: r
            if: {yaml_if}
            do:
              - delete: {{}}
        """)
    errors: list[ConfigError] = []
    rules = parse_rule_file(text.encode(), "r.yaml", HOTFOLDERS, {}, errors)
    assert not errors, [e.message for e in errors]
    assert len(rules) == 1
    return rules[0].condition


def asset(relpath: str = "photos/IMG_0001.jpg", size: int = 5000, age: float = 0.0,
          hotfolder: str = "inbox") -> Asset:
    """An entry of a listing; its bytes do not exist, so a condition that reads them would raise."""
    mtime_ns = int((NOW.timestamp() - age) * 1e9)
    return Asset(0, "default", hotfolder, Path("/nonexistent/sweep-root"), relpath, size, mtime_ns, NOW, None,
                 relpath.rsplit("/", 1)[-1])


def ctx() -> RunContext:
    def no_posting(*_args: object) -> int:
        raise AssertionError("a prefilter never posts")

    return RunContext(now=NOW, storages={}, simulate=True, post_json=no_posting,
                      seen_content=lambda _rule, _sha: None)


def verdict(yaml_if: str, a: Asset) -> bool | None:
    return prefilter(condition(yaml_if), a, ctx())


# -- prefilter: cheap conditions settle it ---------------------------------------------------------------

def test_no_condition_passes_everything() -> None:
    assert prefilter(None, asset(), ctx()) is True


@pytest.mark.parametrize(("cond", "relpath", "expected"), [
    ('{name: "*.jpg"}', "photos/IMG_0001.JPG", True),  # globs are case-insensitive
    ('{name: "*.jpg"}', "photos/IMG_0001.tif", False),
    ("{extension: [tif, tiff]}", "scan.TIF", True),
    ("{extension: [tif, tiff]}", "scan.tif.bak", False),
    ("{regex: '^IMG_\\d{4}'}", "sub/IMG_0042.jpg", True),
    ("{regex: '^IMG_\\d{4}'}", "sub/img_0042.jpg", False),
    ('{path: "trash/**"}', "trash/a/b.jpg", True),
    ('{path: "trash/**"}', "keep/b.jpg", False),
])
def test_name_conditions(cond: str, relpath: str, expected: bool) -> None:
    assert verdict(cond, asset(relpath)) is expected


@pytest.mark.parametrize(("age_days", "expected"), [(31, True), (30.5, True), (29, False), (0, False)])
def test_age_is_measured_from_the_contexts_now(age_days: float, expected: bool) -> None:
    assert verdict("{age: {gt: 30d}}", asset(age=age_days * DAY)) is expected


def test_age_follows_now_not_the_wall_clock() -> None:
    # The same file, judged a year later: old enough.
    cond = condition("{age: {gt: 30d}}")
    a = asset(age=DAY)
    assert prefilter(cond, a, ctx()) is False
    later = RunContext(now=NOW + timedelta(days=365), storages={}, simulate=True, post_json=ctx().post_json,
                       seen_content=lambda _r, _s: None)
    assert prefilter(cond, a, later) is True


@pytest.mark.parametrize(("size", "expected"), [(999, False), (1000, False), (1001, True), (10**9, True)])
def test_size(size: int, expected: bool) -> None:
    assert verdict("{size: {gt: 1KB}}", asset(size=size)) is expected


def test_hotfolder_condition() -> None:
    assert verdict("{hotfolder: inbox}", asset(hotfolder="inbox")) is True
    assert verdict("{hotfolder: inbox}", asset(hotfolder="scans")) is False


def test_a_list_is_all_of_its_items() -> None:
    cond = '[{age: {gt: 30d}}, {name: ["*.jpg", "*.tif"]}]'
    assert verdict(cond, asset("a.jpg", age=40 * DAY)) is True
    assert verdict(cond, asset("a.png", age=40 * DAY)) is False
    assert verdict(cond, asset("a.jpg", age=1 * DAY)) is False


# -- prefilter: three values ------------------------------------------------------------------------------

def test_a_condition_that_reads_the_file_is_undecided() -> None:
    # format sniffs the bytes: the prefilter must not read them (they do not exist here) and says None.
    assert verdict("{format: jpeg}", asset("a.jpg")) is None


def test_any_of_a_cheap_false_and_a_format_is_undecided_never_dropped() -> None:
    assert verdict("{any: [{extension: tif}, {format: jpeg}]}", asset("a.jpg")) is None


def test_any_with_a_cheap_true_is_true() -> None:
    assert verdict("{any: [{format: jpeg}, {extension: jpg}]}", asset("a.jpg")) is True


def test_all_of_a_cheap_false_and_a_format_is_false() -> None:
    assert verdict("{all: [{format: jpeg}, {extension: tif}]}", asset("a.jpg")) is False
    assert verdict("{all: [{extension: tif}, {format: jpeg}]}", asset("a.jpg")) is False


def test_all_of_a_cheap_true_and_a_format_is_undecided() -> None:
    assert verdict("{all: [{extension: jpg}, {format: jpeg}]}", asset("a.jpg")) is None


def test_not() -> None:
    assert verdict("{not: {format: jpeg}}", asset("a.jpg")) is None
    assert verdict('{not: {name: "*_draft*"}}', asset("a_draft.jpg")) is False
    assert verdict('{not: {name: "*_draft*"}}', asset("a.jpg")) is True


def test_nested_logic() -> None:
    # "an old JPEG that is not a draft, or any PDF whose format we would have to sniff"
    cond = ('{any: [{all: [{age: {gt: 30d}}, {extension: jpg}, {not: {name: "*_draft*"}}]},'
            ' {all: [{extension: pdf}, {format: pdf}]}]}')
    assert verdict(cond, asset("old.jpg", age=40 * DAY)) is True
    assert verdict(cond, asset("old_draft.jpg", age=40 * DAY)) is False
    assert verdict(cond, asset("new.jpg", age=DAY)) is False
    assert verdict(cond, asset("doc.pdf", age=DAY)) is None
    assert verdict(cond, asset("doc.png", age=DAY)) is False


# -- keep_newest --------------------------------------------------------------------------------------------

def entries_of(items: list[tuple[str, int]]) -> tuple[list[int], Callable[[], Iterator[Listed]]]:
    """A listing factory over (relpath, mtime_ns), counting how often it is listed."""
    calls = [0]

    def factory() -> Iterator[Listed]:
        calls[0] += 1
        for relpath, mtime in items:
            yield Listed(relpath, relpath, 1, mtime)

    return calls, factory


def test_keep_3_of_10_yields_the_7_oldest() -> None:
    items = [(f"f{i:02d}", 1000 + i) for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)]  # listing order is not time order
    calls, factory = entries_of(items)
    tally = Tally()
    out = list(beyond_newest(factory, 3, tally))
    assert sorted(e.relpath for e in out) == [f"f{i:02d}" for i in range(7)]
    assert [e.relpath for e in out] == [r for r, m in items if m < 1007]  # in listing order, streamed
    assert tally.passed == {"among the newest 3": 3}
    assert tally.seen == 3  # the kept ones; the yielded ones are counted by whoever consumes them
    assert calls[0] == 2  # two passes over the listing


def test_ties_in_mtime_are_broken_by_relpath() -> None:
    items = [("c.jpg", 5), ("a.jpg", 5), ("d.jpg", 5), ("b.jpg", 5), ("old.jpg", 1)]
    for order in (items, list(reversed(items))):
        calls, factory = entries_of(order)
        out = {e.relpath for e in beyond_newest(factory, 2, Tally())}
        # Newest by (mtime, relpath): d.jpg and c.jpg stay, whatever order the listing gives.
        assert out == {"old.jpg", "a.jpg", "b.jpg"}


def test_keep_more_than_there_are_yields_nothing() -> None:
    calls, factory = entries_of([(f"f{i}", i) for i in range(4)])
    tally = Tally()
    assert list(beyond_newest(factory, 10, tally)) == []
    assert tally.passed == {"among the newest 10": 4}
    assert tally.seen == 4
    assert calls[0] == 1  # nothing to sweep: no second listing


def test_keep_exactly_as_many_as_there_are_yields_nothing() -> None:
    calls, factory = entries_of([(f"f{i}", i) for i in range(4)])
    tally = Tally()
    assert list(beyond_newest(factory, 4, tally)) == []
    assert tally.passed == {"among the newest 4": 4}


def test_keep_0_yields_everything_in_one_pass() -> None:
    items = [(f"f{i}", i) for i in range(5)]
    calls, factory = entries_of(items)
    tally = Tally()
    assert [e.relpath for e in beyond_newest(factory, 0, tally)] == [r for r, _ in items]
    assert tally.passed == {}
    assert calls[0] == 1


def test_keep_newest_on_a_large_listing() -> None:
    n, keep = 20_000, 1_500
    # Pseudo-random but deterministic mtimes with many ties.
    items = [(f"d{i % 37}/f{i:05d}", (i * 7919) % 5000) for i in range(n)]
    calls, factory = entries_of(items)
    tally = Tally()
    out = list(beyond_newest(factory, keep, tally))
    ranked = sorted(items, key=lambda it: (it[1], it[0]))
    assert sorted(e.relpath for e in out) == sorted(r for r, _ in ranked[:n - keep])
    assert tally.passed == {f"among the newest {keep:,}": keep}


# -- flowd check: over: and schedules in rule files ----------------------------------------------------------

SITE_TOML = TWO_TENANT_SITE


def check(tmp_path: Path, rules: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "flowd.toml").write_text(SITE_TOML)
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "sweep.yaml").write_text(textwrap.dedent(rules))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWD_")}
    return subprocess.run([PY, "-m", "flowd", "check", "-c", "flowd.toml"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=60)


BAD_SWEEPS = [
    ("over-two-kinds", """\
        rules:
          - name: purge
            on: [{schedule: {every: 1h}}]
            over: {folder: "data/old", hotfolder: inbox}
            do:
              - delete: {}
        """, 4, ["rules.0.over", "exactly one of folder, hotfolder, storage"]),
    ("over-folder-overlaps-another-tenants-hotfolder", """\
        rules:
          - name: purge
            on: [{schedule: {every: 1h}}]
            if: [{age: {gt: 30d}}]
            over: {folder: "hot/acme/sub"}
            do:
              - delete: {}
        """, 5, ["rules.0.over.folder", "overlaps hot folder 'acme-in' of another tenant ('acme')", "hot/acme/sub"]),
    ("over-folder-contains-another-tenants-hotfolder", """\
        rules:
          - name: purge
            over: {folder: "hot"}
            do:
              - delete: {}
        """, 3, ["rules.0.over.folder", "overlaps hot folder 'acme-in'", "'hot'"]),
    ("over-storage-unknown", """\
        rules:
          - name: purge
            on: [{schedule: {every: 1h}}]
            over:
              storage: "nope:archive/"
            do:
              - delete: {}
        """, 5, ["rules.0.over.storage", "no storage named 'nope'", "nope:archive/", "lake"]),
    ("over-storage-of-another-tenant", """\
        rules:
          - name: purge
            over: {storage: "vault:acme/"}
            do:
              - delete: {}
        """, 3, ["rules.0.over.storage", "not open to tenant 'default'", "vault:acme/"]),
    ("over-hotfolder-unknown", """\
        rules:
          - name: purge
            over: {hotfolder: outbox}
            do:
              - delete: {}
        """, 3, ["rules.0.over.hotfolder", "no hot folder of tenant 'default'", "outbox", "inbox"]),
    ("over-hotfolder-of-another-tenant", """\
        rules:
          - name: purge
            over: {hotfolder: acme-in}
            do:
              - delete: {}
        """, 3, ["rules.0.over.hotfolder", "no hot folder of tenant 'default'", "acme-in"]),
    ("keep-newest-negative", """\
        rules:
          - name: purge
            on: [{schedule: {every: 1h}}]
            over:
              storage: "lake:archive/"
              keep_newest: -5
            do:
              - delete: {}
        """, 6, ["rules.0.over.keep_newest", "whole number", "-5"]),
    ("schedule-mixed-with-hotfolder-trigger", """\
        rules:
          - name: purge
            on:
              - {schedule: {every: 1h}}
              - {hotfolder: inbox}
            over: {hotfolder: inbox}
            do:
              - delete: {}
        """, 5, ["rules.0.on.1", "its triggers are schedules", "inbox"]),
    ("schedule-bad-cron", """\
        rules:
          - name: purge
            on:
              - schedule: {cron: "0 25 * * *", timezone: "Europe/Oslo"}
            over: {hotfolder: inbox}
            do:
              - delete: {}
        """, 4, ["rules.0.on.0.schedule", "cron:", "25", "0 25 * * *"]),
    ("schedule-bad-timezone", """\
        rules:
          - name: purge
            on: [{schedule: {cron: "0 3 * * *", timezone: "Mars/Base"}}]
            over: {hotfolder: inbox}
            do:
              - delete: {}
        """, 3, ["rules.0.on.0.schedule", "timezone", "Mars/Base"]),
]


@pytest.mark.parametrize(("rules", "line", "says"), [(r, n, s) for _, r, n, s in BAD_SWEEPS],
                         ids=[i for i, _, _, _ in BAD_SWEEPS])
def test_flowd_check_names_file_line_field_and_value(tmp_path: Path, rules: str, line: int,
                                                      says: list[str]) -> None:
    result = check(tmp_path, rules)
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{err}"
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines[-1] == "1 error", err
    message = lines[0]
    assert message.startswith(f"rules/sweep.yaml:{line}: "), message
    for text in says:
        assert text in message, f"{text!r} not in {message!r}"


def test_flowd_check_accepts_valid_sweep_rules(tmp_path: Path) -> None:
    result = check(tmp_path, """\
        rules:
          - name: purge-originals
            on: [{schedule: {cron: "0 3 * * *", timezone: "Europe/Oslo"}}]
            over: {folder: "data/originals", recursive: true, remove_empty_folders: true}
            if:
              - age: {gt: 30d}
              - name: ["*.jpg", "*.tif"]
            do:
              - delete: {}
          - name: keep-newest
            on: [{schedule: {every: 1h}}, {schedule: {cron: "15 * * * *"}}]
            over: {storage: "lake:archive/", keep_newest: 5000}
            do:
              - delete: {}
          - name: inbox-by-hand
            over: {hotfolder: inbox, keep_newest: 0}
            if: {any: [{extension: tmp}, {format: unknown}]}
            do:
              - delete: {}
        """)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "Traceback" not in result.stderr
