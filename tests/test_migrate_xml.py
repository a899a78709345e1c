"""flowd.migrate.xmlsafe: the defensive reader of Color Factory exports (encodings, hostile DTDs, broken
files, namespaces, line numbers). Every error must be one line `FILE:LINE:COL: ...` without traceback text."""

from __future__ import annotations

import os
import random
import re
import socket
import time
from pathlib import Path

import pytest
from lxml import etree

from flowd.errors import FlowdError
from flowd.migrate import xmlsafe
from flowd.migrate.xmlsafe import Document, ExportError, Node, read_export, read_export_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "colorfactory"  # copies of ../shared/fixtures/colorfactory

SMALL = """<?xml version="1.0" encoding="{enc}"?>
<ColorFactoryConfiguration version="7.1">
  <ProcessChannels>
    <Channel id="10" name="{name}" enabled="true">
      <InputFolder path="D:\\CF\\In"/>
    </Channel>
  </ProcessChannels>
</ColorFactoryConfiguration>
"""


def write(tmp_path: Path, data: bytes | str, name: str = "export.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(tmp_path: Path, data: bytes | str) -> Document:
    return read_export(write(tmp_path, data))


def fail(tmp_path: Path, data: bytes | str, *, where: str | None = None, name: str = "cf-export.xml",
         **kwargs: int) -> str:
    """The ExportError message for this content; checks the common rules of every error message."""
    path = write(tmp_path, data, name)
    with pytest.raises(ExportError) as caught:
        read_export(path, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    assert "\n" not in message
    assert "Traceback" not in message and "lxml.etree" not in message and "XMLSyntaxError" not in message
    if where is not None:
        # "3:7" is exact; "3:" means line 3, any column
        pattern = re.escape(f"{path}:{where}") + (r"\d+: " if where.endswith(":") else ": ")
        assert re.match(pattern, message), message
    return message


def channel(doc: Document) -> Node:
    return doc.root.children[0].children[0]


# --- structure ---------------------------------------------------------------------------------------------


def test_plain_utf8_tree_lines_and_attributes(tmp_path: Path) -> None:
    doc = read(tmp_path, SMALL.format(enc="utf-8", name="  Photo desk  "))
    assert doc.encoding == "utf-8" and doc.warnings == []
    assert (doc.root.tag, doc.root.name, doc.root.line) == ("colorfactoryconfiguration", "ColorFactoryConfiguration", 2)
    ch = channel(doc)
    assert (ch.tag, ch.name, ch.line) == ("channel", "Channel", 4)
    assert list(ch.attrs) == ["id", "name", "enabled"]
    assert ch.attrs["name"] == xmlsafe.Attr("name", "Photo desk", 4)
    assert ch.children[0].attrs["path"].value == "D:\\CF\\In"
    assert ch.children[0].line == 5 and ch.children[0].children == [] and ch.text == ""


def test_read_export_bytes_matches_read_export(tmp_path: Path) -> None:
    text = SMALL.format(enc="utf-8", name="x")
    assert read_export_bytes(text.encode(), str(tmp_path / "export.xml")) == read(tmp_path, text)


def test_element_line_is_the_start_tag_line_for_multiline_attributes(tmp_path: Path) -> None:
    doc = read(tmp_path, '<R>\n\n  <InputFolder\n     path="a"\n     includeSubfolders="true"/>\n  <Next/>\n</R>')
    first, second = doc.root.children
    assert first.line == 3 and second.line == 6
    assert first.attrs["path"].line == 4 and first.attrs["includesubfolders"].line == 5


def test_attribute_lines_in_long_start_tags(tmp_path: Path) -> None:
    doc = read(tmp_path, '<R xmlns:x="urn:x">\n<C a="1 b=2"\n   x:b = \'2\'\n   c="3"><D c="9"/></C>\n</R>')
    c = doc.root.children[0]
    assert (c.line, c.attrs["a"].line, c.attrs["b"].line, c.attrs["c"].line) == (2, 2, 3, 4)
    assert c.children[0].line == 4 and c.children[0].attrs["c"].line == 4


def test_start_tags_in_comments_cdata_and_pis_do_not_shift_lines(tmp_path: Path) -> None:
    text = ('<R>\n<!-- <C a="x"/>\n <C> -->\n<T><![CDATA[\n<C>\n]]></T><?pi <C>\n?>\n<C\n a="1"/>\n'
            '<cf:C xmlns:cf="urn:x"\n a="2"/></R>')
    doc = read(tmp_path, text)
    assert [(n.name, n.line) for n in doc.root.children] == [("T", 4), ("C", 8), ("C", 10)]
    assert doc.root.children[2].attrs["a"].line == 11


def test_line_numbers_beyond_65535(tmp_path: Path) -> None:
    doc = read(tmp_path, "<R>" + "\n" * 70000 + "<Far/></R>")
    assert doc.root.children[0].line == 70001


def test_text_is_stripped_and_cdata_comments_pis_are_handled(tmp_path: Path) -> None:
    doc = read(tmp_path, "<?xml version='1.0'?>\n<!-- head -->\n<?cf pi?>\n<R>\n <T>  a<![CDATA[<b>&]]><!-- c -->c  </T>"
                         "\n <!-- between -->\n <?skip me?>\n <U/>\n</R>")
    t, u = doc.root.children
    assert t.text == "a<b>&c"
    assert [n.name for n in doc.root.children] == ["T", "U"] and u.line == 8


def test_mixed_text_segments_are_joined(tmp_path: Path) -> None:
    doc = read(tmp_path, "<R>one<x/>two</R>")
    assert doc.root.text == "onetwo" and doc.root.children[0].text == ""


def test_standard_entities_and_character_references(tmp_path: Path) -> None:
    doc = read(tmp_path, '<R a="x &amp; y &lt; z &#229;&#xE5;">&lt;T&gt; &quot;&apos;&#229;</R>')
    assert doc.root.attrs["a"].value == "x & y < z åå"
    assert doc.root.text == "<T> \"'å"


def test_namespaces_give_local_names_and_xmlns_is_never_an_attribute(tmp_path: Path) -> None:
    doc = read(tmp_path, '<cf:ColorFactoryConfiguration xmlns:cf="urn:x" xmlns="urn:default"\n'
                         ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
                         ' xsi:noNamespaceSchemaLocation="cf.xsd" cf:Version="7">\n'
                         '  <cf:Channel cf:ID="1"/>\n  <Channel id="2"/>\n</cf:ColorFactoryConfiguration>')
    assert (doc.root.tag, doc.root.name) == ("colorfactoryconfiguration", "ColorFactoryConfiguration")
    assert list(doc.root.attrs) == ["nonamespaceschemalocation", "version"]
    assert doc.root.attrs["nonamespaceschemalocation"].name == "noNamespaceSchemaLocation"
    assert [(c.tag, c.name, c.attrs["id"].name) for c in doc.root.children] == [("channel", "Channel", "ID")] + [
        ("channel", "Channel", "id")]
    assert all(not k.startswith("xmlns") for c in [doc.root, *doc.root.children] for k in c.attrs)


def test_attributes_differing_only_in_case_warn_and_keep_the_first(tmp_path: Path) -> None:
    doc = read(tmp_path, '<R>\n\n\n\n\n\n  <Channel ID="1" id="2" Name="a"/>\n</R>')
    ch = doc.root.children[0]
    assert ch.attrs["id"] == xmlsafe.Attr("ID", "1", 7) and ch.attrs["name"].value == "a"
    assert doc.warnings == [(7, "'ID' and 'id' on line 7: the first is used")]


def test_namespaced_attribute_clashing_with_plain_one_warns(tmp_path: Path) -> None:
    doc = read(tmp_path, '<R xmlns:x="urn:x"><Routing type="Metadata" x:type="Other"/></R>')
    assert doc.root.children[0].attrs["type"].value == "Metadata"
    assert len(doc.warnings) == 1 and "'type' and 'type'" in doc.warnings[0][1]


def test_root_name_is_not_checked(tmp_path: Path) -> None:
    assert read(tmp_path, "<SomethingElse/>").root.tag == "somethingelse"


def test_plain_doctype_is_accepted(tmp_path: Path) -> None:
    doc = read(tmp_path, '<?xml version="1.0"?>\n<!-- x -->\n<!DOCTYPE ColorFactoryConfiguration >\n'
                         "<ColorFactoryConfiguration/>")
    assert doc.root.name == "ColorFactoryConfiguration" and doc.root.line == 4


def test_leading_blank_lines_before_the_declaration_are_tolerated(tmp_path: Path) -> None:
    doc = read(tmp_path, '\r\n\n<?xml version="1.0" encoding="utf-8"?>\n<R>\n<C/></R>')
    assert doc.root.line == 4 and doc.root.children[0].line == 5
    assert doc.warnings and "before the XML declaration" in doc.warnings[0][1]


def test_the_shared_fixtures_read(tmp_path: Path) -> None:
    files = sorted(FIXTURES.glob("*.xml")) if FIXTURES.is_dir() else []
    if not files:
        pytest.skip("no shared Color Factory fixtures here")
    for path in files:
        doc = read_export(path)
        assert doc.root.children and doc.encoding == "utf-8", path


# --- encodings ---------------------------------------------------------------------------------------------


def test_utf8_with_bom(tmp_path: Path) -> None:
    doc = read(tmp_path, b"\xef\xbb\xbf" + SMALL.format(enc="utf-8", name="Bjørn å").encode())
    assert doc.encoding == "utf-8" and doc.warnings == [] and channel(doc).attrs["name"].value == "Bjørn å"


@pytest.mark.parametrize(("codec", "bom"), [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")])
def test_utf16_with_bom(tmp_path: Path, codec: str, bom: bytes) -> None:
    doc = read(tmp_path, bom + SMALL.format(enc="UTF-16", name="Bjørn å €").encode(codec))
    assert doc.encoding == "utf-16" and doc.warnings == []
    assert channel(doc).attrs["name"].value == "Bjørn å €" and channel(doc).line == 4


def test_utf16_error_lines_are_right(tmp_path: Path) -> None:
    broken = SMALL.format(enc="utf-16", name="å").replace("</Channel>", "</Chanel>")
    fail(tmp_path, b"\xff\xfe" + broken.encode("utf-16-le"), where="6:")


def test_utf16_without_bom_but_declared(tmp_path: Path) -> None:
    doc = read(tmp_path, SMALL.format(enc="UTF-16", name="å").encode("utf-16-le"))
    assert doc.encoding == "utf-16" and channel(doc).attrs["name"].value == "å"


def test_windows1252_declared(tmp_path: Path) -> None:
    doc = read(tmp_path, SMALL.format(enc="windows-1252", name="Bjørn å – €").encode("cp1252"))
    assert doc.encoding == "windows-1252" and doc.warnings == []
    assert channel(doc).attrs["name"].value == "Bjørn å – €" and channel(doc).line == 4


def test_iso8859_1_declared(tmp_path: Path) -> None:
    doc = read(tmp_path, SMALL.format(enc="ISO-8859-1", name="Bjørn å").encode("latin-1"))
    assert doc.encoding == "iso-8859-1" and doc.warnings == [] and channel(doc).attrs["name"].value == "Bjørn å"


def test_iso8859_1_declared_with_windows_1252_bytes(tmp_path: Path) -> None:
    doc = read(tmp_path, SMALL.format(enc="iso-8859-1", name="5 €").encode("cp1252"))
    assert doc.encoding == "windows-1252" and channel(doc).attrs["name"].value == "5 €"
    assert doc.warnings and "windows-1252" in doc.warnings[0][1]


def test_undeclared_non_utf8_is_read_as_windows_1252(tmp_path: Path) -> None:
    text = "<ColorFactoryConfiguration>\n  <Channel name='Bjørn å'/>\n</ColorFactoryConfiguration>"
    doc = read(tmp_path, text.encode("cp1252"))
    assert doc.encoding == "windows-1252" and doc.root.children[0].attrs["name"].value == "Bjørn å"
    assert doc.warnings == [(2, "not UTF-8 and no encoding declared: read as windows-1252 "
                                "(first non-UTF-8 byte on line 2)")]


def test_declared_utf8_but_windows_1252_bytes_is_tolerated(tmp_path: Path) -> None:
    doc = read(tmp_path, SMALL.format(enc="utf-8", name="å").encode("cp1252"))
    assert doc.encoding == "windows-1252" and channel(doc).attrs["name"].value == "å"
    assert doc.warnings and doc.warnings[0][0] == 4 and "declared 'utf-8'" in doc.warnings[0][1]


def test_windows_1252_unassigned_bytes_do_not_fail(tmp_path: Path) -> None:
    doc = read(tmp_path, b"<R a='\x81\x8d'/>")
    assert doc.encoding == "windows-1252" and doc.root.attrs["a"].value == "\x81\x8d"


def test_bom_wins_over_a_contradicting_declaration(tmp_path: Path) -> None:
    doc = read(tmp_path, b"\xef\xbb\xbf" + SMALL.format(enc="windows-1252", name="å").encode())
    assert doc.encoding == "utf-8" and channel(doc).attrs["name"].value == "å"
    assert doc.warnings and "byte order mark says utf-8" in doc.warnings[0][1]


def test_unknown_declared_encoding(tmp_path: Path) -> None:
    message = fail(tmp_path, SMALL.format(enc="klingon-8", name="x"), where="1:")
    assert "unknown encoding 'klingon-8'" in message


def test_python_only_codecs_are_unknown_encodings(tmp_path: Path) -> None:
    assert "unknown encoding 'base64'" in fail(tmp_path, SMALL.format(enc="base64", name="x"))
    assert "unknown encoding 'unicode_escape'" in fail(tmp_path, SMALL.format(enc="unicode_escape", name="x"))


def test_lines_and_columns_survive_reencoding(tmp_path: Path) -> None:
    text = '<?xml version="1.0" encoding="windows-1252"?><R a="ø"><b></R>'
    plain = text.replace(' encoding="windows-1252"', " " * len(' encoding="windows-1252"'))
    with pytest.raises(etree.XMLSyntaxError) as direct:
        etree.fromstring(plain.encode())
    line, column = direct.value.position
    fail(tmp_path, text.encode("cp1252"), where=f"{line}:{column}")
    fail(tmp_path, ("\n" * 4 + "<R a='ø'>\n<b>\n</R>").encode("cp1252"), where="7:")


def test_invalid_bytes_for_a_declared_multibyte_encoding(tmp_path: Path) -> None:
    data = SMALL.format(enc="shift_jis", name="x").encode() .replace(b'name="x"', b'name="\x81\xff"')
    assert "not valid shift_jis" in fail(tmp_path, data, where="4:")


# --- DTDs and entities: refused before anything is expanded or fetched -------------------------------------


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    started = time.perf_counter()
    message = fail(tmp_path, BILLION_LAUGHS, where="3:2")
    assert "entity declarations / external DTDs are refused (entity declaration 'lol')" in message
    assert time.perf_counter() - started < 1


def test_quadratic_blowup_is_refused(tmp_path: Path) -> None:
    text = f'<!DOCTYPE r [<!ENTITY a "{"x" * 100_000}">]>\n<r>{"&a;" * 50_000}</r>'
    assert "entity declaration 'a'" in fail(tmp_path, text, where="1:14")


def test_xxe_file_entity_is_refused_and_the_secret_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711")
    text = f'<?xml version="1.0"?>\n<!DOCTYPE r [\n  <!ENTITY xxe SYSTEM "file://{secret}">\n]>\n<r a="&xxe;">&xxe;</r>'
    message = fail(tmp_path, text, where="3:3")
    assert "external entity declaration 'xxe'" in message and "TOP-SECRET" not in message


def test_xxe_via_parameter_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711")
    dtd = write(tmp_path, f'<!ENTITY % file SYSTEM "file://{secret}">\n<!ENTITY % all "<!ENTITY send \'%file;\'>">',
                "evil.dtd")
    text = f'<!DOCTYPE r [\n<!ENTITY % remote SYSTEM "file://{dtd}">\n%remote;\n%all;\n]>\n<r>&send;</r>'
    message = fail(tmp_path, text, where="2:1")
    assert "external parameter entity declaration 'remote'" in message and "TOP-SECRET" not in message


def test_parameter_entity_reference_alone_is_refused(tmp_path: Path) -> None:
    assert "parameter entity reference %p;" in fail(tmp_path, "<!DOCTYPE r [\n  %p;\n]>\n<r/>", where="2:3")


def test_external_dtd_over_http_is_refused_without_connecting(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        text = f'<?xml version="1.0"?>\n<!DOCTYPE r SYSTEM "http://127.0.0.1:{port}/cf.dtd">\n<r>&ent;</r>'
        message = fail(tmp_path, text, where="2:1")
        assert f'external DTD: SYSTEM "http://127.0.0.1:{port}/cf.dtd"' in message
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_external_dtd_file_and_public_id_are_refused(tmp_path: Path) -> None:
    dtd = write(tmp_path, '<!ENTITY x "expanded">', "cf.dtd")
    assert "external DTD: SYSTEM" in fail(tmp_path, f'<!DOCTYPE r SYSTEM "{dtd}"><r>&x;</r>', where="1:1")
    assert "external DTD: PUBLIC" in fail(
        tmp_path, '<!DOCTYPE r PUBLIC "-//CF//DTD//EN" "http://example.invalid/cf.dtd"><r/>', where="1:1")


def test_internal_subset_without_entities_is_refused_too(tmp_path: Path) -> None:
    message = fail(tmp_path, '<!DOCTYPE r [\n<!ATTLIST r a CDATA "default">\n]>\n<r/>', where="1:13")
    assert "internal subset" in message


def test_doctype_hidden_after_comments_and_pis_is_found(tmp_path: Path) -> None:
    text = '<?xml version="1.0"?>\n<!-- <r/> -->\n<?pi ?>\n<!DOCTYPE r [<!ENTITY e "x">]>\n<r>&e;</r>'
    assert "entity declaration 'e'" in fail(tmp_path, text, where="4:14")


def test_undefined_entity(tmp_path: Path) -> None:
    message = fail(tmp_path, "<R>\n  <Channel name='a &foo; b'/>\n</R>", where="2:")
    assert "'foo' not defined" in message
    assert "'bar' not defined" in fail(tmp_path, "<!DOCTYPE R>\n<R>\n &bar;</R>", where="3:")


# --- broken files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("<R>\n  <Channel>\n</R>", "3:", "tag mismatch"),  # unclosed tag
        ("<R>\n  <Channel></Chanel>\n</R>", "2:", "tag mismatch"),  # mismatched tag
        ("<R/>\n<R/>", "2:", "Extra content"),  # two roots
        ("<R>\n</R>\n  garbage", "3:", "Extra content"),  # garbage after the root
        ("<R>\n <C a=1/>\n</R>", "2:", "AttValue"),  # unquoted attribute
        ("<R>\n <C a='1' a='2'/>\n</R>", "2:", "redefined"),  # duplicate attribute
        ("<R>\n <1C/>\n</R>", "2:", ""),  # invalid name
        ("<R>\n <C/>\n", "3:", ""),  # never closed
    ],
)
def test_malformed_xml(tmp_path: Path, text: str, where: str, words: str) -> None:
    message = fail(tmp_path, text, where=where)
    assert "malformed XML: " in message and words in message
    assert ", line " not in message  # lxml's position suffix is cleaned off


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    with pytest.raises(ExportError) as caught:
        read_export(path)
    assert str(caught.value) == f"{path}: the file is empty"


@pytest.mark.parametrize("data", [b"  \r\n\t\n  ", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n", "\n\n".encode("utf-16")])
def test_whitespace_only_or_bom_only(tmp_path: Path, data: bytes) -> None:
    assert fail(tmp_path, data).endswith(": the file is empty (only whitespace)")


def test_binary_junk(tmp_path: Path) -> None:
    junk = random.Random(7).randbytes(4096)
    fail(tmp_path, b"\x01\x02" + junk, where="1:")


@pytest.mark.parametrize(
    ("data", "what"),
    [(b"PK\x03\x04\x14\x00\x00\x00export.xml", "a ZIP archive"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
     (b"%PDF-1.7\n", "a PDF document")],
)
def test_other_file_types(tmp_path: Path, data: bytes, what: str) -> None:
    assert fail(tmp_path, data, where="1:1").endswith(f"this is {what}, not an XML export")


def test_nul_byte(tmp_path: Path) -> None:
    assert "NUL character" in fail(tmp_path, b"<R>\n  <C a='x\x00y'/>\n</R>", where="2:10")


def test_truncated_file(tmp_path: Path) -> None:
    text = SMALL.format(enc="utf-8", name="x")
    cut = text[: text.index('enabled="t') + 10]
    assert "malformed XML" in fail(tmp_path, cut, where="4:")


def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    message = fail(tmp_path, "<a>\n" * 10_000 + "</a>" * 10_000, where="257:")
    assert "nested deeper than 256 levels" in message


def test_nesting_lxml_allows_converts_without_recursion(tmp_path: Path) -> None:
    doc = read(tmp_path, "<a>\n" * 250 + "</a>" * 250)
    node, depth = doc.root, 1
    while node.children:
        node, depth = node.children[0], depth + 1
    assert depth == 250 and node.line == 250


# --- the file itself ---------------------------------------------------------------------------------------


def test_larger_than_the_limit_is_refused_without_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(xmlsafe, "open", never, raising=False)
    message = fail(tmp_path, "<R>" + " " * 2000 + "</R>", max_bytes=1000)
    assert "2007 bytes, more than the limit of 1000 bytes" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.xml"
    with pytest.raises(ExportError) as caught:
        read_export(path)
    assert str(caught.value) == f"{path}: cannot read the export: No such file or directory"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="it is a directory"):
        read_export(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "<R/>")
    path.chmod(0)
    try:
        with pytest.raises(ExportError) as caught:
            read_export(path)
        assert str(caught.value) == f"{path}: cannot read the export: Permission denied"
    finally:
        path.chmod(0o600)


def test_export_error_is_a_flowd_error_and_takes_a_whole_sentence() -> None:
    assert issubclass(ExportError, FlowdError)
    assert str(ExportError("x.xml", "bad", 3, 4)) == "x.xml:3:4: bad"
    assert str(ExportError("x.xml", "bad")) == "x.xml: bad"
    assert str(ExportError("x.xml: already said")) == "x.xml: already said"


# --- performance -------------------------------------------------------------------------------------------

CHANNEL = """    <Channel id="{i}" name="Channel {i} – Bjørn" enabled="true" priority="Medium">
      <InputFolder path="\\\\cfserver\\images\\In{i}" includeSubfolders="true" mirrorSubfolders="true"
                   removeEmptyFolders="true" waitUntilFileStopsGrowingSec="10" copyFileDate="true"/>
      <OutputFolder path="\\\\cfserver\\images\\Out{i}"/>
      <OutputFileFormat format="JPEG" jpegQuality="90"/>
      <RunSchedule mode="RunWithDelay" seconds="30"/>
      <InputFileFormats rgb="Normal" cmyk="Normal" grayscale="Normal" raw="Ignore" pdf="Copy" unknown="MoveToUnknown"/>
      <ColorManagement rgb="None" cmyk="ConvertToRGB" outputProfile="sRGB IEC61966-2.1" embedOutputProfile="true"/>
      <ImageSize mode="MaxPixels" width="2048" height="2048" resolution="72"/>
      <Metadata saveMetadataWithOutputFile="true">
        <GeneralMetadataMacro>
{fields}
        </GeneralMetadataMacro>
      </Metadata>
      <AutoRouting>
        <Routing type="FileNamePrefix" separator="_" stripPrefix="true">
{maps}
        </Routing>
      </AutoRouting>
    </Channel>
"""


def test_a_256_channel_export_reads_fast(tmp_path: Path) -> None:
    fields = "\n".join(f'          <Field id="{100 + n}" action="Replace" content="%%INSDATE {n}"/>' for n in range(20))
    maps = "\n".join(f'          <Map value="P{n}" folder="Folder {n}"/>' for n in range(20))
    body = "".join(CHANNEL.format(i=i, fields=fields, maps=maps) for i in range(256))
    text = f'<?xml version="1.0" encoding="utf-8"?>\n<ColorFactoryConfiguration>\n  <ProcessChannels>\n{body}' \
           "  </ProcessChannels>\n</ColorFactoryConfiguration>\n"
    path = write(tmp_path, text.encode("utf-16"))
    started = time.perf_counter()
    doc = read_export(path)
    elapsed = time.perf_counter() - started
    print(f"\n256 channels, {path.stat().st_size / 1e6:.1f} MB of UTF-16: read in {elapsed * 1000:.0f} ms")
    channels = doc.root.children[0].children
    assert len(channels) == 256 and channels[-1].attrs["id"].value == "255"
    assert channels[255].line == 3 + 255 * (CHANNEL.count("\n") + 38) + 1
