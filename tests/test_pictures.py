"""Metadata and pixels through the real daemon: real images (generated), metadata written and read back by
exiftool (an independent tool), libvips conversions, truncated and corrupt files.

Each test drops files into a hot folder of a running flowd and checks what a user would look at: the
output files (with exiftool and libvips), the errors folder and its notes, and the run traces.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from actions_support import QuickSite, error_notes, quick_site, trace_of
from conftest import wait_for
from imagegen import cmyk_jpeg, exiftool, gray_jpeg, read_tags, rgb_jpeg, scramble_scan, tiff16, truncate

# On a developer machine a missing tool skips these tests; in CI (where .ci/run installs it) it fails them.
CI = bool(os.environ.get("CI"))
pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None and not CI, reason="exiftool (libimage-exiftool-perl) missing")

EXAMPLES = Path(__file__).resolve().parent.parent / "rules" / "examples"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[QuickSite]:
    yield from quick_site(tmp_path)  # type: ignore[misc]


def outputs(site: QuickSite) -> dict[str, Path]:
    root = site.lake
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def tags(path: Path) -> dict[str, Any]:
    return read_tags(path)


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def tagged_jpeg(path: Path, *args: str, **size: int) -> Path:
    rgb_jpeg(path, size.get("width", 320), size.get("height", 240))
    if args:
        exiftool(path, "-codedcharacterset=utf8", *args)
    return path


# -- set_metadata: the macro model, both IPTC and XMP, read back by exiftool ----------------------------
def test_macro_writes_iptc_and_xmp_in_step_with_conditions(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        rules:
          - name: ap-wire
            if:
              - format: [jpeg, tiff]
              - field: {source: {contains: associated press}}
            do:
              - set_metadata:
                  - {field: 116, action: replace, value: "(c) Example Media %%INSDATE", if: {field: {116: {is_empty: true}}}}
                  - {field: credit, action: replace, value: AP}
                  - {field: keywords, action: append, value: wire}
                  - {field: caption, action: replace_substring, find: "Oslo", value: "Ærøskøbing – café ©"}
                  - {field: headline, action: clear}
              - store: {to: "{output}/{name}"}
            stop: true
          - name: others
            do:
              - store: {to: "{output}/others/{name}"}
    """)
    site.start()
    src = tmp_path / "src"
    src.mkdir()
    site.drop("empty.jpg", tagged_jpeg(src / "a.jpg", "-IPTC:Source=Associated Press", "-XMP-photoshop:Source=Associated Press",
                                       "-IPTC:Keywords=news", "-IPTC:Keywords=oslo", "-XMP-dc:Subject=news",
                                       "-XMP-dc:Subject=oslo", "-IPTC:Caption-Abstract=Rain in Oslo",
                                       "-XMP-dc:Description=Rain in Oslo", "-IPTC:Headline=Old",
                                       "-XMP-photoshop:Headline=Old").read_bytes())
    site.drop("owned.jpg", tagged_jpeg(src / "b.jpg", "-IPTC:Source=ASSOCIATED PRESS",
                                       "-IPTC:CopyrightNotice=(c) Someone Else",
                                       "-XMP-dc:Rights=(c) Someone Else").read_bytes())
    site.drop("reuters.jpg", tagged_jpeg(src / "c.jpg", "-IPTC:Source=Reuters").read_bytes())
    site.settled(3)
    out = outputs(site)
    assert sorted(out) == ["assets/empty.jpg", "assets/others/reuters.jpg", "assets/owned.jpg"]
    today = datetime.now().strftime("%Y%m%d")
    a = tags(out["assets/empty.jpg"])
    assert a["IPTC:CopyrightNotice"] == f"(c) Example Media {today}"
    assert a["XMP-dc:Rights"] == f"(c) Example Media {today}"
    assert a["IPTC:Credit"] == "AP" and a["XMP-photoshop:Credit"] == "AP"
    assert as_list(a["IPTC:Keywords"]) == ["news", "oslo", "wire"]
    assert as_list(a["XMP-dc:Subject"]) == ["news", "oslo", "wire"]
    assert a["IPTC:Caption-Abstract"] == "Rain in Ærøskøbing – café ©"
    assert a["XMP-dc:Description"] == "Rain in Ærøskøbing – café ©"
    assert "IPTC:Headline" not in a and "XMP-photoshop:Headline" not in a
    b = tags(out["assets/owned.jpg"])
    assert b["IPTC:CopyrightNotice"] == "(c) Someone Else", "the `if: is_empty` entry must not overwrite"
    assert b["XMP-dc:Rights"] == "(c) Someone Else"
    assert "IPTC:Credit" not in tags(out["assets/others/reuters.jpg"])
    # The pixels are the same picture: only metadata changed.
    assert (tags(out["assets/empty.jpg"])["File:ImageWidth"], a["File:ImageHeight"]) == (320, 240)
    trace = trace_of(site, "empty.jpg")
    [rule] = [r for r in trace["rules"] if r["rule"] == "ap-wire"]
    assert rule["actions"][0]["action"] == "set_metadata"


