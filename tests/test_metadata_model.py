"""flowd.metadata: Fotoware field numbers, EXIF/IPTC/XMP read and write, sidecars, dynamic codes, macros.

Input metadata is written by exiftool and every write of flowd's is read back with exiftool, an independent
implementation, so exiv2 is never checked against itself. Images are made here with libvips (and PSDs with
ImageMagick), a few pixels each, so the whole file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pyvips

from flowd.errors import ConfigError, PermanentError
from flowd.metadata.codes import KNOWN_CODES, CodeFacts, expand_codes, unknown_codes
from flowd.metadata.fields import DEFAULT_FIELDS, FieldTable, UnknownField
from flowd.metadata.macro import apply
from flowd.metadata.model import Metadata
from flowd.metadata.sidecar import find_sidecar, read_text_template

IMAGEMAGICK = "/usr/bin/convert-im6.q16"
FORMATS = ("jpg", "tif", "png", "webp", "psd")
WITH_IPTC = ("jpg", "tif", "png", "psd")  # WebP has no IPTC block
TEXT = "Ærøskøbing – café ©"
F = DEFAULT_FIELDS.resolve

# On a developer machine a missing tool skips these tests; in CI (where .ci/run installs it) it fails them.
CI = bool(os.environ.get("CI"))
pytestmark = pytest.mark.skipif((shutil.which("exiftool") is None or not Path(IMAGEMAGICK).exists()) and not CI,
                                reason="needs exiftool and ImageMagick (apt-get install libimage-exiftool-perl "
                                       "imagemagick)")

# The sample site schema (shared/fixtures/colorfactory/MetadataConfiguration.xml), kept here so the test
# runs on a clean clone.
SITE_XML = """\
<?xml version="1.0" encoding="utf-8"?>
<!-- Synthetic site metadata schema for flowd's tests; the real element names are undocumented. -->
<MetadataConfiguration version="1">
  <Namespace prefix="dc" uri="http://purl.org/dc/elements/1.1/">
    <Field id="5" xmpName="title" displayName="Title" type="Text"/>
    <Field id="25" xmpName="subject" displayName="Keywords" type="Bag"/>
    <Field id="80" xmpName="creator" displayName="Byline" type="Text"/>
    <Field id="116" xmpName="rights" displayName="Copyright" type="Text"/>
    <Field id="120" xmpName="description" displayName="Caption" type="Text" multiline="true"/>
  </Namespace>
  <Namespace prefix="photoshop" uri="http://ns.adobe.com/photoshop/1.0/">
    <Field id="15" xmpName="Category" displayName="Category" type="Text" maxLength="3"/>
    <Field id="55" xmpName="DateCreated" displayName="Date created" type="Date"/>
    <Field id="110" xmpName="Credit" displayName="Credit" type="Text"/>
    <Field id="115" xmpName="Source" displayName="Source" type="Text"/>
  </Namespace>
  <Namespace prefix="exm" uri="http://ns.example-media.test/fields/1.0/">
    <Field id="200" xmpName="OriginalFileName" displayName="Original file name" type="Text"/>
    <Field id="412" xmpName="Desk" displayName="Desk" type="Text"/>
    <Field id="413" xmpName="Embargo" displayName="Embargo until" type="Date"/>
    <Field id="414" xmpName="PrintPriority" displayName="Print priority" type="Integer" min="1" max="9"/>
  </Namespace>
</MetadataConfiguration>
"""


# -- helpers ----------------------------------------------------------------------------------------------
def exiftool(*args: str | Path) -> None:
    subprocess.run(["exiftool", "-q", "-q", "-overwrite_original", *map(str, args)], check=True)


def exif_read(*paths: Path, args: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """exiftool's view of each file by name: {"IPTC:Keywords": [...], "XMP-dc:Description": ...}."""
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", "-a", *args, *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return {Path(item.pop("SourceFile")).name: item for item in json.loads(out)}


def as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [] if value is None else [str(value)]


def make_images(folder: Path, stem: str = "base") -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image = (pyvips.Image.black(64, 48, bands=3) + [200, 120, 40]).cast("uchar")
    image = image.draw_rect([20, 90, 220], 8, 8, 24, 16, fill=True)
    paths = {fmt: folder / f"{stem}.{fmt}" for fmt in FORMATS}
    for fmt in ("jpg", "tif", "png", "webp"):
        image.write_to_file(str(paths[fmt]))
    subprocess.run([IMAGEMAGICK, str(paths["png"]), str(paths["psd"])], check=True)
    return paths


def pixels(path: Path) -> str:
    """A hash of the decoded pixels (ImageMagick's signature), to show a metadata write left them alone."""
    return subprocess.run([IMAGEMAGICK, str(path), "-format", "%#\n", "info:"], capture_output=True, text=True,
                          check=True).stdout


def edited(src: Path, dst: Path, values: dict[str | int, list[str]]) -> Metadata:
    meta = Metadata.read(src)
    for key, v in values.items():
        meta.set(F(key), v)
    meta.save(src, dst)
    return meta


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_images(tmp_path_factory.mktemp("base"))


