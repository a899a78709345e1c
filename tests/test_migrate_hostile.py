"""`flowd migrate colorfactory` against hostile and odd exports, always through the real CLI.

Every case runs `python -m flowd migrate colorfactory ...` as a subprocess and checks the contract of
FORMAT.md (/work/shared/fixtures/colorfactory/): never a traceback; an unreadable export is exit 1 with
`flowd: FILE:LINE[:COL]: ...`; a tolerable oddity is exit 0 with a warning (and its line) in MIGRATION.md's
warnings table, and the generated configuration passes `flowd check`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CF = "D:\\CF"
MAP = f"{CF}=var/cf"


# -- building exports ------------------------------------------------------------------------------------
def channel(cid: str = "1", name: str = "Web", inp: str | None = "D:\\CF\\In", out: str | None = "D:\\CF\\Out",
            body: str = "", attrs: str = "", tag: str = "Channel") -> str:
    parts = [f'<{tag} id="{cid}" name="{name}" enabled="true"{attrs}>']
    if inp is not None:
        parts.append(f'  <InputFolder path="{inp}"/>')
    if out is not None:
        parts.append(f'  <OutputFolder path="{out}"/>')
    if body:
        parts.append(body)
    parts.append(f"</{tag}>")
    return "\n".join(parts)


def export(*channels: str, purges: str = "", top: str = "", decl: str = '<?xml version="1.0" encoding="utf-8"?>',
           root_attrs: str = ' version="8.0"') -> str:
    text = [decl, f"<ColorFactoryConfiguration{root_attrs}>"] if decl else [f"<ColorFactoryConfiguration{root_attrs}>"]
    if top:
        text.append(top)
    text.append("<ProcessChannels>")
    text.extend(channels)
    text.append("</ProcessChannels>")
    if purges:
        text += ["<PurgingChannels>", purges, "</PurgingChannels>"]
    text.append("</ColorFactoryConfiguration>")
    return "\n".join(text) + "\n"


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth occurrence of needle in the export text."""
    pos = -1
    for _ in range(nth):
        pos = text.index(needle, pos + 1)
    return text.count("\n", 0, pos) + 1


# -- running the CLI -------------------------------------------------------------------------------------
@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    out: Path
    export: Path

    @property
    def report(self) -> str:
        return (self.out / "MIGRATION.md").read_text(encoding="utf-8")

    def warnings(self) -> list[tuple[int, str]]:
        """The rows of MIGRATION.md's `## Warnings` table."""
        report = self.report
        assert "## Warnings" in report, report
        section = report.split("## Warnings", 1)[1]
        rows = []
        for ln in section.splitlines():
            m = re.match(r"^\| (\d+) \| (.*) \|$", ln)
            if m:
                rows.append((int(m.group(1)), m.group(2)))
        return rows

    def warned(self, line: int, *words: str) -> str:
        """The warning on `line` whose text holds every word (case-insensitive)."""
        rows = self.warnings()
        for n, text in rows:
            if n == line and all(w.lower() in text.lower() for w in words):
                return text
        raise AssertionError(f"no warning on line {line} with {words}; warnings: {rows}")

    def rules(self) -> str:
        return "\n".join(p.read_text(encoding="utf-8") for p in sorted((self.out / "rules").glob("*.yaml")))

    def written(self) -> str:
        """Everything the importer wrote, as text."""
        if not self.out.exists():
            return ""
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(self.out.rglob("*"))
                         if p.is_file())