def test_dynamic_codes_fill_fields(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        rules:
          - name: codes
            do:
              - set_metadata:
                  - {field: 200, action: replace, value: "%%INSFILENAME"}
                  - {field: 201, action: replace, value: "%%INSPPLx%%INSNOL %%INSCOL"}
                  - {field: 202, action: replace, value: "%%INSDATE+2"}
                  - {field: 187, action: replace, value: "%%INSUID", if: {field: {187: {is_empty: true}}}}
                  - {field: 5, action: replace, value: "{stem} from {hotfolder}"}
              - store: {to: "{output}/{name}"}
    """)
    site.start()
    site.drop("Match_01.jpg", rgb_jpeg(tmp_path / "m.jpg", 300, 200).read_bytes())
    site.settled(1)
    out = outputs(site)["assets/Match_01.jpg"]
    from flowd.metadata.fields import DEFAULT_FIELDS
    from flowd.metadata.model import Metadata

    meta = Metadata.read(out)
    def get(key: int) -> str:
        return meta.text(DEFAULT_FIELDS.resolve(key))
    assert get(200) == "Match_01.jpg"
    assert get(201) == "300x200 RGB"
    from datetime import timedelta
    assert get(202) == (datetime.now() + timedelta(days=2)).strftime("%Y%m%d")
    assert len(get(187)) == 36 and get(187).count("-") == 4
    t = tags(out)
    assert t["IPTC:ObjectName"] == "Match_01 from inbox" and t["XMP-dc:Title"] == "Match_01 from inbox"


# -- conditions and routing placeholders ---------------------------------------------------------------
def test_required_fields_maps_and_metadata_dates_route_files(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        maps:
          desks: {SPO: Sport, POL: Politics, "*": "{value}"}
        rules:
          - name: missing-caption
            if: {not: {required_fields: [caption, byline]}}
            do:
              - store: {to: "{output}/Required text missing/{name}"}
            stop: true
          - name: routed
            do:
              - store: {to: "{output}/{meta.category|map:desks}/{meta.55:%Y/%m/%d}/{prefix:_}/{unprefixed:_}"}
    """)
    site.start()
    src = tmp_path / "src"
    src.mkdir()
    full = ("-IPTC:Caption-Abstract=A goal", "-IPTC:By-line=Kari", "-IPTC:DateCreated=2025:03:04")
    site.drop("SPO_goal.jpg", tagged_jpeg(src / "1.jpg", *full, "-IPTC:Category=SPO").read_bytes())
    site.drop("POL_vote.jpg", tagged_jpeg(src / "2.jpg", *full, "-IPTC:Category=POL").read_bytes())
    site.drop("ECO_rates.jpg", tagged_jpeg(src / "3.jpg", *full, "-IPTC:Category=ECO").read_bytes())
    site.drop("SPO_nocap.jpg", tagged_jpeg(src / "4.jpg", "-IPTC:By-line=Kari").read_bytes())
    site.drop("evil.jpg", tagged_jpeg(src / "5.jpg", *full, "-IPTC:Category=../..").read_bytes())
    site.settled(5)
    out = outputs(site)
    assert "assets/Sport/2025/03/04/SPO/goal.jpg" in out
    assert "assets/Politics/2025/03/04/POL/vote.jpg" in out
    assert "assets/ECO/2025/03/04/ECO/rates.jpg" in out, "an unlisted category goes to a folder of its own name"
    assert "assets/Required text missing/SPO_nocap.jpg" in out
    [evil] = [k for k in out if k.endswith("evil.jpg")]
    assert evil.startswith("assets/") and ".." not in evil.split("/"), "a metadata value never climbs out"
    trace = trace_of(site, "SPO_nocap.jpg")
    [cond] = trace["rules"][0]["conditions"]
    assert cond["if"] == "not"