# -- the field table --------------------------------------------------------------------------------------
def test_a_field_resolves_by_number_name_alias_and_xmp_name() -> None:
    copyright_ = F(116)
    assert copyright_.name == "copyright" and copyright_.xmp == "dc:rights"
    assert copyright_.iptc == "Iptc.Application2.Copyright" and copyright_.kind == "text"
    for key in ("116", " 116 ", "copyright", "COPYRIGHT", "copyright_notice", "dc:rights", "DC:Rights",
                "Xmp.dc.rights", "Iptc.Application2.Copyright"):
        assert F(key) is copyright_, key
    assert F("photoshop:Credit") is F(110) is F("credit")
    assert F("priority") is F("urgency") is F(10)
    assert F("creator") is F("byline") is F(80) and F(80).kind == "seq" and F(80).multi
    assert F("description") is F("caption") is F(120)
    # an XMP property no field claims, in a known namespace: a text field known only by its name
    usage = F("xmpRights:UsageTerms")
    assert usage.id is None and usage.xmp == "xmpRights:UsageTerms" and usage.lang_alt


def test_an_unknown_field_names_close_known_ones() -> None:
    with pytest.raises(UnknownField) as err:
        F("copyrite")
    assert isinstance(err.value, KeyError)
    assert str(err.value) == "unknown metadata field 'copyrite'; did you mean copyright, copyright_notice?"
    with pytest.raises(UnknownField, match="'999'"):
        F(999)
    with pytest.raises(UnknownField, match="nosuch:Thing"):
        F("nosuch:Thing")


def test_the_default_table_covers_the_reference_table() -> None:
    expected = {5, 7, 10, 15, 20, 25, 30, 35, 40, 55, 60, 80, 85, 90, 95, 100, 101, 103, 105, 110, 115, 116,
                120, 122, 187, *range(200, 220), *range(300, 311), *range(350, 359), 360, 361, 362, 800}
    assert set(DEFAULT_FIELDS.by_id()) == expected
    iim = {5: "ObjectName", 7: "EditStatus", 10: "Urgency", 15: "Category", 20: "SuppCategory", 25: "Keywords",
           30: "ReleaseDate", 35: "ReleaseTime", 40: "SpecialInstructions", 55: "DateCreated", 60: "TimeCreated",
           80: "Byline", 85: "BylineTitle", 90: "City", 95: "ProvinceState", 100: "CountryCode",
           101: "CountryName", 103: "TransmissionReference", 105: "Headline", 110: "Credit", 115: "Source",
           116: "Copyright", 120: "Caption", 122: "Writer"}
    for number, dataset in iim.items():
        assert F(number).iptc == f"Iptc.Application2.{dataset}", number
    xmp = {5: "dc:title", 15: "photoshop:Category", 20: "photoshop:SupplementalCategories", 25: "dc:subject",
           40: "photoshop:Instructions", 55: "photoshop:DateCreated", 80: "dc:creator", 90: "photoshop:City",
           100: "Iptc4xmpCore:CountryCode", 101: "photoshop:Country", 105: "photoshop:Headline",
           110: "photoshop:Credit", 115: "photoshop:Source", 116: "dc:rights", 120: "dc:description",
           300: "Iptc4xmpCore:Location", 301: "Iptc4xmpCore:IntellectualGenre", 200: "fwc:CustomField1",
           219: "fwc:CustomField20"}
    for number, qname in xmp.items():
        assert F(number).xmp == qname, number
    assert F(187).iptc is None and F(187).xmp is not None  # 2:187 is not an IIM dataset
    assert F(25).kind == "bag" and F(80).kind == "seq" and F(55).kind == "date"
    assert all(F(n).exif and not F(n).writable for n in range(350, 359))
    assert F(350).exif == "Exif.Photo.DateTimeOriginal" and F(55).exif == "Exif.Photo.DateTimeOriginal"
    assert {F(n).name for n in (200, 219, 360, 361, 362, 800)} == {
        "custom1", "custom20", "uploaded_by", "uploaded_by_name", "upload_time", "archive"}
    assert "keywords" in DEFAULT_FIELDS.names() and "caption" in DEFAULT_FIELDS.names()


def test_a_site_schema_adds_fields_and_overrides_numbers(tmp_path: Path) -> None:
    xml = tmp_path / "MetadataConfiguration.xml"
    xml.write_text(SITE_XML, encoding="utf-8")
    table = FieldTable.load(xml)
    desk = table.resolve(412)
    assert (desk.name, desk.label, desk.xmp, desk.kind) == ("desk", "Desk", "exm:Desk", "text")
    assert table.resolve("desk") is table.resolve("exm:Desk") is table.resolve("412") is desk
    assert table.resolve(413).kind == "date" and table.resolve("embargo_until") is table.resolve(413)
    assert table.resolve("print_priority").kind == "int"
    # an existing number takes the site's property and label, keeping its name, IIM dataset and container
    custom = table.resolve(200)
    assert (custom.name, custom.xmp, custom.label) == ("custom1", "exm:OriginalFileName", "Original file name")
    assert table.resolve("original_file_name") is custom
    assert table.resolve(15).max_length == 3 and table.resolve(15).iptc == "Iptc.Application2.Category"
    assert table.resolve(80).kind == "seq"  # "Text" for dc:creator describes its items; it stays a Seq
    assert table.namespaces["exm"] == "http://ns.example-media.test/fields/1.0/"
    rights = table.resolve(116)  # the same property: only the site's label is new
    assert (rights.label, rights.xmp, rights.iptc) == ("Copyright", "dc:rights", "Iptc.Application2.Copyright")
    # attributes flowd does not use are reported with their line, never dropped silently
    assert any(":9: " in w and "multiline" in w for w in table.warnings)
    assert any(":21: " in w and "min" in w for w in table.warnings)
    assert DEFAULT_FIELDS.by_id().get(412) is None  # the defaults are untouched