def _python(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(extra_env or {})}
    env.pop("FLOWD_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "flowd", *args], cwd=cwd, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=60, env=env)


def migrate(tmp_path: Path, data: str | bytes | None, *extra: str, maps: tuple[str, ...] = (MAP,),
            name: str = "export.xml", encoding: str = "utf-8", env: dict[str, str] | None = None) -> Run:
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    args = ["migrate", "colorfactory", name, "--out", "out"]
    for m in maps:
        args += ["--map", m]
    p = _python([*args, *extra], tmp_path, env)
    for stream in (p.stdout, p.stderr):
        assert "Traceback" not in stream, stream
    return Run(p.returncode, p.stdout, p.stderr, tmp_path / "out", path)


def check(run: Run) -> None:
    """`flowd check -c DIR/config.toml` (in-process: the import itself already ran as a subprocess)."""
    from flowd.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", "-c", str(run.out / "config.toml")])
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert code == 0, out.getvalue() + err.getvalue()


def ok(run: Run) -> Run:
    """Imported, and the result passes `flowd check`."""
    assert run.rc == 0, f"rc={run.rc}\n{run.stdout}\n{run.stderr}"
    assert (run.out / "MIGRATION.md").is_file()
    check(run)
    return run


def fails(run: Run, *words: str, where: str | None = None) -> str:
    """Exit 1 with one `flowd: ...` message that names the export (and `where` = "LINE" or "LINE:COL")."""
    assert run.rc == 1, f"rc={run.rc}\n{run.stdout}\n{run.stderr}"
    err = run.stderr.strip()
    assert err.startswith("flowd: "), err
    if where is not None:
        assert re.search(re.escape(f"{run.export.name}:{where}") + r"(:\d+)?:", err), err
    for w in words:
        assert w.lower() in err.lower(), err
    return err


# -- unreadable exports: exit 1 with file and line[:col] ------------------------------------------------------
_GOOD = export(channel())
_CLOSE = line_of(_GOOD, "</ColorFactoryConfiguration>")


@pytest.mark.parametrize(("data", "where"), [
    pytest.param(_GOOD.replace("</ProcessChannels>", ""), None, id="unclosed"),
    pytest.param(_GOOD.replace("</Channel>", "</Chanel>"), f"{line_of(_GOOD, '</Channel>')}:", id="mismatched"),
    pytest.param(_GOOD + "<Extra/>\n", f"{_CLOSE + 1}:", id="garbage-after-root"),
    pytest.param(_GOOD + "junk text\n", f"{_CLOSE + 1}:", id="text-after-root"),
    pytest.param(_GOOD.replace('name="Web"', 'name="a<b"'), f"{line_of(_GOOD, 'name=')}:", id="lt-in-attr"),
    pytest.param(b"\x00\x01\x02binary" * 50, "1:", id="binary-junk"),
])
def test_malformed_xml_is_an_error_with_line_and_column(tmp_path: Path, data: str | bytes, where: str | None) -> None:
    run = migrate(tmp_path, data)
    err = fails(run)
    assert re.search(re.escape(run.export.name) + r":\d+:\d+: ", err), err
    if where:
        assert f"{run.export.name}:{where}" in err, err
    assert not (run.out / "config.toml").exists()


@pytest.mark.parametrize("data", [b"", b"   \n\n  ", b"\xef\xbb\xbf"], ids=["empty", "whitespace", "bom-only"])
def test_empty_export_is_an_error_naming_the_file(tmp_path: Path, data: bytes) -> None:
    fails(migrate(tmp_path, data), "export.xml", "empty")


def test_xxe_file_entity_is_refused_and_secret_never_leaks(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-7f3a9", encoding="utf-8")
    data = export(channel(name="&xxe;"), decl=f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM '
                                              f'"file://{secret}">]>')
    run = migrate(tmp_path, data)
    assert "TOPSECRET" not in run.stdout + run.stderr + run.written()
    fails(run, where="2")


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    ents = ['<!ENTITY a0 "lol">'] + [f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    data = export(channel(name="&a9;"), decl='<?xml version="1.0"?>\n<!DOCTYPE r [' + "".join(ents) + "]>")
    run = migrate(tmp_path, data)
    fails(run, where="2")
    assert "lollollol" not in run.written()


def test_external_dtd_is_refused_without_network(tmp_path: Path) -> None:
    dtd = tmp_path / "ext.dtd"
    dtd.write_text('<!ENTITY inj "INJECTED-DTD">', encoding="utf-8")
    data = export(channel(name="x"), decl='<?xml version="1.0"?>\n<!DOCTYPE ColorFactoryConfiguration SYSTEM '
                                          '"http://127.0.0.1:9/cf.dtd">')
    run = migrate(tmp_path, data)
    # Either refused outright, or the DTD is ignored (never fetched): no crash, never a hang.
    assert run.rc in (0, 1), run.stderr
    if run.rc == 1:
        fails(run, where="2")
    data2 = export(channel(name="&inj;"), decl=f'<?xml version="1.0"?>\n<!DOCTYPE ColorFactoryConfiguration '
                                               f'SYSTEM "file://{dtd}">')
    run2 = migrate(tmp_path, data2, name="export2.xml")
    assert "INJECTED-DTD" not in run2.stdout + run2.stderr + run2.written()
    fails(run2)


def test_wrong_root_element(tmp_path: Path) -> None:
    data = export(channel()).replace("ColorFactoryConfiguration", "FotoStationConfig")
    fails(migrate(tmp_path, data), "FotoStationConfig", where="2")


def test_no_channels_at_all(tmp_path: Path) -> None:
    data = export()
    fails(migrate(tmp_path, data), "nothing to import", where="3")


def test_missing_export_file(tmp_path: Path) -> None:
    run = migrate(tmp_path, None, name="nope.xml")
    fails(run, "nope.xml")


def test_huge_sparse_export_is_a_size_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)
    run = migrate(tmp_path, None, name="huge.xml")
    fails(run, "huge.xml")
    assert re.search(r"MB|bytes|size|large", run.stderr, re.I), run.stderr


def test_deep_nesting_is_an_error_or_warnings_never_a_crash(tmp_path: Path) -> None:
    depth = 5000
    deep = "<Deep>" * depth + "</Deep>" * depth
    data = export(channel(body=deep))
    run = migrate(tmp_path, data)
    if run.rc == 0:
        ok(run).warned(line_of(data, "<Deep>"), "Deep")
    else:
        fails(run, where=f"{line_of(data, '<Deep>')}")


# -- encodings ------------------------------------------------------------------------------------------------
def test_utf16le_with_bom(tmp_path: Path) -> None:
    data = export(channel(name="Bildebyrå"), decl='<?xml version="1.0" encoding="UTF-16"?>')
    run = ok(migrate(tmp_path, b"\xff\xfe" + data.encode("utf-16-le")))
    assert "Bildebyrå" in run.report


def test_utf8_bom(tmp_path: Path) -> None:
    data = export(channel(name="Bildebyrå"))
    run = ok(migrate(tmp_path, b"\xef\xbb\xbf" + data.encode("utf-8")))
    assert "Bildebyrå" in run.report


def test_windows1252_channel_name(tmp_path: Path) -> None:
    data = export(channel(name="Nyheter på nett"), decl='<?xml version="1.0" encoding="windows-1252"?>')
    run = ok(migrate(tmp_path, data, encoding="cp1252"))
    assert "Nyheter på nett" in run.report


# -- unknown vocabulary and wrong types: warnings with their lines ---------------------------------------
def test_unknown_elements_and_attributes_are_warnings_with_lines(tmp_path: Path) -> None:
    data = export(channel(body='  <Watermark image="x.png"/>\n  <ImageSize mode="None" dpiX="300"/>',
                          attrs=' colour="blue"'),
                  top='<LicenseInfo key="abc"/>')
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, "<Watermark"), "Watermark")
    run.warned(line_of(data, "dpiX"), "dpiX")
    run.warned(line_of(data, 'colour="blue"'), "colour")
    run.warned(line_of(data, "<LicenseInfo"), "LicenseInfo")


