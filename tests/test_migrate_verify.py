"""`flowd migrate verify DIR SAMPLES/`: the migrated rules run in simulate mode over sample files, and what
each rule (Color Factory channel) would produce is printed: outputs, formats, pixel sizes, metadata changes.

verify() is called directly (the CLI wiring is the lead's); real images with IPTC written by exiftool.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import tree
from imagegen import cmyk_tiff, exiftool, gray_jpeg, have_exiftool, rgb_jpeg

from flowd.errors import ConfigErrors, FlowdError
from flowd.migrate.verify import add_arguments, verify

pytestmark = pytest.mark.skipif(not have_exiftool(), reason="exiftool is needed to write IPTC into test images")

CONFIG = """\
[flowd]
data_dir = "var"
database_url = "sqlite:///var/flowd.db"
rules = ["rules/*.yaml"]

[storage.lake]
kind = "local"
root = "lake"

[[hotfolders]]
name = "wire"
path = "hot/wire"
output = "lake:wire"
errors = "errors/wire"

[[hotfolders]]
name = "scans"
path = "hot/scans"
output = "lake:scans"
after = "keep"
errors = "errors/scans"
"""

RULES = """\
rules:
  - name: too-small
    description: 'ErrorHandling "minFileSizeBytes=100"'
    if: {size: {lt: 100}}
    do:
      - quarantine: {reason: "smaller than 100 bytes (the channel's minimum file size)"}
    stop: true

  - name: web
    description: 'Channel 1 "AP wire to web"'
    on: [{hotfolder: wire}]
    if: {format: [jpeg, tiff]}
    do:
      - set_metadata:
          - {field: 116, action: replace, value: "(c) Example Media"}
          - {field: 25, action: append, value: wire}
      - convert:
          color: {to: srgb}
          resize: {fit: [200, 200]}
          format: {type: jpeg, quality: 85}
      - rename: {to: "{stem}-web{ext}"}
      - store: {to: "{output}/web/{name}", conflict: increment}

  - name: print
    description: 'Channel 2 "AP wire to print"'
    if: {format: [jpeg, tiff]}
    do:
      - convert: {color: {to: cmyk, embed: true}, format: {type: tiff}}
      - store: {to: "{output}/print/{name}", conflict: increment}

  - name: old-ftp
    description: 'Channel 3 "Old FTP"'
    enabled: false
    do:
      - store: {to: "{output}/old/{name}"}

  - name: purge-web
    description: 'Purging channel "Purge web"'
    on: [{schedule: {cron: "0 3 * * *", timezone: "Europe/Oslo"}}]
    over: {storage: "lake:wire/web"}
    if: {age: {gt: 30d}}
    do:
      - delete: {}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A migrated configuration as `flowd migrate colorfactory` would write it: DIR/config.toml, DIR/rules."""
    root = tmp_path / "migrated"
    (root / "rules").mkdir(parents=True)
    (root / "config.toml").write_text(CONFIG)
    (root / "rules/x.yaml").write_text(RULES)
    (root / "lake/wire/web").mkdir(parents=True)
    (root / "lake/wire/web/existing.txt").write_text("someone else's file")
    return root


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    folder = tmp_path / "samples"
    (folder / "wire").mkdir(parents=True)
    photo = rgb_jpeg(folder / "wire/photo.jpg", 640, 480)
    exiftool(photo, "-IPTC:Keywords=news", "-IPTC:By-line=Jane Doe", "-IPTC:Caption-Abstract=A caption")
    return folder


def run(config: Path, samples: Path, **kw: Any) -> tuple[int, str]:
    buf = io.StringIO()
    status = verify(config, samples, out=buf, **kw)
    return status, buf.getvalue()


def snapshot(*roots: Path) -> dict[str, dict[str, bytes]]:
    return {str(r): tree(r) for r in roots}


def blocks(text: str) -> dict[str, str]:
    """The printed blocks by their title line ("== FILE in hot folder NAME...")."""
    out: dict[str, str] = {}
    for block in text.split("\n== ")[1:]:
        title, _, body = block.partition("\n")
        out[title] = body
    return out


def block(text: str, name: str, hotfolder: str) -> str:
    found = [body for title, body in blocks(text).items()
             if title.split(" in hot folder ")[0].endswith("/" + name) and f" in hot folder {hotfolder}" in title]
    assert len(found) == 1, f"no single block for {name} in {hotfolder}:\n{text}"
    return found[0]


def test_outputs_formats_sizes_and_metadata_changes_per_channel(site: Path, samples: Path, tmp_path: Path) -> None:
    cmyk_tiff(samples / "wire/cmyk.tif", 400, 300)
    exiftool(samples / "wire/cmyk.tif", "-IPTC:CopyrightNotice=(c) Agency")
    gray_jpeg(samples / "wire/gray.jpg", 300, 600)
    before = snapshot(site, samples)
    status, text = run(site, samples)
    assert status == 0, text

    photo = block(text, "photo.jpg", "wire")
    assert "sample: jpeg, 640 x 480 px, rgb," in photo
    assert 'rule web — Channel 1 "AP wire to web" (rules/x.yaml:9): matched' in photo
    assert "renamed to photo-web.jpg" in photo
    assert "output lake:wire/web/photo-web.jpg (store): jpeg, 200 x 150 px, rgb," in photo
    assert "      field 25 (keywords): 'news' -> 'news, wire'" in photo
    assert "      field 116 (copyright): '' -> '(c) Example Media'" in photo
    assert "field 80" not in photo and "field 120" not in photo  # kept as they were: no change line
    assert 'rule print — Channel 2 "AP wire to print" (rules/x.yaml:24): matched' in photo
    assert "output lake:wire/print/photo.tif (store): tiff, 640 x 480 px, cmyk," in photo
    assert 'rule old-ftp — Channel 3 "Old FTP" (rules/x.yaml:31): disabled in the configuration (not run)' in photo
    assert "result: finished; source: deleted from the hot folder" in photo
    # The web output comes before the print one, each under its own rule, in the rule file's order.
    assert photo.index("rule too-small") < photo.index("rule web") < photo.index("rule print") \
        < photo.index("rule old-ftp")

    cmyk = block(text, "cmyk.tif", "wire")
    assert "sample: tiff, 400 x 300 px, cmyk," in cmyk
    assert "output lake:wire/web/cmyk-web.jpg (store): jpeg, 200 x 150 px, rgb," in cmyk
    assert "field 116 (copyright): '(c) Agency' -> '(c) Example Media'" in cmyk
    assert "field 25 (keywords): '' -> 'wire'" in cmyk
    assert "output lake:wire/print/cmyk.tif (store): tiff, 400 x 300 px, cmyk," in cmyk

    gray = block(text, "gray.jpg", "wire")
    assert "sample: jpeg, 300 x 600 px, gray," in gray
    assert "output lake:wire/web/gray-web.jpg (store): jpeg, 100 x 200 px, rgb," in gray

    # Byte sizes are those of the files the storage would get.
    assert re.search(r"photo-web\.jpg \(store\): jpeg, 200 x 150 px, rgb, [\d,]+ bytes", photo)
    # Sweep rules are listed once, at the end.
    assert text.rstrip().endswith('purge-web (Purging channel "Purge web") — cron "0 3 * * *" (Europe/Oslo) — '
                                  "storage lake:wire/web: delete where {age: {gt: 30d}}")
    assert snapshot(site, samples) == before, "verify wrote, moved or deleted something"
    assert not list(tmp_path.glob("**/flowd-verify-*"))


def test_increment_sees_what_the_storage_holds(site: Path, samples: Path) -> None:
    (site / "lake/wire/web/photo-web.jpg").write_bytes(b"an earlier output")
    status, text = run(site, samples)
    assert status == 0
    assert "output lake:wire/web/photo-web_1.jpg (store): jpeg, 200 x 150 px" in text


def test_reasons_for_rules_that_did_not_match_and_quarantines(site: Path, samples: Path) -> None:
    (samples / "wire/notes.txt").write_text("not a picture, but long enough to pass the size rule. " * 4)
    (samples / "wire/tiny.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    status, text = run(site, samples)
    assert status == 0, text

    notes = block(text, "notes.txt", "wire")
    assert "sample: text, no pixel size" in notes
    assert "rule too-small" in notes and "failed: size = 216  expected {'lt': 100.0}" in notes
    assert "rule web — Channel 1 \"AP wire to web\" (rules/x.yaml:9): not matched\n" \
           "      failed: format = 'text'  expected ['jpeg', 'tiff']" in notes
    assert "rule print — Channel 2 \"AP wire to print\" (rules/x.yaml:24): not matched" in notes
    assert "result: unmatched; source: kept in the hot folder" in notes

    tiny = block(text, "tiny.jpg", "wire")
    assert "rule too-small" in tiny and ": matched" in tiny
    assert "QUARANTINE: smaller than 100 bytes (the channel's minimum file size)" in tiny
    assert "rule web — Channel 1 \"AP wire to web\" (rules/x.yaml:9): not run: rule too-small quarantined the file" \
        in tiny
    assert "result: quarantined; source: moved to the errors folder " in tiny
    assert "(reason: smaller than 100 bytes (the channel's minimum file size))" in tiny


def test_subfolders_named_like_hot_folders_route_their_files(site: Path, samples: Path) -> None:
    (samples / "scans").mkdir()
    rgb_jpeg(samples / "scans/scan.jpg", 320, 240)
    rgb_jpeg(samples / "loose.jpg", 320, 240)
    (samples / "other").mkdir()
    rgb_jpeg(samples / "other/deep.jpg", 320, 240)
    (samples / ".hidden.jpg").write_bytes(b"x")
    (samples / ".cache").mkdir()
    rgb_jpeg(samples / ".cache/c.jpg", 32, 24)
    status, text = run(site, samples)
    assert status == 0, text
    titles = sorted(t.replace(str(samples), "S") for t in blocks(text))
    assert titles == ["S/loose.jpg in hot folder scans", "S/loose.jpg in hot folder wire",
                      "S/other/deep.jpg in hot folder scans", "S/other/deep.jpg in hot folder wire",
                      "S/scans/scan.jpg in hot folder scans (its subfolder)",
                      "S/wire/photo.jpg in hot folder wire (its subfolder)"]
    scan = block(text, "scan.jpg", "scans")
    assert "rule web" not in scan  # on: [{hotfolder: wire}]
    assert "output lake:scans/print/scan.tif (store): tiff, 320 x 240 px, cmyk," in scan
    assert "source: kept in the hot folder" in scan  # scans: after = "keep"
    assert "output lake:wire/print/deep.tif" in block(text, "deep.jpg", "wire")

    status, only = run(site, samples, hotfolder="scans")
    assert status == 0
    titles = sorted(t.replace(str(samples), "S") for t in blocks(only))
    assert titles == ["S/loose.jpg in hot folder scans", "S/other/deep.jpg in hot folder scans",
                      "S/scans/scan.jpg in hot folder scans (its subfolder)"]
    assert f"{samples / 'wire'}: not simulated: only hot folder 'scans' (--hotfolder)" in only

    status, single = run(site, samples / "loose.jpg", hotfolder="wire")
    assert status == 0
    assert [t.replace(str(samples), "S") for t in blocks(single)] == ["S/loose.jpg in hot folder wire"]


def test_json_one_object_per_file_and_hot_folder(site: Path, samples: Path) -> None:
    rgb_jpeg(samples / "loose.jpg", 320, 240)
    status, text = run(site, samples, as_json=True)
    assert status == 0
    objects = [json.loads(line) for line in text.splitlines()]
    reports = [o for o in objects if "hotfolder" in o]
    assert sorted((Path(o["file"]).name, o["hotfolder"]) for o in reports) == [
        ("loose.jpg", "scans"), ("loose.jpg", "wire"), ("photo.jpg", "wire")]
    photo = next(o for o in reports if o["relpath"] == "photo.jpg")
    assert photo["routed"] is True and photo["status"] == "finished" and photo["fate"] == "delete"
    assert photo["sample"] == {"name": "photo.jpg", "bytes": (samples / "wire/photo.jpg").stat().st_size,
                               "format": "jpeg", "width": 640, "height": 480, "color": "rgb", "bits": 8, "icc": True}
    rules = {r["rule"]: r for r in photo["rules"]}
    assert list(rules) == ["too-small", "web", "print", "old-ftp"]
    assert rules["too-small"]["matched"] is False and rules["too-small"]["why_not"]
    assert rules["old-ftp"] == {"rule": "old-ftp", "description": 'Channel 3 "Old FTP"', "file": "rules/x.yaml:31",
                                "enabled": False, "note": "disabled in the configuration (not run)"}
    web = rules["web"]
    assert web["description"] == 'Channel 1 "AP wire to web"' and web["renames"] == ["photo-web.jpg"]
    (out,) = web["outputs"]
    assert out["target"] == "lake:wire/web/photo-web.jpg" and out["outcome"] == "written"
    assert (out["format"], out["width"], out["height"], out["color"]) == ("jpeg", 200, 150, "rgb")
    assert out["bytes"] > 0
    assert {"field": 116, "name": "copyright", "before": "", "after": "(c) Example Media"} in out["metadata"]
    assert {"field": 25, "name": "keywords", "before": "news", "after": "news, wire"} in out["metadata"]
    assert [s["action"] for s in web["steps"]] == ["set_metadata", "convert", "rename", "store"]
    (tif,) = rules["print"]["outputs"]
    assert (tif["target"], tif["format"], tif["color"], tif["metadata"]) == ("lake:wire/print/photo.tif", "tiff",
                                                                            "cmyk", [])
    (sweeps,) = [o["sweep_rules"] for o in objects if "sweep_rules" in o]
    assert sweeps == [{"rule": "purge-web", "description": 'Purging channel "Purge web"', "enabled": True,
                       "schedule": ['cron "0 3 * * *" (Europe/Oslo)'], "over": "storage lake:wire/web",
                       "if": "{age: {gt: 30d}}", "do": "delete"}]


ARCHIVE = """\
rules:
  - name: archive
    description: 'Channel 10 "Drop to archive"'
    on: [{hotfolder: scans}]
    if: {format: jpeg}
    do:
      - merge_metadata: {from: sidecar}
      - map_category: {map: {SPO: Sport}}
      - strip_metadata: {keep: [120, 15, 80]}
      - store: {to: "{output}/archive/{name}"}
      - set_metadata: {to: sidecar, entries: [{field: 116, value: "(c) Newsroom"}]}
      - store: {to: "{output}/with-sidecar/{name}"}
