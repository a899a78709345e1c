"""flowd migrate colorfactory on the two public fixtures: what each setting becomes, that the report names
every attribute of the export with the generated line it became, and the --map rules."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowd.metadata.fields import DEFAULT_FIELDS
from flowd.migrate.colorfactory import Importer, Options
from flowd.migrate.export import read
from flowd.migrate.paths import Local, MapError, PathMapper, Stored
from flowd.migrate.xmlsafe import Node, read_export
from flowd.rules import RuleLoader

CF = Path(__file__).parent / "fixtures" / "colorfactory"  # copies of ../shared/fixtures/colorfactory
WIRE, NEWS = CF / "wire-agency.xml", CF / "newsroom.xml"
WIRE_MAPS = ["D:\\CF=var/cf"]
NEWS_MAPS = ["\\\\cfserver\\images=var/images", "\\\\cfserver\\cold=cold:archive"]
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowd", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def imported(export: Path, maps: list[str], **kw: object) -> tuple[Importer, dict[str, str]]:
    imp = Importer(read(read_export(export)), Options(str(export), "out", maps, [], **kw), DEFAULT_FIELDS)  # type: ignore[arg-type]
    return imp, imp.run().files


def rules_of(files: dict[str, str]) -> dict[str, dict[str, object]]:
    out = {}
    for rel, text in files.items():
        if rel.startswith("rules/"):
            for rule in yaml.load(text, Loader=RuleLoader)["rules"]:  # YAML 1.2: `on` is a key
                out[rule["name"]] = rule
    return out


def test_wire_agency_becomes_one_hot_folder_with_fan_out_rules(tmp_path: Path) -> None:
    result = run_cli("migrate", "colorfactory", str(WIRE), "--out", "site", "--map", WIRE_MAPS[0],
                     "--metadata-config", str(CF / "MetadataConfiguration.xml"), "--timezone", "Europe/Oslo",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 channel(s), 1 purging channel(s)" in result.stdout and "flowd check: OK" in result.stdout
    site = tmp_path / "site"
    assert (site / "MetadataConfiguration.xml").read_bytes() == (CF / "MetadataConfiguration.xml").read_bytes()
    check = run_cli("check", "-c", str(site / "config.toml"), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    config = (site / "config.toml").read_text()
    assert 'path = "var/cf/AP/In"' in config and "recursive = false" in config and "stable_seconds = 5" in config
    assert "extract_zip = true" in config and 'errors = "var/cf/AP/Error"' in config
    assert 'unmatched = "var/cf/UNKNOWN"' in config and "workers = 9" in config
    rules = rules_of({str(p.relative_to(site)): p.read_text() for p in sorted((site / "rules").glob("*.yaml"), key=lambda p: p.name != "wire.yaml")})
    assert list(rules) == ["ap-in-too-small", "ap-wire-to-web-missing-text", "ap-wire-to-web", "ap-wire-to-print",
                           "purge-ap-originals"]
    assert {r["on"][0]["hotfolder"] for n, r in rules.items() if n != "purge-ap-originals"} == {"ap-in"}  # type: ignore[index]
    web = rules["ap-wire-to-web"]["do"]
    assert web[0] == {"store": {"to": "ap-originals:{name}", "conflict": "increment"}}  # copyInputFileTo first
    convert = next(step["convert"] for step in web if "convert" in step)
    assert convert == {"color": {"to": "srgb", "embed": True}, "resize": {"fit": [2048, 2048]},
                       "sharpen": {"amount": 80, "radius": 0.8, "threshold": 2},
                       "format": {"type": "jpeg_web", "quality": 85}, "modes": {"gray": "metadata_only"}}
    assert web[-1]["store"]["to"] == "ap-web:{meta.15|map:meta-ap-wire-to-web}/{date:metadata:%Y/%m/%d}/{name}"
    missing = rules["ap-wire-to-web-missing-text"]
    assert {"not": {"required_fields": [120, 80]}} in missing["if"]  # type: ignore[operator]
    assert missing["do"][-1]["store"]["to"] == "ap-web:Required text missing/{name}"  # type: ignore[index]
    macro = next(step["set_metadata"] for step in web if "set_metadata" in step)
    assert macro[1] == {"field": 110, "action": "replace", "value": "AP",
                        "if": {"field": {115: {"contains": "Associated Press"}}}}
    print_ = rules["ap-wire-to-print"]["do"]
    assert print_[0]["convert"] == {"color": {"to": "cmyk", "embed": True}, "format": {"type": "tiff"}}
    purge = rules["purge-ap-originals"]
    assert purge["on"] == [{"schedule": {"cron": "0 3 * * *", "timezone": "Europe/Oslo"}}]
    assert purge["over"] == {"folder": "var/cf/AP/Originals", "recursive": True, "remove_empty_folders": True}
    assert purge["if"] == [{"age": {"gt": "30d"}}, {"name": ["*.jpg", "*.tif"]}, {"not": {"extension": ["xmp"]}}]
    assert purge["do"] == [{"delete": {}}]


def test_newsroom_schedules_naming_jrf_and_the_archive_purge(tmp_path: Path) -> None:
    imp, files = imported(NEWS, NEWS_MAPS)
    config = files["config.toml"]
    assert 'run = { every = "30s" }' in config and 'run = { cron = "0 22 * * 0" }' in config
    assert "jrf = true" in config and "prf = true" in config and "remove_empty_folders = true" in config
    assert '"\\\\\\\\cfserver\\\\images" = "var/images"' in config  # [path_map] for job requests
    assert '"*.xmp", "*.XMP"' in config  # MergeText sidecars are taken with their picture
    rules = rules_of(files)
    drop = rules["photographers-drop"]["do"]
    assert drop[0] == {"merge_metadata": {"from": "sidecar", "suffixes": [".xmp"], "wait": "10s", "overwrite": False}}
    assert drop[-2] == {"rename": {"to": "{unprefixed:_}", "chars": {" ": "_", "å": "aa"}, "max_length": 31,
                                   "cut": "left"}}
    assert drop[-1] == {"store": {"to": "images-archive:{source_prefix:_|map:prefix-photographers-drop}/"
                                        "{date:file:%Y/%B/%d}/{reldir}/{name}",
                                  "conflict": "increment", "digits": 3, "keep_mtime": True}}
    assert not any("convert" in step for step in drop)  # useSameFormatAsInput: the bytes stay
    scans = rules["scanned-cmyk-to-rgb"]
    assert scans["enabled"] is False
    assert scans["do"][0]["convert"]["modes"] == {"rgb": "copy", "gray": "skip"}  # type: ignore[index]
    assert scans["do"][0]["convert"]["format"] == {"type": "tiff", "bits": 16}  # type: ignore[index]
    editorial = rules["jrf-from-editorial-system"]["do"][0]["convert"]  # type: ignore[index]
    assert editorial == {"resize": {"exact": [1200, 800], "upscale": True}, "format": {"type": "jpeg", "quality": 100,
                                                                      "progressive": True}}
    archive = rules["keep-last-5000-in-archive"]
    assert archive["over"] == {"folder": "var/images/Archive", "recursive": True, "keep_newest": 5000}
    assert archive["do"] == [{"move": {"to": "cold:archive/Archive/{relpath}", "conflict": "increment"}}]
    assert "[storage.cold]" in files["config.toml"]


@pytest.mark.parametrize(("export", "maps"), [(WIRE, WIRE_MAPS), (NEWS, NEWS_MAPS)])
def test_every_attribute_of_the_export_is_in_the_report_with_a_line_that_holds_it(export: Path, maps: list[str]) -> None:
    imp, files = imported(export, maps)
    report = imp.report
    named = {(r.line, r.setting.partition(" ")[2].partition("=")[0].lower())
             for p in [report.site, *report.parts] for r in p.rows}
    stack: list[Node] = [imp.x.document.root]
    missing = []
    while stack:
        n = stack.pop()
        stack.extend(n.children)
        missing += [(a.line, n.name, a.name) for k, a in n.attrs.items()
                    if (a.line, k) not in named and id(a) not in imp.covered]
    assert missing == []
    source = export.read_text().splitlines()
    for part in [report.site, *report.parts]:
        for row in part.rows:
            assert row.status in ("mapped", "approximated", "not carried")
            assert row.line == 0 or row.setting.split(" ")[0].split("(")[0].strip() in source[row.line - 1] or \
                row.setting.split(" ")[0] in " ".join(source[max(0, row.line - 3):row.line]), row
            if row.where is not None:  # the cited line of the generated file holds what the row says
                text = files[row.where.file].splitlines()[row.where.line - 1]
                assert text.strip() and not text.lstrip().startswith("#"), (row, text)
    rendered = report.render()
    assert "| mapped |" in rendered and "## Warnings" in rendered


def test_generated_lines_name_the_channel_and_setting_they_came_from() -> None:
    _imp, files = imported(WIRE, WIRE_MAPS)
    text = files["rules/wire.yaml"]
    assert '# Channel 1 "AP wire to web" (group "Wire"), export line 9' in text
    assert re.search(r"resize: \{fit: \[2048, 2048\]\}\s+# ImageSize mode=MaxPixels", text)
    assert re.search(r'if: \{size: \{lt: 1024\}\}\s+# ErrorHandling minFileSizeBytes="1024"', text)
    assert re.search(r"description: .*Channel 2 \\\"AP wire to print\\\"", text)


def test_unmapped_paths_are_one_error_listing_each_with_its_line(tmp_path: Path) -> None:
    result = run_cli("migrate", "colorfactory", str(WIRE), "--out", "site", "--map", "D:\\CF\\AP\\In=in",
                     cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "have no --map" in result.stderr
    for path, line in (("D:\\CF\\AP\\Web", 12), ("D:\\CF\\AP\\Print", 47), ("D:\\CF\\AP\\Originals", 11),
                       ("D:\\CF\\AP\\Error", 17)):
        assert f"{path}  (" in result.stderr and f"line {line})" in result.stderr
    assert not (tmp_path / "site").exists()  # nothing half-written


def test_input_folders_must_map_to_local_folders(tmp_path: Path) -> None:
    result = run_cli("migrate", "colorfactory", str(WIRE), "--out", "site", "--map", "D:\\CF=lake:cfsite",
                     "--storage", "lake=adls", cwd=tmp_path)
    assert result.returncode == 1
    assert "D:\\CF\\AP\\In  (input folder" in result.stderr and "must be local folders" in result.stderr


def test_outputs_mapped_to_adls_become_an_adls_storage_whose_secret_comes_from_the_environment(tmp_path: Path) -> None:
    imp, files = imported(WIRE, ["D:\\CF=var/cf", "D:\\CF\\AP\\Web=lake:web"])
    assert 'store: {to: "lake:web/{meta.15' in files["rules/wire.yaml"]
    imp2 = Importer(read(read_export(WIRE)), Options(str(WIRE), "out", ["D:\\CF=var/cf", "D:\\CF\\AP\\Web=lake:web"],
                                                     ["lake=adls"]), DEFAULT_FIELDS)
    config = imp2.run().files["config.toml"]
    assert '[storage.lake]' in config and 'kind = "adls"' in config
    assert 'connection_string_env = "FLOWD_LAKE_CONNECTION_STRING"' in config


def test_path_mapper_longest_prefix_case_insensitive_and_bad_options() -> None:
    m = PathMapper.parse(["D:\\CF=var/cf", "d:\\cf\\ap\\WEB=lake:web", "\\\\srv\\Share\\x=/srv/x"], ["lake=adls"])
    hit = m.resolve("D:\\CF\\AP\\Web\\Sport")
    assert hit is not None and hit.mapping.to == Stored("lake", "web") and hit.rest == ["Sport"]
    hit = m.resolve("d:/cf/ap/in")
    assert hit is not None and hit.mapping.to == Local("var/cf") and hit.local == "var/cf/ap/in"
    hit = m.resolve("\\\\SRV\\share\\X\\a b")
    assert hit is not None and hit.local == "/srv/x/a b"
    assert m.resolve("E:\\other") is None and m.resolve("D:\\CF\\..\\etc") is None and m.resolve("relative") is None
    assert m.storage_kind("lake") == "adls" and m.storage_kind("other") == "local"
    for bad in (["D:\\CF"], ["CF=var"], ["D:\\CF\\..=x"], ["D:\\CF=../up"], ["D:\\CF=x", "d:\\cf=y"]):
        with pytest.raises(MapError):
            PathMapper.parse(bad, [])
    with pytest.raises(MapError, match="NAME=adls or NAME=local"):
        PathMapper.parse([], ["lake=s3"])
    for target in ("lake:", "lake:Web", "lake:a", "lake:we--b/x"):  # ADLS: the first segment is the container
        with pytest.raises(MapError, match="is the container"):
            PathMapper.parse([f"D:\\CF={target}"], ["lake=adls"])
    assert PathMapper.parse(["D:\\CF=lake:web-1/Sport"], ["lake=adls"]).mappings[0].to == Stored("lake", "web-1/Sport")


def test_a_256_channel_export_imports_checks_and_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    from cfexport import big_export

    (tmp_path / "big.xml").write_text(big_export(256))
    pid, fd = pty.fork()
    if pid == 0:  # the child: flowd with a terminal as stdout and stderr
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "flowd", "migrate", "colorfactory", "big.xml", "--out", "site",
                                  "--map", "D:\\CF=var/cf"])
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "importing [" in text and "256/272 channels" in text and "272/272 channels" in text
    assert "256 channel(s), 16 purging channel(s)" in text and "flowd check: OK (64 hot folder(s)" in text
    assert len(list((tmp_path / "site" / "rules").glob("*.yaml"))) == 65


def test_a_second_import_replaces_the_first_and_keeps_hand_written_rules(tmp_path: Path) -> None:
    first = run_cli("migrate", "colorfactory", str(NEWS), "--out", "site", *sum((["--map", m] for m in NEWS_MAPS), []),
                    cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    rules = tmp_path / "site" / "rules"
    assert (rules / "purging.yaml").exists()
    (rules / "mine.yaml").write_text("rules: []\n")
    no_purges = tmp_path / "news.xml"
    text = NEWS.read_text()
    no_purges.write_text(text[:text.index("<PurgingChannels>")] + "</ColorFactoryConfiguration>\n")
    second = run_cli("migrate", "colorfactory", str(no_purges), "--out", "site",
                     *sum((["--map", m] for m in NEWS_MAPS), []), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert not (rules / "purging.yaml").exists() and (rules / "mine.yaml").exists()
    assert "removed rules/purging.yaml" in second.stdout
    assert "rules/mine.yaml was not written by the importer" in second.stdout