WRONG_TYPES = [  # (section, the odd attribute, a word of its warning)
    ('<ImageSize mode="MaxPixels" width="-5" height="600"/>', 'width="-5"', "width"),
    ('<ImageSize mode="Fixed" width="800" height="1e9"/>', 'height="1e9"', "height"),
    ('<OutputFileFormat format="JPEG" jpegQuality="Ultra"/>', 'jpegQuality="Ultra"', "jpegQuality"),
    ('<OutputFileFormat format="JPEG" jpegQuality="250"/>', 'jpegQuality="250"', "jpegQuality"),
    ('<OutputFileFormat format="GIF89"/>', 'format="GIF89"', "GIF89"),
    ('<RunSchedule mode="Sometimes"/>', 'mode="Sometimes"', "Sometimes"),
    ('<InputFolder path="D:\\CF\\In{n}" includeSubfolders="maybe"/>', 'includeSubfolders="maybe"', "maybe"),
    ('<InputFolder path="D:\\CF\\In{n}" waitUntilFileStopsGrowingSec="soon"/>', '"soon"', "waitUntil"),
    ('<Sharpening filter="UnsharpMask" amount="lots"/>', 'amount="lots"', "amount"),
    ('<Sharpening filter="Gaussian"/>', 'filter="Gaussian"', "Gaussian"),
    ('<ImageSize mode="Percent" percent="NaN"/>', 'percent="NaN"', "percent"),
    ('<ColorManagement rgb="ConvertToLab"/>', 'rgb="ConvertToLab"', "ConvertToLab"),
    ('<InputFileFormats raw="Eat"/>', 'raw="Eat"', "Eat"),
    ('<ErrorHandling minFileSizeBytes="-1"/>', 'minFileSizeBytes="-1"', "minFileSizeBytes"),
    ('<FileNameOptions maxLength="0" counterDigits="x"/>', 'maxLength="0"', "maxLength"),
]


def test_wrong_types_are_warnings_and_defaults_used(tmp_path: Path) -> None:
    """One channel per wrong value; each gets a warning on its line and the export still imports."""
    chans = []
    for n, (section, _needle, _word) in enumerate(WRONG_TYPES):
        own_input = section.startswith("<InputFolder")
        chans.append(channel(str(n), f"Odd {n}", inp=None if own_input else f"D:\\CF\\In{n}",
                             out=f"D:\\CF\\Out{n}", body="  " + section.replace("{n}", str(n))))
    data = export(*chans, top='<ProcessEnvironment maxProcesses="many"/>')
    run = ok(migrate(tmp_path, data))
    for _section, needle, word in WRONG_TYPES:
        run.warned(line_of(data, needle), word)
    run.warned(line_of(data, 'maxProcesses="many"'), "maxProcesses")
    assert run.rules().count("  - name: ") == len(WRONG_TYPES)


def test_channel_enabled_maybe_is_a_warning(tmp_path: Path) -> None:
    data = export(channel().replace('enabled="true"', 'enabled="maybe"'))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'enabled="maybe"'), "maybe")


