"""Every metadata/image condition test and routing placeholder, checked through `flowd simulate` (the
engine the daemon runs, in-process and writing nothing) on real images tagged by exiftool."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from imagegen import cmyk_jpeg, exiftool, gray_jpeg, rgb_jpeg, tiff16

from flowd.cli import main

# On a developer machine a missing tool skips these tests; in CI (where .ci/run installs it) it fails them.
CI = bool(os.environ.get("CI"))
pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None and not CI, reason="exiftool (libimage-exiftool-perl) missing")

CONFIG = """\
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


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small library: tagged RGB JPEGs, a CMYK JPEG, a gray JPEG and a 16-bit TIFF."""
    root = tmp_path_factory.mktemp("pictures") / "hot" / "inbox"
    root.mkdir(parents=True)
    out = {
        "SPO_match.jpg": rgb_jpeg(root / "SPO_match.jpg", 400, 300),
        "plain.jpg": rgb_jpeg(root / "plain.jpg", 64, 48, icc=False),
        "cmyk.jpg": cmyk_jpeg(root / "cmyk.jpg", 200, 100),
        "gray.jpg": gray_jpeg(root / "gray.jpg", 50, 40),
        "deep.tif": tiff16(root / "deep.tif", 80, 60),
    }
    exiftool(out["SPO_match.jpg"], "-codedcharacterset=utf8", "-IPTC:Caption-Abstract=Goal in Bærum",
             "-IPTC:By-line=Kari Nordmann", "-IPTC:Category=SPO", "-IPTC:Keywords=football", "-IPTC:Keywords=Final",
             "-IPTC:Urgency=2", "-IPTC:DateCreated=2025:03:04", "-IPTC:TimeCreated=18:30:00+01:00",
             "-XMP-photoshop:Credit=NTB", "-IPTC:Source=The Associated Press", "-EXIF:Orientation#=6")
    exiftool(out["plain.jpg"], "-IPTC:Headline=Plain")
    return out


def simulate(root: Path, rules: str, name: str) -> dict[str, Any]:
    site = root.parent.parent
    (site / "flowd.toml").write_text(CONFIG)
    (site / "rules").mkdir(exist_ok=True)
    (site / "rules" / "r.yaml").write_text(textwrap.dedent(rules))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["simulate", "--json", str(root / name), "-c", str(site / "flowd.toml")])
    assert code == 0, err.getvalue()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def matched(pictures: dict[str, Path], condition: str, name: str = "SPO_match.jpg") -> bool:
    root = pictures[name].parent
    trace = simulate(root, f"""
        rules:
          - name: probe
            if: {condition}
            do: [{{store: {{to: "{{output}}/{{name}}"}}}}]
    """, name)
    return bool(trace["rules"][0]["matched"])


@pytest.mark.parametrize("condition, expected", [
    ("{field: {caption: {not_empty: true}}}", True),
    ("{field: {116: {is_empty: true}}}", True),
    ("{field: {headline: {is_empty: false}}}", False),
    ("{field: {byline: {equals: kari nordmann}}}", True),
    ("{field: {byline: {equals: Kari}}}", False),
    ("{field: {source: {contains: associated press}}}", True),
    ("{field: {caption: {starts_with: GOAL}}}", True),
    ("{field: {caption: {contains: Bærum}}}", True),
    ("{field: {category: {in: [SPO, POL]}}}", True),
    ("{field: {keywords: {in: [final]}}}", True),
    ("{field: {keywords: {matches: '^foot'}}}", True),
    ("{field: {urgency: {lt: 3}}}", True),
    ("{field: {urgency: {gt: 3}}}", False),
    ("{field: {date_created: {before: 2025-03-05}}}", True),
    ("{field: {date_created: {after: 2025-03-05}}}", False),
    ("{field: {55: {before: 1d}}}", True),
    ("{field: {photoshop:Credit: {equals: ntb}}}", True),
    ("{field: {110: {equals: ntb}, 115: {contains: reuters}}}", False),
    ("{required_fields: [caption, byline]}", True),
    ("{required_fields: [120, 80, 105]}", False),
    ("{image: {width: 400, height: {lt: 301}, color: rgb, bits: 8}}", True),
    ("{image: {megapixels: {gt: 0.1}}}", True),
    ("{image: {orientation: 6}}", True),
    ("{image: {has_icc: true}}", True),
    ("{image: {color: [cmyk, gray]}}", False),
])
def test_condition_on_a_tagged_photo(pictures: dict[str, Path], condition: str, expected: bool) -> None:
    assert matched(pictures, condition) is expected


@pytest.mark.parametrize("name, condition", [
    ("cmyk.jpg", "{image: {color: cmyk}}"),
    ("gray.jpg", "{image: {color: gray, has_icc: false}}"),
    ("deep.tif", "{image: {bits: 16, color: rgb}}"),
    ("plain.jpg", "{image: {has_icc: false}}"),
    ("plain.jpg", "{not: {required_fields: [caption]}}"),
])
def test_image_facts_of_other_files(pictures: dict[str, Path], name: str, condition: str) -> None:
    assert matched(pictures, condition, name)


def rendered(pictures: dict[str, Path], template: str, name: str = "SPO_match.jpg", maps: str = "") -> str:
    root = pictures[name].parent
    trace = simulate(root, f"""
        {maps}
        rules:
          - name: probe
            do: [{{store: {{to: "{{output}}/{template}"}}}}]
    """, name)
    target: str = trace["rules"][0]["actions"][0]["target"]
    return target.removeprefix("lake:assets").removeprefix("/")


def test_placeholders_for_routing(pictures: dict[str, Path]) -> None:
    src = pictures["SPO_match.jpg"]
    mtime = datetime.fromtimestamp(src.stat().st_mtime)
    assert rendered(pictures, "{meta.120}") == "Goal in Bærum"
    assert rendered(pictures, "{meta.caption|upper}") == "GOAL IN BÆRUM"
    assert rendered(pictures, "{meta.photoshop:Credit|lower}") == "ntb"
    assert rendered(pictures, "{meta.keywords}") == "football, Final"
    assert rendered(pictures, "{meta.55:%Y/%m/%d}") == "2025/03/04"
    assert rendered(pictures, "{date:metadata:%Y-%m-%d %H%M}") == "2025-03-04 1830"
    assert rendered(pictures, "{date:file:%Y%m%d}") == f"{mtime:%Y%m%d}"
    today = datetime.now()
    assert rendered(pictures, "{date:system:%Y}") in (f"{today:%Y}", f"{today + timedelta(minutes=1):%Y}")
    assert rendered(pictures, "{weekday:metadata}") == "Tuesday"   # 4 March 2025
    assert rendered(pictures, "{day:metadata}") == "04"
    assert rendered(pictures, "{weekday:file}") == mtime.strftime("%A")
    assert rendered(pictures, "{width}x{height}-{color}") == "400x300-rgb"
    assert rendered(pictures, "{prefix:_}/{unprefixed:_}") == "SPO/match.jpg"
    assert rendered(pictures, "{prefix:2}") == "SP"
    assert rendered(pictures, "{prefix:_}", "plain.jpg") == "", "no separator: no prefix"
    desks = 'maps: {desks: {SPO: Sport, POL: Politics, "*": "Other-{value}"}}'
    assert rendered(pictures, "{meta.category|map:desks}/{name}", maps=desks) == "Sport/SPO_match.jpg"
    assert rendered(pictures, "{meta.category|map:desks}/{name}", "plain.jpg", maps=desks) == "Other-/plain.jpg"
    assert rendered(pictures, "{prefix:_|map:desks}", maps=desks) == "Sport"


def test_a_value_missing_from_a_map_without_default_quarantines(pictures: dict[str, Path]) -> None:
    root = pictures["plain.jpg"].parent
    trace = simulate(root, """
        maps: {desks: {SPO: Sport}}
        rules:
          - name: probe
            do: [{store: {to: "{output}/{meta.category|map:desks}/{name}"}}]
    """, "plain.jpg")
    assert trace["status"] == "quarantined"
    assert "map 'desks' has no entry for ''" in trace["error"]["reason"]


def test_simulate_runs_metadata_and_pixel_actions_on_copies(pictures: dict[str, Path]) -> None:
    src = pictures["cmyk.jpg"]
    before = src.read_bytes()
    trace = simulate(src.parent, """
        rules:
          - name: web
            do:
              - set_metadata: [{field: headline, value: "{width}px"}]
              - convert: {color: {to: srgb}, resize: {fit: [100, 100]}, format: {type: png}}
              - store: {to: "{output}/{meta.headline}/{width}x{height}-{color}/{name}"}
    """, "cmyk.jpg")
    assert trace["status"] == "finished", trace
    assert trace["rules"][0]["actions"][2]["target"] == "lake:assets/200px/100x50-rgb/cmyk.png"
    assert src.read_bytes() == before, "simulate never changes the source"
    assert not (src.parent.parent.parent / "lake").exists(), "and writes no output"


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(pictures: dict[str, Path]) -> None:
    trace = simulate(pictures["SPO_match.jpg"].parent, """
        rules:
          - name: web
            do:
              - convert: {resize: {fit: [100, 100]}, max_input_megapixels: 0.1}
              - store: {to: "{output}/{name}"}
    """, "SPO_match.jpg")
    assert trace["status"] == "quarantined"
    assert trace["error"]["reason"] == ("the image is 400 x 300 (0.1 megapixels), over this rule's limit of 0.1 "
                                        "(convert: max_input_megapixels)")