def test_image_conditions_and_field_tests(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        rules:
          - name: big-cmyk
            if: {image: {color: cmyk, width: {ge: 600}}}
            do: [{store: {to: "{output}/cmyk/{width}x{height}-{color}-{name}"}}]
            stop: true
          - name: deep
            if: {image: {bits: 16}}
            do: [{store: {to: "{output}/deep/{name}"}}]
            stop: true
          - name: urgent
            if: {field: {urgency: {lt: 3}, keywords: {in: [breaking, urgent]}, headline: {matches: "^[A-Z]+ "}}}
            do: [{store: {to: "{output}/urgent/{name}"}}]
            stop: true
          - name: rest
            do: [{store: {to: "{output}/rest/{name}"}}]
    """)
    site.start()
    src = tmp_path / "src"
    src.mkdir()
    site.drop("c.jpg", cmyk_jpeg(src / "c.jpg", 640, 480).read_bytes())
    site.drop("small-c.jpg", cmyk_jpeg(src / "s.jpg", 100, 80).read_bytes())
    site.drop("d.tif", tiff16(src / "d.tif").read_bytes())
    site.drop("u.jpg", tagged_jpeg(src / "u.jpg", "-IPTC:Urgency=1", "-IPTC:Keywords=Breaking",
                                   "-IPTC:Headline=FIRE in town").read_bytes())
    site.drop("n.jpg", tagged_jpeg(src / "n.jpg", "-IPTC:Urgency=5", "-IPTC:Keywords=Breaking",
                                   "-IPTC:Headline=FIRE in town").read_bytes())
    site.drop("g.jpg", gray_jpeg(src / "g.jpg", 50, 40).read_bytes())
    site.settled(6)
    assert sorted(outputs(site)) == ["assets/cmyk/640x480-cmyk-c.jpg", "assets/deep/d.tif", "assets/rest/g.jpg",
                                     "assets/rest/n.jpg", "assets/rest/small-c.jpg", "assets/urgent/u.jpg"]


# -- convert --------------------------------------------------------------------------------------------
def test_convert_cmyk_to_web_jpeg_keeps_iptc_and_xmp(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        rules:
          - name: web
            do:
              - convert:
                  color: {to: srgb}
                  resize: {fit: [256, 256]}
                  sharpen: {amount: 80, radius: 0.8, threshold: 2}
                  format: {type: jpeg_web, quality: 85}
              - store: {to: "{output}/{width}x{height}/{name}"}
    """)
    site.start()
    src = cmyk_jpeg(tmp_path / "c.jpg", 800, 600)
    exiftool(src, "-IPTC:Caption-Abstract=Print scan", "-XMP-dc:Description=Print scan", "-EXIF:Artist=Kari")
    site.drop("scan.tif", src.read_bytes())  # a JPEG named .tif: the output's name follows its real format
    site.settled(1)
    [(key, out)] = outputs(site).items()
    assert key == "assets/256x192/scan.jpg"
    t = tags(out)
    assert (t["File:ImageWidth"], t["File:ImageHeight"]) == (256, 192)
    assert t["File:ColorComponents"] == 3
    assert t["IPTC:Caption-Abstract"] == "Print scan" and t["XMP-dc:Description"] == "Print scan"
    assert "IFD0:Artist" not in t and not any(k.startswith("ICC") for k in t), "jpeg_web drops EXIF and ICC"