def test_purge_max_age_days_abc(tmp_path: Path) -> None:
    purge = ('<PurgingChannel name="Old" enabled="true" folder="D:\\CF\\Old" maxAgeDays="abc" action="Delete">\n'
             '  <RunSchedule mode="Daily" hour="3"/>\n</PurgingChannel>')
    data = export(channel(), purges=purge)
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'maxAgeDays="abc"'), "maxAgeDays")


def test_yes_no_one_zero_booleans(tmp_path: Path) -> None:
    body = ('  <FileNameOptions mapMacCharsToUnderscore="YES" cutFromLeft="1" maxLength="40"/>\n'
            '  <ColorManagement rgb="None" embedOutputProfile="no" ignoreEmbeddedProfile="0"/>')
    data = export(channel(body=body).replace('<InputFolder path="D:\\CF\\In"/>',
                                             '<InputFolder path="D:\\CF\\In" includeSubfolders="Yes"/>'))
    run = ok(migrate(tmp_path, data))
    assert run.warnings() == [], run.warnings()
    rules = run.rules()
    assert "windows_safe: true" in rules, rules
    assert "cut: left" in rules, rules
    assert "recursive = true" in (run.out / "config.toml").read_text(), (run.out / "config.toml").read_text()


def test_mixed_case_element_and_attribute_names(tmp_path: Path) -> None:
    data = export('<CHANNEL ID="1" NAME="Shout" ENABLED="TRUE">\n  <inputfolder PATH="D:\\CF\\In"/>\n'
                  '  <OUTPUTFOLDER Path="D:\\CF\\Out"/>\n  <outputFileFormat FORMAT="tiff"/>\n</CHANNEL>')
    run = ok(migrate(tmp_path, data))
    assert run.warnings() == [], run.warnings()
    assert "tiff" in run.rules()


# -- missing sections, ids, masters ------------------------------------------------------------------------------
def test_channel_without_input_folder_others_still_imported(tmp_path: Path) -> None:
    data = export(channel("1", "No input", inp=None), channel("3", "Fine", inp="D:\\CF\\In3", out="D:\\CF\\Out3"))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="1"'), "InputFolder", "not imported")
    assert "name: fine" in run.rules()
    assert "no-input" not in run.rules()


def test_channel_without_output_folder_others_still_imported(tmp_path: Path) -> None:
    data = export(channel("2", "No output", inp="D:\\CF\\In2", out=None),
                  channel("3", "Fine", inp="D:\\CF\\In3", out="D:\\CF\\Out3"))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="2"'), "OutputFolder")
    assert "name: fine" in run.rules()


def test_channel_without_output_folder_in_a_group_with_others(tmp_path: Path) -> None:
    grp = ('<ChannelGroup name="Mixed">\n' + channel("2", "No output", inp="D:\\CF\\In2", out=None) + "\n"
           + channel("3", "Fine", inp="D:\\CF\\In3", out="D:\\CF\\Out3") + "\n</ChannelGroup>")
    data = export(grp)
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="2"'), "OutputFolder")
    assert "name: fine" in run.rules()


def test_duplicate_channel_ids(tmp_path: Path) -> None:
    data = export(channel("7", "A", inp="D:\\CF\\A"), channel("7", "B", inp="D:\\CF\\B"))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'name="B"'), "7")
    rules = run.rules()
    assert "name: a" in rules and "name: b" in rules, rules


def test_slave_whose_master_is_missing_with_own_input(tmp_path: Path) -> None:
    data = export(channel("2", "Orphan", inp="D:\\CF\\Own", attrs=' masterChannel="99"'))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="2"'), "99")
    assert "orphan" in run.rules()


def test_slave_whose_master_is_missing_without_input(tmp_path: Path) -> None:
    data = export(channel("1", "Fine", inp="D:\\CF\\In"),
                  channel("2", "Orphan", inp=None, attrs=' masterChannel="99"'))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="2"'), "99", "not imported")


def test_master_slave_cycle(tmp_path: Path) -> None:
    data = export(channel("1", "Fine", inp="D:\\CF\\In"),
                  channel("2", "Ping", inp=None, attrs=' masterChannel="3"'),
                  channel("3", "Pong", inp=None, attrs=' masterChannel="2"'))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="2"'), "2")
    run.warned(line_of(data, 'id="3"'), "3")


def test_slave_chain_follows_to_the_root_master(tmp_path: Path) -> None:
    data = export(channel("1", "Root", inp="D:\\CF\\In"),
                  channel("2", "Mid", inp=None, out="D:\\CF\\Mid", attrs=' masterChannel="1"'),
                  channel("3", "Leaf", inp=None, out="D:\\CF\\Leaf", attrs=' masterChannel="2"'))
    run = ok(migrate(tmp_path, data))
    toml = (run.out / "config.toml").read_text()
    assert toml.count("[[hotfolders]]") == 1, toml
    rules = run.rules()
    for n in ("root", "mid", "leaf"):
        assert f"name: {n}" in rules, rules