"""


def test_sidecars_category_maps_strip_and_ignored_files(site: Path, tmp_path: Path) -> None:
    (site / "config.toml").write_text(CONFIG.replace('after = "keep"', 'after = "keep"\nignore = ["*.txt"]'))
    (site / "rules/y.yaml").write_text(ARCHIVE)
    folder = tmp_path / "drop"
    (folder / "scans").mkdir(parents=True)
    pic = rgb_jpeg(folder / "scans/match.jpg", 320, 240)
    exiftool(pic, "-IPTC:Category=SPO", "-IPTC:Keywords=football", "-IPTC:By-line=Jane Doe")
    (folder / "scans/match.txt").write_text("120=Caption from the sidecar\n")
    before = snapshot(site, folder)
    status, text = run(site, folder)
    assert status == 0, text
    assert f"{folder / 'scans/match.txt'} in hot folder scans (its subfolder)" in text
    assert "note: ignored by hot folder scans (its ignore patterns): not a job, no rule runs" in text
    match = block(text, "match.jpg", "scans")
    assert 'rule archive — Channel 10 "Drop to archive" (rules/y.yaml:2): matched' in match
    archived = match.split("output lake:scans/archive/match.jpg (store): jpeg, 320 x 240 px, rgb,")[1] \
        .split("    output ")[0]
    assert "field 15 (category): 'SPO' -> 'Sport'" in archived
    assert "field 25 (keywords): 'football' -> ''" in archived  # stripped: not kept
    assert "field 120 (caption): '' -> 'Caption from the sidecar'" in archived
    assert "field 80" not in archived  # kept as it was
    sidecar = match.split("output lake:scans/with-sidecar/match.jpg (store)")[1]
    assert "sidecar lake:scans/with-sidecar/match.xmp" in sidecar
    assert "field 116 (copyright): '' -> '(c) Newsroom' [in the sidecar]" in sidecar
    assert sidecar.count("[in the sidecar]") == 1  # what the file says already is not repeated
    # Steps and outputs in the order they ran: the sidecar is written after the first store.
    assert match.index("output lake:scans/archive/") < match.index("set_metadata: written to the sidecar") \
        < match.index("output lake:scans/with-sidecar/")
    assert snapshot(site, folder) == before


def test_bad_samples_are_one_line_each(site: Path, tmp_path: Path) -> None:
    status, text = run(site, tmp_path / "missing")
    assert (status, text) == (1, f"{tmp_path / 'missing'}: cannot read: No such file or directory\n"
                                 "\nsweep rules (not run per file; they purge on their schedule):\n"
                                 '  purge-web (Purging channel "Purge web") — cron "0 3 * * *" (Europe/Oslo) — '
                                 "storage lake:wire/web: delete where {age: {gt: 30d}}\n")
    empty = tmp_path / "empty"
    (empty / "wire/sub").mkdir(parents=True)
    (empty / ".DS_Store").write_bytes(b"x")
    status, text = run(site, empty)
    assert status == 1
    assert text.startswith(f"{empty}: no sample files to simulate\n")

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "empty.jpg").write_bytes(b"")
    (odd / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + b"\x13" * 500)
    (odd / "link.jpg").symlink_to(odd / "garbage.jpg")
    status, text = run(site, odd, hotfolder="wire")
    assert status == 0, text
    assert f"{odd / 'link.jpg'}: a symbolic link: skipped" in text
    assert "Traceback" not in text
    garbage = block(text, "garbage.jpg", "wire")
    assert "sample: jpeg, no pixel size (" in garbage
    assert "QUARANTINE" in block(text, "empty.jpg", "wire")  # 0 bytes: the too-small rule
    # A rule whose convert cannot read the picture: the reason, as the daemon would quarantine it.
    assert "result: quarantined; source: moved to the errors folder" in garbage


def test_unreadable_sample(site: Path, samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    import flowd.migrate.verify as module

    locked = samples / "wire/locked.jpg"
    locked.write_bytes(b"x" * 200)
    locked.chmod(0)
    real_open = builtins.open

    def refusing(file: Any, *args: Any, **kw: Any) -> Any:  # root reads any file: refuse it as the mode would
        if Path(str(file)) == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kw)

    monkeypatch.setattr(module, "open", refusing, raising=False)
    status, text = run(site, samples)
    assert status == 1
    assert f"{locked}: cannot read: Permission denied" in text
    assert "photo.jpg in hot folder wire" in text  # the other samples still ran


def test_configuration_errors_are_raised_as_load_runtime_raises_them(site: Path, samples: Path) -> None:
    status, text = run(site / "config.toml", samples)  # the file itself does as well as its folder
    assert status == 0 and "photo-web.jpg" in text
    with pytest.raises(ConfigErrors, match="cannot read config file"):
        run(site / "rules", samples)
    (site / "rules/x.yaml").write_text(RULES.replace("convert: {color", "convert: {colour"))
    with pytest.raises(ConfigErrors, match="colour"):
        run(site, samples)
    (site / "rules/x.yaml").write_text(RULES)
    with pytest.raises(FlowdError, match="no hot folder named 'nope'; hot folders: wire, scans"):
        run(site, samples, hotfolder="nope")


def test_arguments() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["out", "samples", "--json", "--hotfolder", "wire"])
    assert (args.dir, args.samples, args.json, args.hotfolder) == ("out", "samples", True, "wire")
    args = p.parse_args(["out", "samples"])
    assert (args.json, args.hotfolder) == (False, None)