@pytest.mark.parametrize(("xml", "line", "message"), [
    ('<MetadataConfiguration>\n  <Namespace prefix="a" uri="urn:a">\n    <Field id="1"\n</MetadataConfiguration>',
     4, "malformed XML"),
    ('<MetadataConfiguration>\n<Namespace prefix="a" uri="urn:a/">\n<Field xmpName="X"/>\n</Namespace>\n'
     '</MetadataConfiguration>', 3, "needs a numeric id"),
    ('<MetadataConfiguration>\n<Namespace prefix="a" uri="urn:a/">\n\n<Field id="500" xmpName="X" type="Colour"/>'
     '\n</Namespace>\n</MetadataConfiguration>', 4, "unknown field type"),
    ('<MetadataConfiguration>\n<Namespace prefix="a" uri="urn:a/">\n<Field id="500" xmpName="X"/>\n'
     '<Field id="500" xmpName="Y"/>\n</Namespace>\n</MetadataConfiguration>', 4, "already defined on line 3"),
])
def test_a_broken_site_schema_is_a_config_error_with_its_line(tmp_path: Path, xml: str, line: int,
                                                              message: str) -> None:
    path = tmp_path / "MetadataConfiguration.xml"
    path.write_text(xml)
    with pytest.raises(ConfigError) as err:
        FieldTable.load(path)
    assert err.value.line == line and message in err.value.message and err.value.file == str(path)


def test_a_site_schema_tolerates_unknown_elements(tmp_path: Path) -> None:
    path = tmp_path / "m.xml"
    path.write_text('<metadataconfiguration><Views/><NAMESPACE Prefix="a" URI="urn:a/" color="red">'
                    '<FIELD ID="600" XMPNAME="Tag" TYPE="bag"/><Note/></NAMESPACE></metadataconfiguration>')
    table = FieldTable.load(path)
    assert table.resolve(600).kind == "bag" and table.resolve("a:Tag") is table.resolve(600)
    assert [w.split(": ", 1)[1] for w in table.warnings] == [
        "element <Views> is not used by flowd", "NAMESPACE.0: attribute color='red' is not used by flowd",
        "NAMESPACE.0: element <Note> is not used by flowd"]