def test_self_master(tmp_path: Path) -> None:
    data = export(channel("5", "Me", attrs=' masterChannel="5"'))
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'id="5"'), "master")


def test_two_channels_same_input_folder_fan_out(tmp_path: Path) -> None:
    data = export(channel("1", "Web", inp="D:\\CF\\In", out="D:\\CF\\Web"),
                  channel("2", "Print", inp="D:\\CF\\In\\", out="D:\\CF\\Print"))
    run = ok(migrate(tmp_path, data))
    toml = (run.out / "config.toml").read_text()
    assert toml.count("[[hotfolders]]") == 1, toml
    assert "shares hot folder" in run.report


def test_same_input_folder_in_another_case_is_one_hot_folder(tmp_path: Path) -> None:
    data = export(channel("1", "Web", inp="D:\\CF\\In", out="D:\\CF\\Web"),
                  channel("2", "Print", inp="d:\\cf\\IN\\", out="D:\\CF\\Print"))
    run = ok(migrate(tmp_path, data))
    toml = (run.out / "config.toml").read_text()
    assert toml.count("[[hotfolders]]") == 1, toml
    assert "shares hot folder" in run.report


def test_channel_names_that_slug_alike(tmp_path: Path) -> None:
    data = export(channel("1", "Web!", inp="D:\\CF\\A"), channel("2", "web?", inp="D:\\CF\\B"),
                  channel("3", "WEB", inp="D:\\CF\\C"), channel("4", "Wéb", inp="D:\\CF\\D"),
                  channel("5", "!!!", inp="D:\\CF\\E"))
    run = ok(migrate(tmp_path, data))
    names = re.findall(r"^  - name: (\S+)", run.rules(), re.M)
    assert len(names) == 5 and len(set(names)) == 5, names


# -- paths --------------------------------------------------------------------------------------------------------
ODD = [
    pytest.param("D:\\CF\\In Box\\Sport & News", "spaces-amp", id="spaces-amp"),
    pytest.param("D:\\CF\\Bildebyrå\\Ærlig Øst", "unicode", id="unicode"),
    pytest.param("D:\\CF\\In\\", "trailing-backslash", id="trailing-backslash"),
    pytest.param("D:/CF/Forward/Slash", "forward", id="forward-slashes"),
    pytest.param("D:\\CF\\100%\\%d%s", "percent", id="percent"),
    pytest.param("D:\\CF\\{x}\\{name}", "braces", id="braces"),
]


@pytest.mark.parametrize(("inp", "_label"), ODD)
def test_odd_characters_in_paths(tmp_path: Path, inp: str, _label: str) -> None:
    xml_inp = inp.replace("&", "&amp;")
    out = inp.rstrip("\\/") + " Out"
    data = export(channel(inp=xml_inp, out=out.replace("&", "&amp;")))
    run = ok(migrate(tmp_path, data))
    assert run.warnings() == [], run.warnings()
    assert xml_inp.replace("&amp;", "&").rstrip("\\/").split("\\")[-1].split("/")[-1] in \
        (run.out / "config.toml").read_text(encoding="utf-8")


def test_dotdot_component_in_path_is_not_silently_mapped(tmp_path: Path) -> None:
    data = export(channel(inp="D:\\CF\\In\\..\\..\\Windows", out="D:\\CF\\Out"))
    run = migrate(tmp_path, data)
    err = fails(run, "D:\\CF\\In\\..\\..\\Windows")
    assert str(line_of(data, "..\\..")) in err, err


def test_dotdot_component_error_says_why(tmp_path: Path) -> None:
    data = export(channel(inp="D:\\CF\\In\\..\\..\\Windows", out="D:\\CF\\Out"))
    err = fails(migrate(tmp_path, data))
    assert "'..'" in err or "dot" in err.lower() or "outside" in err.lower(), err
    assert "have no --map" not in err, err


def test_braces_and_percent_in_output_folder_and_file_names(tmp_path: Path) -> None:
    body = '  <FileNameOptions prefix="{pre}" suffix="}suf{ 100%" maxLength="50"/>'
    data = export(channel(out="D:\\CF\\Out\\{y}\\%d", body=body))
    run = ok(migrate(tmp_path, data))
    assert run.warnings() == [], run.warnings()
    assert "{{pre}}{stem}}}suf{{ 100%{ext}" in run.rules(), run.rules()


MACRO = """  <Metadata saveMetadataWithOutputFile="true">
    <GeneralMetadataMacro>
      <Field id="116" action="Replace" content="{content}"/>
    </GeneralMetadataMacro>
  </Metadata>"""