def test_convert_modes_skip_leaves_gray_to_other_rules(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        rules:
          - name: print
            do:
              - convert: {color: {to: cmyk, embed: true}, format: {type: tiff}, modes: {gray: skip, rgb: process}}
              - store: {to: "{output}/print/{name}"}
          - name: gray-copy
            if: {image: {color: gray}}
            do: [{store: {to: "{output}/gray/{name}"}}]
    """)
    site.start()
    site.drop("p.jpg", rgb_jpeg(tmp_path / "p.jpg", 120, 90).read_bytes())
    site.drop("g.jpg", gray_jpeg(tmp_path / "g.jpg", 120, 90).read_bytes())
    site.settled(2)
    out = outputs(site)
    assert sorted(out) == ["assets/gray/g.jpg", "assets/print/p.tif"]
    t = tags(out["assets/print/p.tif"])
    assert t["IFD0:PhotometricInterpretation"] == "CMYK" and "ICC-header:ProfileClass" in t
    trace = trace_of(site, "g.jpg")
    [printed] = [r for r in trace["rules"] if r["rule"] == "print"]
    assert "skip" in printed["skipped"]


# -- incomplete and corrupt files ------------------------------------------------------------------------
def test_truncated_upload_waits_then_is_quarantined_as_truncated(site: QuickSite, tmp_path: Path) -> None:
    site.configure(hotfolders=[{"stable_seconds": 0.5}], extra="incomplete_seconds = 3\n")
    site.rules("""
        rules:
          - name: all
            do: [{store: {to: "{output}/{name}"}}]
    """)
    site.start()
    whole = rgb_jpeg(tmp_path / "whole.jpg", 400, 300)
    site.drop("cut.jpg", truncate(whole, 3000, tmp_path / "cut.jpg").read_bytes())
    # A second upload arrives cut short, then is completed in place before the limit: processed as a whole.
    late = site.drop("late.jpg", truncate(whole, 2000, tmp_path / "late-part.jpg").read_bytes())
    wait_for(lambda: "waiting" in site.states(), message="the incomplete files waiting")
    late.write_bytes(whole.read_bytes())
    site.settled(2, timeout=30)
    assert sorted(outputs(site)) == ["assets/late.jpg"]
    assert outputs(site)["assets/late.jpg"].read_bytes() == whole.read_bytes()
    notes = error_notes(site)
    assert list(notes) == ["cut.jpg.error.json"]
    assert "truncated" in notes["cut.jpg.error.json"]["reason"]
    assert "EOI" in notes["cut.jpg.error.json"]["reason"] or "end" in notes["cut.jpg.error.json"]["reason"]


def test_corrupt_image_is_quarantined_with_the_decoders_reason(site: QuickSite, tmp_path: Path) -> None:
    site.rules("""
        rules:
          - name: web
            do:
              - convert: {resize: {fit: [100, 100]}, format: {type: jpeg}}
              - store: {to: "{output}/{name}"}
    """)
    site.start()
    site.drop("bad.jpg", scramble_scan(rgb_jpeg(tmp_path / "ok.jpg", 400, 300), tmp_path / "bad.jpg").read_bytes())
    site.drop("text.jpg", b"\xff\xd8\xff\xe0 not a picture at all \xff\xd9")
    site.settled(2)
    assert outputs(site) == {}
    notes = error_notes(site)
    assert sorted(notes) == ["bad.jpg.error.json", "text.jpg.error.json"]
    for note in notes.values():
        assert note["action"] == "convert" and note["reason"], note


# -- the shipped Color Factory examples ---------------------------------------------------------------------
def _examples_site(tmp_path: Path) -> Path:
    site = tmp_path / "examples"
    shutil.copytree(EXAMPLES, site, ignore=shutil.ignore_patterns("var"))
    config = site / "colorfactory.toml"
    # Short waits for the test; everything else as shipped.
    text = config.read_text().replace("stable_seconds = 10", "stable_seconds = 0.5").replace(
        "stable_seconds = 5", "stable_seconds = 0.5")
    text = text.replace('rules = ["*.yaml"]', 'rules = ["*.yaml"]\nretry_base_seconds = 0.2\nretry_max_seconds = 1')
    config.write_text(text)
    return config


def test_examples_pass_flowd_check(site: QuickSite, tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flowd", "check", "-c", str(EXAMPLES / "colorfactory.toml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_wire_agency_example_behaves_as_documented(site: QuickSite, tmp_path: Path) -> None:
    config = _examples_site(tmp_path)
    ex = QuickSite(config.parent)
    (config.parent / "flowd.toml").write_text(config.read_text())
    try:
        ex.start()
        hot = config.parent / "var" / "in" / "AP-In"
        src = tmp_path / "src"
        src.mkdir()
        full = ("-IPTC:Caption-Abstract=A goal", "-IPTC:By-line=Kari", "-IPTC:DateCreated=2025:03:04",
                "-IPTC:Category=SPO", "-IPTC:Source=The Associated Press")
        big = tagged_jpeg(src / "goal.jpg", *full, width=3000, height=2000)
        nocap = tagged_jpeg(src / "nocap.jpg", "-IPTC:By-line=Kari", width=800, height=600)
        tiny = src / "tiny.jpg"
        tiny.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9")
        for f in (big, nocap, tiny):
            tmp = hot / f".{f.name}.part"
            hot.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(f.read_bytes())
            tmp.rename(hot / f.name)
        (hot / "notes.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n")
        ex.settled(4, timeout=60)
        cf = config.parent / "var" / "cf" / "AP"
        got = sorted(p.relative_to(cf).as_posix() for p in cf.rglob("*") if p.is_file())
        assert got == ["Originals/goal.jpg", "Originals/nocap.jpg", "Print/goal.tif", "Print/nocap.tif",
                       "Web/Required text missing/nocap.jpg", "Web/Sport/2025/03/04/goal.jpg"]
        web = tags(cf / "Web/Sport/2025/03/04/goal.jpg")
        assert max(web["File:ImageWidth"], web["File:ImageHeight"]) == 2048
        assert web["IPTC:Credit"] == "AP" and as_list(web["IPTC:Keywords"])[-1] == "wire"
        assert web["IPTC:CopyrightNotice"].startswith("(c) Example Media ")
        prn = tags(cf / "Print/goal.tif")
        assert prn["File:FileType"] == "TIFF" and prn["IFD0:PhotometricInterpretation"] == "CMYK"
        assert (config.parent / "var" / "cf-global" / "AP-Error" / "tiny.jpg").exists()
        assert (config.parent / "var" / "cf-global" / "UNKNOWN" / "notes.pdf").exists()
        assert not [p for p in hot.iterdir() if p.is_file()], "the input leaves only when every channel is done"
    finally:
        ex.kill()
        if ex.notify is not None:
            ex.notify.close()


def test_newsroom_example_merges_sidecars_and_routes_by_prefix(site: QuickSite, tmp_path: Path) -> None:
    config = _examples_site(tmp_path)
    ex = QuickSite(config.parent)
    (config.parent / "flowd.toml").write_text(config.read_text())
    try:
        ex.start()
        drop = config.parent / "var" / "in" / "Drop"
        (drop / "day1").mkdir(parents=True)
        src = tmp_path / "src"
        src.mkdir()
        pic = tagged_jpeg(src / "p.jpg", width=200, height=100)
        sidecar = src / "p.xmp"
        exiftool(pic, "-XMP-dc:Description=From the sidecar", "-XMP-photoshop:Credit=NTB")
        subprocess_run = __import__("subprocess").run
        subprocess_run(["exiftool", "-q", "-o", str(sidecar), "-tagsfromfile", str(pic), "-xmp:all"], check=True)
        clean = tagged_jpeg(src / "clean.jpg", width=200, height=100)
        (drop / "day1" / "SPO_match.xmp").write_bytes(sidecar.read_bytes())
        (drop / "day1" / "SPO_match.jpg").write_bytes(clean.read_bytes())
        ex.settled(1, timeout=60)
        archive = config.parent / "var" / "cf" / "Archive"
        wait_for(lambda: not (drop / "day1" / "SPO_match.xmp").exists(), message="the sidecar to go with its picture")
        assert [p for p in drop.rglob("*") if p.is_file()] == []
        [out] = [p for p in archive.rglob("*") if p.is_file()]
        rel = out.relative_to(archive).as_posix()
        now = datetime.now()
        assert rel == f"Sport/{now:%Y/%B/%d}/day1/match.jpg"
        t = tags(out)
        assert t["XMP-dc:Description"] == "From the sidecar" and t["IPTC:Caption-Abstract"] == "From the sidecar"
        assert t["XMP-photoshop:Credit"] == "NTB"
        from flowd.metadata.fields import FieldTable
        from flowd.metadata.model import Metadata

        table = FieldTable.load(config.parent / "MetadataConfiguration.xml")
        meta = Metadata.read(out, table)
        assert meta.text(table.resolve(200)) == "SPO_match.jpg"
        assert len(meta.text(table.resolve(187))) == 36
        assert json.dumps(meta.fields(), ensure_ascii=False)
    finally:
        ex.kill()
        if ex.notify is not None:
            ex.notify.close()


def test_every_truncated_format_is_quarantined_with_its_reason(site: QuickSite, tmp_path: Path) -> None:
    from imagegen import gif, pdf, png, psd, rgb_tiff, webp

    site.configure(hotfolders=[{"stable_seconds": 0.3}], extra="incomplete_seconds = 2\n")
    site.rules("""
        rules:
          - name: all
            do: [{store: {to: "{output}/{name}"}}]
    """)
    site.start()
    src = tmp_path / "src"
    src.mkdir()
    made = {"a.jpg": rgb_jpeg(src / "a.jpg", 200, 150), "b.png": png(src / "b.png"), "c.tif": rgb_tiff(src / "c.tif"),
            "d.webp": webp(src / "d.webp"), "e.gif": gif(src / "e.gif"), "f.psd": psd(src / "f.psd"),
            "g.pdf": pdf(src / "g.pdf")}
    for name, path in made.items():
        data = path.read_bytes()
        site.drop(name, data[: len(data) * 2 // 3])
    site.settled(len(made), timeout=60)
    assert outputs(site) == {}
    notes = error_notes(site)
    assert sorted(notes) == sorted(f"{n}.error.json" for n in made)
    for name, note in notes.items():
        assert note["reason"].startswith("truncated: "), (name, note)
    assert "IEND" in notes["b.png.error.json"]["reason"] and "%%EOF" in notes["g.pdf.error.json"]["reason"]


def test_strip_map_category_merge_and_sidecar_output(site: QuickSite, tmp_path: Path) -> None:
    templates = site.root / "templates"
    templates.mkdir()
    (templates / "agency.txt").write_text("# the agency's defaults\ncredit=Example Agency\n116=(c) Example Agency\n"
                                          "keywords=agency\nkeywords=wire\n")
    site.rules("""
        maps:
          codes: {SPO: S, POL: P}
        rules:
          - name: clean
            if: {name: "clean-*"}
            do:
              - strip_metadata: {keep: [116]}
              - store: {to: "{output}/clean/{name}"}
            stop: true
          - name: coded
            if: {name: "code-*"}
            do:
              - map_category: {map: codes}
              - merge_metadata: {from: "templates/agency.txt"}
              - set_metadata: {to: sidecar, entries: [{field: headline, value: "Sidecar {stem}"}]}
              - store: {to: "{output}/coded/{name}", conflict: increment}
    """)
    site.start()
    src = tmp_path / "src"
    src.mkdir()
    dirty = tagged_jpeg(src / "d.jpg", "-IPTC:CopyrightNotice=(c) Kari", "-XMP-dc:Rights=(c) Kari",
                        "-IPTC:Caption-Abstract=secret", "-EXIF:Artist=Kari", "-XMP-photoshop:Credit=NTB")
    site.drop("clean-1.jpg", dirty.read_bytes())
    coded = tagged_jpeg(src / "c.jpg", "-IPTC:Category=SPO", "-IPTC:Credit=NTB")
    site.drop("code-1.jpg", coded.read_bytes())
    site.settled(2)
    out = outputs(site)
    assert sorted(out) == ["assets/clean/clean-1.jpg", "assets/coded/code-1.jpg", "assets/coded/code-1.xmp"]
    t = tags(out["assets/clean/clean-1.jpg"])
    assert t["IPTC:CopyrightNotice"] == "(c) Kari" and t["XMP-dc:Rights"] == "(c) Kari"
    assert "IPTC:Caption-Abstract" not in t and "IFD0:Artist" not in t and "XMP-photoshop:Credit" not in t
    c = tags(out["assets/coded/code-1.jpg"])
    assert c["IPTC:Category"] == "S"
    assert c["IPTC:Credit"] == "NTB", "merge fills empty fields only"
    assert c["IPTC:CopyrightNotice"] == "(c) Example Agency" and as_list(c["IPTC:Keywords"]) == ["agency", "wire"]
    assert "IPTC:Headline" not in c, "to: sidecar leaves the file alone"
    assert tags(out["assets/coded/code-1.xmp"])["XMP-photoshop:Headline"] == "Sidecar code-1"


def test_corrupt_files_of_every_format_are_quarantined_with_a_reason(site: QuickSite, tmp_path: Path) -> None:
    """Garbage after a valid header: whether the structure check calls it cut short or libvips fails to
    decode it, nothing is written and each file lands in `errors` with a reason a person can act on."""
    from imagegen import corrupt, gif, png, rgb_tiff, webp

    site.configure(hotfolders=[{"stable_seconds": 0.3}], extra="incomplete_seconds = 1\n")
    site.rules("""
        rules:
          - name: web
            do:
              - convert: {resize: {fit: [64, 64]}, format: {type: jpeg}}
              - store: {to: "{output}/{name}"}
    """)
    site.start()
    src = tmp_path / "src"
    src.mkdir()
    made = {"a.jpg": rgb_jpeg(src / "a.jpg", 200, 150), "b.png": png(src / "b.png"), "c.tif": rgb_tiff(src / "c.tif"),
            "d.webp": webp(src / "d.webp"), "e.gif": gif(src / "e.gif")}
    for name, path in made.items():
        site.drop(name, corrupt(path, tmp_path / f"bad-{name}").read_bytes())
    site.settled(len(made), timeout=60)
    assert outputs(site) == {}
    notes = error_notes(site)
    assert sorted(notes) == sorted(f"{n}.error.json" for n in made)
    for name, note in notes.items():
        reason = note["reason"]
        assert reason.startswith("truncated: ") or (note["action"] == "convert" and len(reason) > 10), (name, note)