# -- reading what exiftool wrote ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def from_exiftool(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Each format three ways: IPTC only, XMP only, and both (disagreeing, with EXIF too)."""
    root = tmp_path_factory.mktemp("from_exiftool")
    variants = {
        "iptc": ["-IPTC:CodedCharacterSet=UTF8", f"-IPTC:Caption-Abstract={TEXT}", "-IPTC:Keywords=one",
                 "-IPTC:Keywords=twø", "-IPTC:By-line=Ann", "-IPTC:DateCreated=2025:11:28",
                 "-IPTC:TimeCreated=10:11:12+01:00", "-IPTC:Urgency=2", "-IPTC:Sub-location=Harbour"],
        "xmp": [f"-XMP-dc:Description={TEXT}", "-XMP-dc:Subject=one", "-XMP-dc:Subject=twø", "-XMP-dc:Creator=Ann",
                "-XMP-photoshop:DateCreated=2025:11:28 10:11:12+01:00", "-XMP-photoshop:Urgency=2",
                "-XMP-iptcCore:Location=Harbour", "-XMP-iptcCore:CreatorCity=Köln", "-XMP-dc:Title=Titel"],
        "both": ["-IPTC:CodedCharacterSet=UTF8", "-IPTC:Caption-Abstract=from IPTC", "-XMP-dc:Description=from XMP",
                 "-IPTC:Credit=IPTC credit", "-EXIF:Copyright=EXIF ©", "-EXIF:Artist=Exif Artist",
                 "-EXIF:DateTimeOriginal=2025:11:27 09:00:00", "-EXIF:ISO=400", "-GPSLatitude=55.5",
                 "-GPSLatitudeRef=S", "-EXIF:UserComment=hello"],
    }
    out: dict[str, dict[str, Path]] = {}
    for variant, args in variants.items():
        out[variant] = make_images(root / variant, variant)
        exiftool(*args, *out[variant].values())
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_iptc_written_by_exiftool(from_exiftool: dict[str, dict[str, Path]], fmt: str) -> None:
    meta = Metadata.read(from_exiftool["iptc"][fmt])
    if fmt not in WITH_IPTC:
        assert meta.fields() == {}  # WebP carries no IPTC: exiftool wrote none
        return
    assert meta.get(F("caption")) == [TEXT] and meta.text(F(120)) == TEXT
    assert meta.get(F("keywords")) == ["one", "twø"] and meta.text(F(25)) == "one, twø"
    assert meta.get(F("byline")) == ["Ann"] and meta.get(F("urgency")) == ["2"]
    assert meta.get(F("location")) == ["Harbour"]
    assert meta.get(F(55)) == ["2025-11-28"] and meta.get(F(60)) == ["10:11:12+01:00"]
    # the date field combines with its time field
    assert meta.date(F(55)) == datetime(2025, 11, 28, 10, 11, 12, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_xmp_written_by_exiftool(from_exiftool: dict[str, dict[str, Path]], fmt: str) -> None:
    meta = Metadata.read(from_exiftool["xmp"][fmt])
    assert meta.get(F("caption")) == [TEXT] and meta.get(F("title")) == ["Titel"]
    assert meta.get(F("keywords")) == ["one", "twø"] and meta.get(F("byline")) == ["Ann"]
    assert meta.get(F("urgency")) == ["2"] and meta.get(F("location")) == ["Harbour"]
    assert meta.get(F("contact_city")) == ["Köln"]
    assert meta.get(F(55)) == ["2025-11-28T10:11:12+01:00"]
    assert meta.date(F(55)) == datetime(2025, 11, 28, 10, 11, 12, tzinfo=timezone(timedelta(hours=1)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_xmp_reads_before_iptc_and_exif_is_the_fallback(from_exiftool: dict[str, dict[str, Path]],
                                                        fmt: str) -> None:
    meta = Metadata.read(from_exiftool["both"][fmt])
    assert meta.get(F("caption")) == ["from XMP"]
    assert meta.get(F("credit")) == (["IPTC credit"] if fmt in WITH_IPTC else [])
    assert meta.get(F("copyright")) == ["EXIF ©"] and meta.get(F("byline")) == ["Exif Artist"]
    assert meta.get(F(350)) == ["2025-11-27T09:00:00"] and meta.get(F(55)) == ["2025-11-27T09:00:00"]
    assert meta.date(F(350)) == datetime(2025, 11, 27, 9, 0, 0)
    assert meta.get(F("iso")) == ["400"] and meta.get(F("gps_latitude")) == ["-55.500000"]
    assert meta.get(F("user_comment")) == ["hello"]
    assert meta.fields()["date_time_original"] == ["2025-11-27T09:00:00"]


# -- writing, read back by exiftool ------------------------------------------------------------------------
WRITES: dict[str | int, list[str]] = {
    "caption": [TEXT], "title": ["Titel ø"], "copyright": ["© Ærø Agency"], "keywords": ["one", "twø", "three"],
    "byline": ["Ann Å", "Bob"], 55: ["20251128"], 60: ["101112+0100"], "credit": ["Crédit"],
    "custom1": ["eigen"], "contact_city": ["Århus"], "byline_title": ["Ø" * 20],  # 40 bytes; IIM holds 32
}


@pytest.fixture(scope="module")
def flowd_written(base: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("written")
    before = {fmt: p.read_bytes() for fmt, p in base.items()}
    dst = {fmt: out / f"out.{fmt}" for fmt in FORMATS}
    notes = {fmt: edited(base[fmt], dst[fmt], WRITES).notes for fmt in FORMATS}
    return {"dst": dst, "notes": notes, "seen": exif_read(*dst.values(), args=("-all", "-validate")), "before": before}


@pytest.mark.parametrize("fmt", FORMATS)
def test_writes_non_ascii_into_xmp_and_iptc(flowd_written: dict[str, Any], base: dict[str, Path],
                                            fmt: str) -> None:
    seen = flowd_written["seen"][f"out.{fmt}"]
    assert seen["ExifTool:Validate"] == "OK"  # exiftool finds nothing wrong with the file's structure
    assert seen["XMP-dc:Description"] == TEXT and seen["XMP-dc:Title"] == "Titel ø"
    assert seen["XMP-dc:Rights"] == "© Ærø Agency" and seen["XMP-photoshop:Credit"] == "Crédit"
    assert as_list(seen["XMP-dc:Subject"]) == ["one", "twø", "three"]
    assert as_list(seen["XMP-dc:Creator"]) == ["Ann Å", "Bob"]
    assert seen["XMP-photoshop:DateCreated"] == "2025:11:28" and seen["XMP-fwl:CreatedTime"] == "10:11:12+01:00"
    assert seen["XMP-fwc:CustomField1"] == "eigen"
    assert seen["XMP-iptcCore:CreatorContactInfo"] == {"CiAdrCity": "Århus"}
    assert seen["XMP-photoshop:AuthorsPosition"] == "Ø" * 20
    if fmt in WITH_IPTC:
        assert seen["IPTC:CodedCharacterSet"] == "UTF8"
        assert seen["IPTC:Caption-Abstract"] == TEXT and seen["IPTC:ObjectName"] == "Titel ø"
        assert seen["IPTC:CopyrightNotice"] == "© Ærø Agency" and seen["IPTC:Credit"] == "Crédit"
        assert as_list(seen["IPTC:Keywords"]) == ["one", "twø", "three"]
        assert as_list(seen["IPTC:By-line"]) == ["Ann Å", "Bob"]
        assert seen["IPTC:DateCreated"] == "2025:11:28" and seen["IPTC:TimeCreated"] == "10:11:12+01:00"
        assert seen["IPTC:By-lineTitle"] == "Ø" * 16  # cut at 32 bytes, never inside a character
        assert any("cut to 32 bytes" in n for n in flowd_written["notes"][fmt])
    else:
        assert not any(k.startswith("IPTC") for k in seen)
    # the source is untouched and the pixels are the same
    assert base[fmt].read_bytes() == flowd_written["before"][fmt]
    assert pixels(flowd_written["dst"][fmt]) == pixels(base[fmt])


def test_keywords_are_an_xmp_bag_and_the_byline_a_seq(flowd_written: dict[str, Any]) -> None:
    packet = subprocess.run(["exiftool", "-b", "-XMP", str(flowd_written["dst"]["jpg"])], capture_output=True,
                            text=True, check=True).stdout
    assert re.search(r"<dc:subject>\s*<rdf:Bag>", packet) and re.search(r"<dc:creator>\s*<rdf:Seq>", packet)
    assert re.search(r'<dc:rights>\s*<rdf:Alt>\s*<rdf:li xml:lang="x-default">', packet)


def test_a_written_file_reads_back_the_same(flowd_written: dict[str, Any]) -> None:
    meta = Metadata.read(flowd_written["dst"]["tif"])
    assert meta.get(F(25)) == ["one", "twø", "three"] and meta.get(F(80)) == ["Ann Å", "Bob"]
    assert meta.get(F(55)) == ["2025-11-28"] and meta.get(F(60)) == ["10:11:12+01:00"]
    assert meta.get(F("byline_title")) == ["Ø" * 20]  # XMP keeps the full text
    assert not meta.changed


def test_macro_values_and_clearing(base: dict[str, Path], tmp_path: Path) -> None:
    """A macro's result goes in as a list; clearing a field removes it from XMP and IPTC."""
    first, second = tmp_path / "1.jpg", tmp_path / "2.jpg"
    edited(base["jpg"], first, {25: apply([], "replace", "sport, football; cup", None, True), 116: ["x"]})
    meta = Metadata.read(first)
    meta.set(F(25), apply(meta.get(F(25)), "append", "cup, final", None, True))
    meta.set(F(116), [])
    assert meta.changed
    meta.save(first, second)
    seen = exif_read(first, second)
    assert as_list(seen["1.jpg"]["IPTC:Keywords"]) == ["sport", "football", "cup"]
    assert as_list(seen["2.jpg"]["XMP-dc:Subject"]) == ["sport", "football", "cup", "final"]
    assert as_list(seen["2.jpg"]["IPTC:Keywords"]) == ["sport", "football", "cup", "final"]
    assert "IPTC:CopyrightNotice" not in seen["2.jpg"] and "XMP-dc:Rights" not in seen["2.jpg"]


def test_clearing_a_field_also_clears_its_exif_fallback(from_exiftool: dict[str, dict[str, Path]],
                                                        tmp_path: Path) -> None:
    src, dst = from_exiftool["both"]["jpg"], tmp_path / "cleared.jpg"
    meta = Metadata.read(src)
    assert meta.get(F(116)) == ["EXIF ©"]
    meta.set(F(116), [])
    assert meta.get(F(116)) == [] and meta.changed
    meta.save(src, dst)
    assert "IFD0:Copyright" not in exif_read(dst)["cleared.jpg"] and Metadata.read(dst).get(F(116)) == []


def test_setting_a_value_equal_to_the_current_one_is_no_change(base: dict[str, Path]) -> None:
    meta = Metadata.read(base["png"])
    meta.set(F("caption"), [])
    assert not meta.changed
    meta.set(F("caption"), ["x"])
    assert meta.changed and meta.get(F(120)) == ["x"]


def test_values_are_checked_and_normalised_by_kind() -> None:
    meta = Metadata.empty()
    meta.set(F(55), ["2025:11:28 10:00:00"])
    assert meta.get(F(55)) == ["2025-11-28T10:00:00"] and meta.date(F(55)) == datetime(2025, 11, 28, 10)
    meta.set(F(55), ["2025-11-28"])
    meta.set(F(60), ["0930"])
    assert meta.get(F(60)) == ["09:30:00+00:00"]
    assert meta.date(F(55)) == datetime(2025, 11, 28, 9, 30, tzinfo=UTC)
    meta.set(F(10), [" 3 "])
    assert meta.get(F(10)) == ["3"]
    meta.set(F(120), ["a", "b"])  # a single-valued field joins
    assert meta.get(F(120)) == ["a, b"]
    with pytest.raises(PermanentError, match=r"field 55 \(date_created\) needs a date"):
        meta.set(F(55), ["yesterday"])
    with pytest.raises(PermanentError, match="needs a whole number"):
        meta.set(F(10), ["high"])
    with pytest.raises(PermanentError, match="read-only"):
        meta.set(F(350), ["2025-01-01"])
    assert meta.date(F(120)) is None


def test_iptc_in_latin1_is_read_and_rewritten_as_utf8(base: dict[str, Path], tmp_path: Path) -> None:
    src, dst = tmp_path / "latin.jpg", tmp_path / "utf8.jpg"
    shutil.copy(base["jpg"], src)
    exiftool("-charset", "iptc=latin1", "-IPTC:City=Ærø", src)  # no 1:90: the bytes are Latin-1
    meta = Metadata.read(src)
    assert meta.get(F("city")) == ["Ærø"]
    meta.set(F("credit"), ["Crédit"])
    meta.save(src, dst)
    seen = exif_read(dst)["utf8.jpg"]
    assert seen["IPTC:CodedCharacterSet"] == "UTF8"
    assert seen["IPTC:City"] == "Ærø" and seen["IPTC:Credit"] == "Crédit"


def test_saving_onto_other_bytes_writes_every_field(from_exiftool: dict[str, dict[str, Path]],
                                                    tmp_path: Path) -> None:
    """A rendition made by libvips carries no metadata; saving the original's metadata onto it writes all."""
    rendition, dst = tmp_path / "rendition.jpg", tmp_path / "final.jpg"
    pyvips.Image.new_from_file(str(from_exiftool["xmp"]["jpg"])).resize(0.5).write_to_file(str(rendition),
                                                                                          strip=True)
    meta = Metadata.read(from_exiftool["xmp"]["jpg"])
    meta.set(F("headline"), ["New"])
    meta.save(rendition, dst)
    seen = exif_read(dst)["final.jpg"]
    assert seen["XMP-dc:Description"] == TEXT and seen["IPTC:Caption-Abstract"] == TEXT
    assert as_list(seen["IPTC:Keywords"]) == ["one", "twø"] and seen["IPTC:Headline"] == "New"
    assert seen["IPTC:DateCreated"] == "2025:11:28"


# -- strip and merge ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jpg", "tif", "psd"])
def test_strip_keeps_only_the_kept_fields(base: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    src, dst = tmp_path / f"full.{fmt}", tmp_path / f"stripped.{fmt}"
    shutil.copy(base[fmt], src)
    exiftool("-EXIF:Artist=Art", "-EXIF:Orientation#=6", "-EXIF:DateTimeOriginal=2025:01:02 03:04:05",
             "-IPTC:CodedCharacterSet=UTF8", "-IPTC:Keywords=k", "-IPTC:CopyrightNotice=© Ærø",
             "-XMP-dc:Rights=© Ærø", "-XMP-dc:Subject=k", "-XMP-photoshop:Credit=c", "-Comment=hello", src)
    meta = Metadata.read(src)
    meta.strip(keep=[F("copyright"), F(350)])
    assert meta.changed and meta.get(F("keywords")) == [] and meta.get(F("copyright")) == ["© Ærø"]
    meta.save(src, dst)
    seen = exif_read(dst)[dst.name]
    iptc = {k for k in seen if k.startswith("IPTC:")}
    xmp = {k for k in seen if k.startswith("XMP-") and k != "XMP-x:XMPToolkit"}
    assert iptc == {"IPTC:CodedCharacterSet", "IPTC:CopyrightNotice"} and seen["IPTC:CopyrightNotice"] == "© Ærø"
    assert xmp == {"XMP-dc:Rights"}
    assert seen["ExifIFD:DateTimeOriginal"] == "2025:01:02 03:04:05"
    assert seen["IFD0:Orientation"] == "Rotate 90 CW"  # how the picture looks is not metadata to strip
    assert "IFD0:Artist" not in seen and not any(k.endswith(":Comment") for k in seen)
    # the date created reads from EXIF's original date, its fallback
    assert Metadata.read(dst).fields() == {"date_created": ["2025-01-02T03:04:05"], "copyright": ["© Ærø"],
                                           "date_time_original": ["2025-01-02T03:04:05"]}


def test_merge_fills_empty_fields_or_overwrites() -> None:
    template = Metadata.empty()
    template.set(F("credit"), ["Agency"])
    template.set(F("copyright"), ["© Agency"])
    template.set(F("keywords"), ["a", "b"])
    meta = Metadata.empty()
    meta.set(F("credit"), ["Own"])
    assert meta.merge(template, overwrite=False) == ["keywords", "copyright"]
    assert meta.get(F("credit")) == ["Own"] and meta.get(F("copyright")) == ["© Agency"]
    assert meta.merge(template, overwrite=False) == []
    assert meta.merge(template, overwrite=True) == ["credit"]
    assert meta.get(F("credit")) == ["Agency"]


# -- sidecars and text templates ----------------------------------------------------------------------------
def test_text_template_lines(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_text("\ufeff# agency template\n116=© Agency\n\ncredit = Ærø Press \n25=sport, cup\nkeywords=final\n"
                    "dc:title=First\n5=Second\n120=\n", encoding="utf-8")
    got = read_text_template(path, DEFAULT_FIELDS)
    assert {f.name: v for f, v in got.items()} == {
        "copyright": ["© Agency"], "credit": ["Ærø Press"], "keywords": ["sport", "cup", "final"],
        "title": ["Second"], "caption": []}
    path.write_text("116=ok\nno equals sign\n")
    with pytest.raises(PermanentError, match=r"photo\.txt:2: expected field=value"):
        read_text_template(path, DEFAULT_FIELDS)
    path.write_text("55=20251128\n55=soon\n")
    with pytest.raises(PermanentError, match=r"photo\.txt:2: field 55 \(date_created\) needs a date"):
        read_text_template(path, DEFAULT_FIELDS)
    path.write_text("# x\ncopyrite=x\n")
    with pytest.raises(PermanentError, match=r"photo\.txt:2: unknown metadata field 'copyrite'; did you mean"):
        read_text_template(path, DEFAULT_FIELDS)


def test_find_sidecar_by_base_name_or_full_name(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"")
    assert find_sidecar(image) is None
    (tmp_path / "photo.jpg.xmp").write_text("x")
    assert find_sidecar(image) == tmp_path / "photo.jpg.xmp"
    (tmp_path / "photo.XMP").write_text("x")
    assert find_sidecar(image) == tmp_path / "photo.XMP"
    (tmp_path / "photo.xmp").mkdir()  # not a file: ignored
    assert find_sidecar(image) == tmp_path / "photo.XMP"
    assert find_sidecar(image, (".txt",)) is None
    (tmp_path / "photo.txt").write_text("116=x\n")
    assert find_sidecar(image, (".txt", ".xmp")) == tmp_path / "photo.txt"


def test_xmp_sidecar_is_read_merged_and_written(base: dict[str, Path], tmp_path: Path) -> None:
    side = tmp_path / "photo.xmp"
    subprocess.run(["exiftool", "-q", "-o", str(side), f"-XMP-dc:Description={TEXT}", "-XMP-dc:Subject=a",
                    "-XMP-dc:Subject=b", "-XMP-photoshop:Credit=Side credit"], check=True)
    sidecar = Metadata.read(side)
    assert sidecar.get(F(120)) == [TEXT] and sidecar.get(F(25)) == ["a", "b"]
    # merged into an image that has a credit of its own
    image, merged = tmp_path / "photo.jpg", tmp_path / "merged.jpg"
    shutil.copy(base["jpg"], image)
    exiftool("-XMP-photoshop:Credit=Own", image)
    meta = Metadata.read(image)
    assert meta.merge(sidecar, overwrite=False) == ["keywords", "caption"]
    meta.save(image, merged)
    # written back into the sidecar: new values added, a cleared field removed, the rest kept
    meta.set(F(25), [])
    meta.set(F("headline"), ["Hé"])
    meta.save_sidecar(side)
    fresh = tmp_path / "fresh.xmp"
    meta.save_sidecar(fresh)
    seen = exif_read(merged, side, fresh)
    assert seen["merged.jpg"]["XMP-photoshop:Credit"] == "Own" and seen["merged.jpg"]["IPTC:Caption-Abstract"] == TEXT
    assert as_list(seen["merged.jpg"]["IPTC:Keywords"]) == ["a", "b"]
    assert seen["photo.xmp"]["XMP-photoshop:Headline"] == "Hé" and seen["photo.xmp"]["XMP-dc:Description"] == TEXT
    assert seen["photo.xmp"]["XMP-photoshop:Credit"] == "Own" and "XMP-dc:Subject" not in seen["photo.xmp"]
    assert seen["fresh.xmp"]["XMP-photoshop:Headline"] == "Hé" and seen["fresh.xmp"]["XMP-dc:Description"] == TEXT
    assert not list(tmp_path.glob(".*.tmp"))


# -- refusing to damage -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "cut"), [("jpg", 20), ("png", 30), ("psd", 200), ("webp", 40)])
def test_save_refuses_a_truncated_source_and_leaves_no_file(base: dict[str, Path], tmp_path: Path, fmt: str,
                                                            cut: int) -> None:
    src, dst = tmp_path / f"cut.{fmt}", tmp_path / f"out.{fmt}"
    data = base[fmt].read_bytes()
    src.write_bytes(data[:-cut])
    with pytest.raises(PermanentError):
        edited(src, dst, {"caption": ["x"]})
    assert not dst.exists() and src.read_bytes() == data[:-cut]


def test_save_refuses_a_tiff_whose_strips_run_past_the_end(tmp_path: Path) -> None:
    """exiv2 would rewrite it with the missing bytes padded; the directory says how long the data must be."""
    offset, entries = 8 + 2 + 9 * 12 + 4, 9
    tags = [(256, 3, 1, 8), (257, 3, 1, 8), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, offset),
            (277, 3, 1, 1), (278, 3, 1, 8), (279, 4, 1, 64)]  # an 8x8 grey strip right after the directory
    ifd = struct.pack("<H", entries) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    whole = b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(range(64))
    src, dst = tmp_path / "whole.tif", tmp_path / "out.tif"
    src.write_bytes(whole)
    edited(src, dst, {"caption": ["x"]})
    assert exif_read(dst)["out.tif"]["XMP-dc:Description"] == "x" and pixels(dst) == pixels(src)
    src.write_bytes(whole[:-20])
    with pytest.raises(PermanentError, match=r"TIFF image data is truncated \(166 of 186 bytes\)"):
        edited(src, tmp_path / "cut.tif", {"caption": ["x"]})
    assert not (tmp_path / "cut.tif").exists()


def test_garbage_and_unwritable_files_are_permanent_errors(base: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(PermanentError, match="garbage.jpg: not a file exiv2 can read"):
        Metadata.read(garbage)
    bmp = tmp_path / "a.bmp"
    subprocess.run([IMAGEMAGICK, str(base["png"]), str(bmp)], check=True)
    with pytest.raises(PermanentError, match="cannot write metadata into BMP files; use to: sidecar"):
        edited(bmp, tmp_path / "b.bmp", {"caption": ["x"]})
    assert not (tmp_path / "b.bmp").exists()
    link = tmp_path / "link.jpg"
    link.symlink_to(base["jpg"])
    with pytest.raises(PermanentError, match="symbolic link"):
        Metadata.read(link)
    taken = tmp_path / "taken.jpg"
    taken.write_bytes(b"mine")
    with pytest.raises(PermanentError, match="already exists"):
        edited(base["jpg"], taken, {"caption": ["x"]})
    assert taken.read_bytes() == b"mine"


def test_a_jpeg_keeps_its_image_data_byte_for_byte(base: dict[str, Path], tmp_path: Path) -> None:
    """exiv2 edits only the head of a JPEG; the entropy-coded data after the first scan header is appended."""
    dst = tmp_path / "out.jpg"
    edited(base["jpg"], dst, {"caption": [TEXT * 20], "keywords": ["k"] * 1})
    src_data, new = base["jpg"].read_bytes(), dst.read_bytes()
    scan = src_data.index(b"\xff\xda")
    assert new.endswith(src_data[scan:]) and len(new) > len(src_data)
    meta = Metadata.read(dst)
    meta.set(F("credit"), ["again"])  # and a saved file saves again
    meta.save(dst, tmp_path / "again.jpg")
    assert exif_read(tmp_path / "again.jpg")["again.jpg"]["IPTC:Credit"] == "again"


# -- dynamic codes ------------------------------------------------------------------------------------------
FACTS = CodeFacts(now=datetime(2026, 11, 28, 9, 5, 7, tzinfo=timezone(timedelta(hours=1))), filename="a.jpg",
                  folder="in", path="/hot/in/a.jpg", width=640, height=480, color="CMYK", xres_dpi=300.0,
                  uid="0B8F-UID", login="flowd")


@pytest.mark.parametrize(("text", "expected"), [
    ("%%INSDATE", "20261128"), ("%%INSDATE+2", "20261130"), ("%%INSDATE-1", "20261127"),
    ("%%INSLDATE", "28 November 2026"), ("%%INSTIME", "090507+0100"), ("%%INSLTIME", "09:05:07"),
    ("%%INSXMPDATE", "2026-11-28T09:05:07+01:00"), ("%%INSDAYDATE+3", "20261201"), ("%%INSDAYDATE-28", "20261031"),
    ("%%INSHOURDATE-10", "2026-11-27T23:05:07+01:00"), ("%%INSSECDATE+60", "2026-11-28T09:06:07+01:00"),
    ("%%INSFILENAME", "a.jpg"), ("%%INSFOLDER", "in"), ("%%INSPATH", "/hot/in/a.jpg"), ("%%INSPPL", "640"),
    ("%%INSNOL", "480"), ("%%INSCOL", "CMYK"), ("%%INSRESINCH", "300"), ("%%INSRESCM", "118.11"),
    ("%%INSUID", "0B8F-UID"), ("%%INSSYSLOGIN", "flowd"),
    ("(c) %%INSLDATE by %%INSSYSLOGIN, %%INSPPLx%%INSNOL", "(c) 28 November 2026 by flowd, 640x480"),
    ("%%INSTIME+2", "090507+0100+2"),  # only the date codes take an offset
    ("no codes", "no codes"),
])
def test_every_dynamic_code(text: str, expected: str) -> None:
    assert expand_codes(text, FACTS) == expected


def test_every_known_code_is_tested_and_unknown_codes_are_named() -> None:
    assert len(KNOWN_CODES) == 18
    assert unknown_codes("%%INSDATE %%INSFOO and %%INSLDATE") == ["%%INSFOO"]
    with pytest.raises(ValueError, match="unknown dynamic code %%INSWHEN; known codes: %%INSDATE"):
        expand_codes("x %%INSWHEN", FACTS)
    naive = dataclasses.replace(FACTS, now=datetime(2026, 1, 2, 3, 4, 5), width=None, xres_dpi=None)
    assert expand_codes("%%INSDATE %%INSLTIME [%%INSPPL] [%%INSRESCM]", naive) == "20260102 03:04:05 [] []"
    assert re.fullmatch(r"\d{6}[+-]\d{4}", expand_codes("%%INSTIME", naive))


# -- macro actions ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("current", "action", "value", "find", "multi", "expected"), [
    (["a"], "clear", "", None, False, []),
    (["old"], "replace", "new", None, False, ["new"]),
    (["old"], "replace", "  ", None, False, []),
    (["x"], "replace", "sport, football; cup, sport", None, True, ["sport", "football", "cup"]),
    (["Photo"], "append", " / AP", None, False, ["Photo / AP"]),
    ([], "append", "AP", None, False, ["AP"]),
    (["a", "b"], "append", "b, c", None, True, ["a", "b", "c"]),
    (["Photo AP"], "add_substring", " AP", None, False, ["Photo AP"]),
    (["Photo"], "add_substring", " AP", None, False, ["Photo AP"]),
    (["a"], "add_substring", "a; b", None, True, ["a", "b"]),
    (["(c) AP 2025", "AP"], "replace_substring", "Reuters", "AP", True, ["(c) Reuters 2025", "Reuters"]),
    (["AP"], "replace_substring", "", "AP", False, []),
])
def test_every_macro_action(current: list[str], action: Any, value: str, find: str | None, multi: bool,
                            expected: list[str]) -> None:
    assert apply(current, action, value, find, multi) == expected
    assert current == current[:]  # the input list is never changed in place


def test_replace_substring_needs_find() -> None:
    with pytest.raises(ValueError, match="needs the text to find"):
        apply(["a"], "replace_substring", "b", None, False)


def test_metadata_frees_exiv2_memory(base: dict[str, Path]) -> None:
    with Metadata.read(base["jpg"]) as meta:
        assert meta.get(F(120)) == []
    assert meta.fields() == {} and os.path.exists(base["jpg"])