def test_unbalanced_braces_in_metadata_content(tmp_path: Path) -> None:
    run = ok(migrate(tmp_path, export(channel(body=MACRO.replace("{content}", "(c) 100% }{ Foto")))))
    assert "}}{{" in run.rules(), run.rules()


def test_placeholder_like_metadata_content_stays_literal(tmp_path: Path) -> None:
    run = ok(migrate(tmp_path, export(channel(body=MACRO.replace("{content}", "{stem}")))))
    assert 'value: "{{stem}}"' in run.rules(), run.rules()


ROUTING = """  <AutoRouting>
    <Routing type="{kind}" name="R" {attr}>
      <Map value="{value}" folder="{folder}"/>
      <Map value="POL" folder="Politics 100%"/>
    </Routing>
  </AutoRouting>"""


@pytest.mark.parametrize(("kind", "attr"), [("Metadata", 'field="15"'), ("FileNamePrefix", 'separator="_"')])
def test_braces_in_routing_map_folders(tmp_path: Path, kind: str, attr: str) -> None:
    body = ROUTING.format(kind=kind, attr=attr, value="SPO", folder="Sport {x}")
    ok(migrate(tmp_path, export(channel(body=body))))


@pytest.mark.parametrize(("kind", "attr"), [("Metadata", 'field="15"'), ("FileNamePrefix", 'separator="_"')])
def test_braces_in_routing_map_values(tmp_path: Path, kind: str, attr: str) -> None:
    body = ROUTING.format(kind=kind, attr=attr, value="{SPO}", folder="Sport")
    run = ok(migrate(tmp_path, export(channel(body=body))))
    assert "{SPO}" in run.rules()


def test_unmapped_paths_one_error_listing_each_with_line(tmp_path: Path) -> None:
    data = export(channel("1", "A", inp="E:\\Elsewhere\\In", out="\\\\srv\\share\\Out"),
                  channel("2", "B", inp="D:\\CF\\In", out="F:\\Out"),
                  purges='<PurgingChannel name="P" folder="G:\\Purge" maxAgeDays="3" action="Delete"/>')
    run = migrate(tmp_path, data)
    err = fails(run)
    for p, needle in (("E:\\Elsewhere\\In", "E:\\Elsewhere"), ("\\\\srv\\share\\Out", "srv\\share"),
                      ("F:\\Out", "F:\\Out"), ("G:\\Purge", "G:\\Purge")):
        assert p in err, err
        assert f"line {line_of(data, needle)}" in err, err
    assert err.count("flowd:") == 1, err


def test_input_folder_mapped_to_a_storage_is_an_error(tmp_path: Path) -> None:
    data = export(channel(inp="\\\\server\\share\\X\\In", out="D:\\CF\\Out"))
    run = migrate(tmp_path, data, maps=(MAP, "\\\\server\\share\\X=lake:web"))
    err = fails(run, "local folder")
    assert "\\\\server\\share\\X\\In" in err, err
    assert f"line {line_of(data, 'share')}" in err, err


AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzF"
           "T50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")


def test_output_to_storage_with_adls_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWD_LAKE_CONNECTION_STRING", AZURITE)
    data = export(channel(inp="D:\\CF\\In", out="\\\\server\\share\\X\\Web"))
    run = ok(migrate(tmp_path, data, "--storage", "lake=adls", maps=(MAP, "\\\\server\\share\\X=lake:web"),
                     env={"FLOWD_LAKE_CONNECTION_STRING": AZURITE}))
    assert 'kind = "adls"' in (run.out / "config.toml").read_text()
    assert "lake:web/" in run.rules() or "lake:web" in run.rules()


def test_adls_storage_without_its_env_is_not_called_an_importer_bug(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWD_LAKE_CONNECTION_STRING", raising=False)
    data = export(channel(inp="D:\\CF\\In", out="\\\\server\\share\\X\\Web"))
    run = migrate(tmp_path, data, "--storage", "lake=adls", maps=(MAP, "\\\\server\\share\\X=lake:web"))
    assert "bug of the importer" not in run.stdout + run.stderr
    assert run.rc == 0 or run.stderr.startswith("flowd: "), run.stderr


def test_output_folder_inside_input_folder(tmp_path: Path) -> None:
    data = export(channel(inp="D:\\CF\\In", out="D:\\CF\\In\\Done"))
    run = migrate(tmp_path, data)
    assert "bug of the importer" not in run.stdout + run.stderr
    if run.rc == 0:
        ok(run).warned(line_of(data, "Done"), "input")
    else:
        fails(run, f"line {line_of(data, 'Done')}")


@pytest.mark.parametrize("bad", ["D:\\CF", "=var/cf", "CF=var/cf", "D:\\CF\\..\\X=var/x", "D:\\CF=var/../x",
                                 "D:\\CF=lake:a/../b"])
def test_bad_map_syntax(tmp_path: Path, bad: str) -> None:
    run = migrate(tmp_path, export(channel()), maps=(bad,))
    fails(run, "--map")


def test_bad_storage_option(tmp_path: Path) -> None:
    run = migrate(tmp_path, export(channel()), "--storage", "lake=s3")
    fails(run, "--storage")


# -- scale ---------------------------------------------------------------------------------------------------------
def test_256_generated_channels(tmp_path: Path) -> None:
    chans = [channel(str(i), f"Channel {i}", inp=f"D:\\CF\\In{i % 64}", out=f"D:\\CF\\Out{i}",
                     body='  <OutputFileFormat format="JPEG" jpegQuality="High"/>\n'
                          '  <ImageSize mode="MaxPixels" width="1024" height="1024"/>')
             for i in range(256)]
    run = ok(migrate(tmp_path, export(*chans)))
    assert "256 channel(s)" in run.stdout, run.stdout
    assert re.search(r"\d+ mapped, \d+ approximated, \d+ not carried", run.stdout), run.stdout
    assert run.rules().count("  - name: ") == 256


# -- groups, schedules, purges --------------------------------------------------------------------------------------
def test_channel_group_settings_inherited(tmp_path: Path) -> None:
    grp = ('<ChannelGroup name="G">\n  <OutputFileFormat format="TIFF"/>\n'
           + channel("1", "In group", inp="D:\\CF\\In") + "\n"
           + channel("2", "Own format", inp="D:\\CF\\In2", body='  <OutputFileFormat format="PNG"/>')
           + "\n</ChannelGroup>")
    data = export(grp)
    run = ok(migrate(tmp_path, data))
    rules = run.rules()
    assert "type: tiff" in rules and "type: png" in rules, rules
    assert re.search(r'`OutputFileFormat format="TIFF"` \(from group G\)', run.report), run.report


SCHEDULES = [  # (RunSchedule, what the rule's schedule holds or None: a warning on its line)
    ('<RunSchedule mode="Monthly" day="31" hour="2"/>', "0 2 31 * *"),
    ('<RunSchedule mode="Weekly" weekday="sunday" hour="22"/>', "0 22 * * 0"),
    ('<RunSchedule mode="weekly" weekday="MONDAY" hour="7" minute="30"/>', "30 7 * * 1"),
    ('<RunSchedule mode="Weekly" weekday="Funday" hour="21"/>', None),
    ('<RunSchedule mode="Daily" hour="25"/>', None),
    ('<RunSchedule mode="Hourly" minute="61"/>', None),
    ('<RunSchedule mode="Monthly" day="0"/>', None),
]


@pytest.mark.parametrize("where", ["channel", "purge"])
def test_schedules(tmp_path: Path, where: str) -> None:
    chans, purges = [channel("0", "Base", inp="D:\\CF\\Base")], []
    for n, (sched, _expect) in enumerate(SCHEDULES):
        if where == "channel":
            chans.append(channel(str(n + 1), f"Sched {n}", inp=f"D:\\CF\\In{n}", out=f"D:\\CF\\Out{n}",
                                 body="  " + sched))
        else:
            purges.append(f'<PurgingChannel name="Sweep {n}" enabled="true" folder="D:\\CF\\Old{n}" maxAgeDays="5" '
                          f'action="Delete">\n  {sched}\n</PurgingChannel>')
    data = export(*chans, purges="\n".join(purges))
    run = ok(migrate(tmp_path, data, "--timezone", "Europe/Oslo"))
    rules = run.rules() + (run.out / "config.toml").read_text(encoding="utf-8")
    assert "Europe/Oslo" in rules, rules
    if where == "channel":
        assert "skipped in shorter months" in run.report
    for sched, expect in SCHEDULES:
        if expect is not None:
            assert f'"{expect}"' in rules, (expect, rules)
        else:
            run.warned(line_of(data, sched), "")


def test_purging_channel_without_folder(tmp_path: Path) -> None:
    purge = '<PurgingChannel name="Nowhere" enabled="true" maxAgeDays="5" action="Delete"/>'
    data = export(channel(), purges=purge)
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, "Nowhere"), "folder")


def test_purging_move_without_move_to(tmp_path: Path) -> None:
    purge = '<PurgingChannel name="Mover" enabled="true" folder="D:\\CF\\Old" maxAgeDays="5" action="Move"/>'
    data = export(channel(), purges=purge)
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, "Mover"), "move")


def test_timezone_not_a_zone(tmp_path: Path) -> None:
    fails(migrate(tmp_path, export(channel()), "--timezone", "Not/AZone"), "Not/AZone")


def test_metadata_config_missing_file(tmp_path: Path) -> None:
    fails(migrate(tmp_path, export(channel()), "--metadata-config", "MetadataConfiguration.xml"),
          "MetadataConfiguration.xml")


def test_metadata_config_is_garbage(tmp_path: Path) -> None:
    (tmp_path / "meta.xml").write_text("<not xml", encoding="utf-8")
    fails(migrate(tmp_path, export(channel()), "--metadata-config", "meta.xml"), "meta.xml")


def test_macro_field_not_in_field_table(tmp_path: Path) -> None:
    body = """  <Metadata saveMetadataWithOutputFile="true">
    <GeneralMetadataMacro>
      <Field id="116" action="Replace" content="(c) Example"/>
      <Field id="9999" action="Replace" content="mystery"/>
    </GeneralMetadataMacro>
  </Metadata>"""
    data = export(channel(body=body))
    run = ok(migrate(tmp_path, data))
    ln = line_of(data, 'id="9999"')
    run.warned(ln, "9999")
    assert re.search(rf"\| {ln} \| `Field [^|]*9999[^|]*` \| not carried \|", run.report), run.report
    assert "mystery" not in run.rules()


def test_character_map_bad_codes(tmp_path: Path) -> None:
    codes = ["47", "abc", "55296", "-1", "99999999999", "0"]
    maps = "\n".join(f'      <Map code="{c}" replacement="x"/>' for c in codes)
    body = (f'  <FileNameOptions maxLength="40">\n    <CharacterMap>\n      <Map code="32" replacement="_"/>\n'
            f'{maps}\n      <Map replacement="y"/>\n    </CharacterMap>\n  </FileNameOptions>')
    data = export(channel(body=body))
    run = ok(migrate(tmp_path, data))
    for c in codes:
        run.warned(line_of(data, f'code="{c}"'), c)
    rules = run.rules()
    assert "' ': _" in rules or '" ": _' in rules, rules
    assert '"/"' not in rules and "'/'" not in rules, rules


def test_out_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x", encoding="utf-8")
    fails(migrate(tmp_path, export(channel())), "--out")


def test_markdown_and_yaml_hostile_channel_names(tmp_path: Path) -> None:
    names = ['Pipe | name', 'New&#10;line', 'Back`tick` &lt;b&gt;', 'Quote &quot;q&quot; \\ slash', '# not a comment',
             '- item: {x}']
    data = export(*(channel(str(n), nm, inp=f"D:\\CF\\In{n}", out=f"D:\\CF\\Out{n}") for n, nm in enumerate(names)))
    run = ok(migrate(tmp_path, data, "--map", "D:\\CF\\Out0=lake:x"))
    report = run.report
    assert "## Warnings" in report
    for ln in report.splitlines():
        if ln.startswith("| ") and "`Channel name=" in ln:
            assert len(re.findall(r"(?<!\\)\|", ln)) == 6, ln  # five cells, the name's pipe escaped
    assert run.rules().count("  - name: ") == len(names)


def test_namespaced_export_with_comments_pi_and_cdata(tmp_path: Path) -> None:
    data = export(channel(body="  <!-- a comment -->\n  <?cf-pi data?>"),
                  root_attrs=' version="8.0" xmlns="urn:fotoware:colorfactory"')
    data = data.replace('<ProcessChannels>', '<ProcessChannels><![CDATA[ignored text]]>')
    ok(migrate(tmp_path, data))


def test_nested_channel_group_and_unnamed_group(tmp_path: Path) -> None:
    inner = '<ChannelGroup name="Inner">\n' + channel("2", "Deep", inp="D:\\CF\\In2") + "\n</ChannelGroup>"
    outer = '<ChannelGroup>\n  <OutputFileFormat format="PNG"/>\n' + channel("1", "Top") + "\n" + inner + \
        "\n</ChannelGroup>"
    data = export(outer)
    run = ok(migrate(tmp_path, data))
    run.warned(line_of(data, 'name="Inner"'), "ChannelGroup")
    assert "type: png" in run.rules()


def test_duplicate_attribute_and_bad_char_reference_are_malformed(tmp_path: Path) -> None:
    data = export(channel().replace('name="Web"', 'name="Web" name="Again"'))
    fails(migrate(tmp_path, data, name="dup.xml"), where=f"{line_of(data, 'Again')}")
    data2 = export(channel(name="nul&#0;char"))
    fails(migrate(tmp_path, data2, name="nul.xml"), where=f"{line_of(data2, 'nul&#0;')}")


def test_very_long_names_and_empty_ids(tmp_path: Path) -> None:
    long = "Ø" * 5000
    data = export(channel("", long, inp="D:\\CF\\" + "x" * 200), channel(" ", long, inp="D:\\CF\\In2"))
    run = ok(migrate(tmp_path, data))
    names = re.findall(r"^  - name: (\S+)", run.rules(), re.M)
    assert len(names) == 2 and len(set(names)) == 2 and all(len(n) <= 64 for n in names), names


def test_out_folder_other_files_untouched(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine", encoding="utf-8")
    ok(migrate(tmp_path, export(channel())))
    assert (tmp_path / "out" / "keep.txt").read_text(encoding="utf-8") == "mine"
