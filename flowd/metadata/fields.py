"""Fotoware field numbers -> IPTC IIM datasets, XMP properties and EXIF fallbacks.

Color Factory rules name fields by number (116), so every number resolves to one `FieldDef`: where its value
lives in XMP (the full value), in IPTC-IIM (a copy cut to the dataset's byte limit) and, read-only, in EXIF.
Numbers below 300 are IIM dataset numbers; the XMP side follows the MWG / IPTC Core mapping. Fields with no
standard XMP home use Fotoware's own namespaces (`fwl` legacy IIM datasets, `fwc` custom fields 1-20,
`fwr` reserved ids, as in exiftool's fotoware.config) so FotoStation and Fotoware Index see the same values;
flowd's own fields (uploads, archive) live in the `flowd` namespace.

A site's MetadataConfiguration.xml (element names undocumented, so read tolerantly) adds fields and
overrides numbers; see `FieldTable.load`. `normalise` checks and formats a value for its field's kind
(dates as ISO 8601 whatever the input: 20251128, 2025:11:28 10:00:00, 2025-11-28T10:00+01:00).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Literal

FieldKind = Literal["text", "bag", "seq", "date", "time", "int", "real", "bool"]
KINDS: tuple[FieldKind, ...] = ("text", "bag", "seq", "date", "time", "int", "real", "bool")

# Standard namespaces by their usual prefix. exiv2 names two of them differently in its keys
# (Xmp.iptc.Location, not Xmp.Iptc4xmpCore.Location): EXIV2_PREFIX maps the first segment of a key.
STANDARD_NAMESPACES: Mapping[str, str] = MappingProxyType({
    "dc": "http://purl.org/dc/elements/1.1/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "plus": "http://ns.useplus.org/ldf/xmp/1.0/",
})
EXIV2_PREFIX: Mapping[str, str] = MappingProxyType({"Iptc4xmpCore": "iptc", "Iptc4xmpExt": "iptcExt"})
# Not known to exiv2: registered (pyexiv2.registerNs) before any file is parsed.
CUSTOM_NAMESPACES: Mapping[str, str] = MappingProxyType({
    "fwl": "http://ns.fotoware.com/iptcxmp-legacy/1.0/",
    "fwc": "http://ns.fotoware.com/iptcxmp-custom/1.0/",
    "fwr": "http://ns.fotoware.com/iptcxmp-reserved/1.0/",
    "flowd": "http://ns.flowd.dev/xmp/1.0/",
})
# XMP language alternatives: written as a single x-default item, read preferring x-default.
LANG_ALT = frozenset({"dc:title", "dc:description", "dc:rights", "xmpRights:UsageTerms"})
_IIM = "Iptc.Application2."


@dataclass(frozen=True, slots=True)
class FieldDef:
    id: int | None          # Fotoware number; None for a field known only by its XMP name
    name: str               # canonical lower-case short name
    label: str
    xmp: str | None         # qualified XMP name ("dc:rights"); a struct member is "parent/child"
    iptc: str | None        # exiv2 IPTC key
    exif: str | None        # exiv2 EXIF key, read-only fallback
    kind: FieldKind
    max_length: int | None = None  # IIM byte limit, applied to the IPTC copy only

    @property
    def multi(self) -> bool:
        return self.kind in ("bag", "seq")

    @property
    def lang_alt(self) -> bool:
        return self.xmp in LANG_ALT

    @property
    def writable(self) -> bool:
        return self.xmp is not None or self.iptc is not None

    @property
    def xmp_key(self) -> str | None:
        """The exiv2 key: dc:rights -> Xmp.dc.rights; a struct member keeps its inner qualified name
        (Xmp.iptc.CreatorContactInfo/Iptc4xmpCore:CiAdrCity), which is how exiv2 spells it."""
        if self.xmp is None:
            return None
        prefix, _, rest = self.xmp.partition(":")
        return f"Xmp.{EXIV2_PREFIX.get(prefix, prefix)}.{rest}"

    def __str__(self) -> str:
        return f"{self.id} ({self.name})" if self.id is not None else self.name


class UnknownField(KeyError):
    """A field key that names no field; the message lists close known names."""

    def __init__(self, key: str | int, known: Iterable[str]) -> None:
        close = difflib.get_close_matches(str(key).lower(), list(known), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; use a field number, name or XMP name"
        super().__init__(f"unknown metadata field {str(key)!r}{hint}")

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


_CONTACT = "Iptc4xmpCore:CreatorContactInfo/Iptc4xmpCore:"
# id, name, label, xmp, IIM dataset (exiv2 name), EXIF fallback, kind, IIM byte limit, aliases
_Row = tuple[int, str, str, str | None, str | None, str | None, FieldKind, int | None, tuple[str, ...]]
_DEFAULT_ROWS: tuple[_Row, ...] = (
    (5, "title", "Title", "dc:title", "ObjectName", None, "text", 64, ("object_name",)),
    (7, "edit_status", "Edit status", "fwl:EditStatus", "EditStatus", None, "text", 64, ()),
    (10, "urgency", "Priority", "photoshop:Urgency", "Urgency", None, "int", 1, ("priority",)),
    (15, "category", "Category", "photoshop:Category", "Category", None, "text", 3, ()),
    (20, "supplemental_categories", "Supplemental categories", "photoshop:SupplementalCategories",
     "SuppCategory", None, "bag", 32, ("supp_categories", "supplemental_category")),
    (25, "keywords", "Keywords", "dc:subject", "Keywords", None, "bag", 64, ("keyword", "subject")),
    (30, "release_date", "Release date", "fwl:ReleaseDate", "ReleaseDate", None, "date", 8, ()),
    (35, "release_time", "Release time", "fwl:ReleaseTime", "ReleaseTime", None, "time", 11, ()),
    (40, "instructions", "Special instructions", "photoshop:Instructions", "SpecialInstructions", None,
     "text", 256, ("special_instructions",)),
    # EXIF's original date is MWG's third source for the creation date
    (55, "date_created", "Date created", "photoshop:DateCreated", "DateCreated", "Exif.Photo.DateTimeOriginal",
     "date", 8, ("created",)),
    (60, "time_created", "Time created", "fwl:CreatedTime", "TimeCreated", None, "time", 11, ()),
    (80, "byline", "Byline", "dc:creator", "Byline", "Exif.Image.Artist", "seq", 32, ("creator", "author")),
    (85, "byline_title", "Byline title", "photoshop:AuthorsPosition", "BylineTitle", None, "text", 32,
     ("creator_title", "authors_position")),
    (90, "city", "City", "photoshop:City", "City", None, "text", 32, ()),
    (95, "state", "Province/State", "photoshop:State", "ProvinceState", None, "text", 32,
     ("province", "province_state")),
    (100, "country_code", "Country code", "Iptc4xmpCore:CountryCode", "CountryCode", None, "text", 3, ()),
    (101, "country", "Country", "photoshop:Country", "CountryName", None, "text", 64, ("country_name",)),
    (103, "transmission_reference", "Original transmission reference", "photoshop:TransmissionReference",
     "TransmissionReference", None, "text", 32, ("job_id",)),
    (105, "headline", "Headline", "photoshop:Headline", "Headline", None, "text", 256, ()),
    (110, "credit", "Credit", "photoshop:Credit", "Credit", None, "text", 32, ()),
    (115, "source", "Source", "photoshop:Source", "Source", None, "text", 32, ()),
    (116, "copyright", "Copyright notice", "dc:rights", "Copyright", "Exif.Image.Copyright", "text", 128,
     ("copyright_notice", "rights")),
    # No EXIF fallback for the caption: cameras fill ImageDescription with their own name.
    (120, "caption", "Caption", "dc:description", "Caption", None, "text", 2000, ("description",)),
    (122, "caption_writer", "Caption writer", "photoshop:CaptionWriter", "Writer", None, "text", 32,
     ("writer",)),
    # 2:187 is Fotoware's own dataset, not IIM: kept in XMP only, in Fotoware's reserved namespace
    (187, "document_id", "Unique document ID", "fwr:UniqueId", None, None, "text", None,
     ("unique_id", "unique_document_id")),
    (300, "location", "Location", "Iptc4xmpCore:Location", "SubLocation", None, "text", 32, ("sublocation",)),
    (301, "genre", "Intellectual genre", "Iptc4xmpCore:IntellectualGenre", None, None, "text", None,
     ("intellectual_genre",)),
    (302, "scene", "Scene", "Iptc4xmpCore:Scene", None, None, "bag", None, ()),
    (303, "subject_code", "Subject code", "Iptc4xmpCore:SubjectCode", None, None, "bag", None, ()),
    (304, "contact_city", "Creator's city", _CONTACT + "CiAdrCity", None, None, "text", None, ()),
    (305, "contact_address", "Creator's address", _CONTACT + "CiAdrExtadr", None, None, "text", None, ()),
    (306, "contact_postal_code", "Creator's postal code", _CONTACT + "CiAdrPcode", None, None, "text", None,
     ("contact_postcode",)),
    (307, "contact_region", "Creator's region", _CONTACT + "CiAdrRegion", None, None, "text", None, ()),
    (308, "contact_email", "Creator's email", _CONTACT + "CiEmailWork", None, None, "text", None, ()),
    (309, "contact_phone", "Creator's phone", _CONTACT + "CiTelWork", None, None, "text", None, ()),
    (310, "contact_url", "Creator's URL", _CONTACT + "CiUrlWork", None, None, "text", None, ()),
    (350, "date_time_original", "Date/time original", None, None, "Exif.Photo.DateTimeOriginal", "date", None,
     ("original_date",)),
    (351, "date_time_digitized", "Date/time digitized", None, None, "Exif.Photo.DateTimeDigitized", "date",
     None, ("digitized_date",)),
    (352, "iso", "ISO", None, None, "Exif.Photo.ISOSpeedRatings", "int", None, ()),
    (353, "user_comment", "User comment", None, None, "Exif.Photo.UserComment", "text", None, ()),
    (354, "image_unique_id", "Image unique ID", None, None, "Exif.Photo.ImageUniqueID", "text", None, ()),
    (355, "gps_latitude", "GPS latitude", None, None, "Exif.GPSInfo.GPSLatitude", "real", None, ()),
    (356, "gps_longitude", "GPS longitude", None, None, "Exif.GPSInfo.GPSLongitude", "real", None, ()),
    (357, "serial_number", "Camera serial number", None, None, "Exif.Photo.BodySerialNumber", "text", None, ()),
    (358, "gps_method", "GPS processing method", None, None, "Exif.GPSInfo.GPSProcessingMethod", "text", None,
     ("gps_processing_method",)),
    (360, "uploaded_by", "Uploaded by", "flowd:UploadedBy", None, None, "text", None, ()),
    (361, "uploaded_by_name", "Uploaded by (name)", "flowd:UploadedByName", None, None, "text", None, ()),
    (362, "upload_time", "Upload time", "flowd:UploadTime", None, None, "date", None, ()),
    (800, "archive", "Archive", "flowd:Archive", None, None, "text", None, ()),
)


def _default_defs() -> tuple[list[FieldDef], dict[str, str]]:
    defs: list[FieldDef] = []
    aliases: dict[str, str] = {}
    for fid, name, label, xmp, iim, exif, kind, limit, names in _DEFAULT_ROWS:
        defs.append(FieldDef(fid, name, label, xmp, _IIM + iim if iim else None, exif, kind, limit))
        aliases.update((a, name) for a in names)
    for n in range(1, 21):
        defs.append(FieldDef(199 + n, f"custom{n}", f"Custom field {n}", f"fwc:CustomField{n}", None, None, "text"))
        aliases[f"custom_field{n}"] = f"custom{n}"
    return defs, aliases


class FieldTable:
    """Every known field, looked up by number, name, alias or XMP name (case-insensitive)."""

    def __init__(self, defs: Iterable[FieldDef], aliases: Mapping[str, str] | None = None,
                 namespaces: Mapping[str, str] | None = None, warnings: Iterable[str] = ()) -> None:
        self._by_id: dict[int, FieldDef] = {}
        self._by_name: dict[str, FieldDef] = {}
        self._by_xmp: dict[str, FieldDef] = {}
        for d in defs:
            if d.id is not None:
                self._by_id[d.id] = d
            self._by_name[d.name.lower()] = d
            if d.xmp:
                self._by_xmp[d.xmp.lower()] = d
        self.aliases: dict[str, str] = {}
        for alias, name in (aliases or {}).items():
            target = self._by_name.get(name.lower())
            if target is not None and alias.lower() not in self._by_name:
                self.aliases[alias.lower()] = target.name
        # prefix -> URI of every non-standard namespace the fields use (registered with exiv2 before parsing)
        self.namespaces: dict[str, str] = dict(namespaces if namespaces is not None else CUSTOM_NAMESPACES)
        # MetadataConfiguration.xml oddities (unknown elements, ignored attributes) for the migration report
        self.warnings: tuple[str, ...] = tuple(warnings)

    def resolve(self, key: str | int) -> FieldDef:
        """116, "116", "copyright" (name or alias), "dc:rights", "photoshop:Credit", "Xmp.dc.rights" or
        "Iptc.Application2.Copyright". An XMP name in a known namespace that no field claims resolves to a
        text field known only by that name (id None)."""
        if isinstance(key, int) and not isinstance(key, bool):
            if key in self._by_id:
                return self._by_id[key]
            raise UnknownField(key, [str(i) for i in self._by_id])
        text = str(key).strip()
        if text.isdigit():
            if int(text) in self._by_id:
                return self._by_id[int(text)]
            raise UnknownField(text, [str(i) for i in self._by_id])
        low = text.lower()
        found = self._by_name.get(low) or self._by_name.get(self.aliases.get(low, "")) or self._by_xmp.get(low)
        if found is not None:
            return found
        if low.startswith(("xmp.", "iptc.")):
            for d in self._by_name.values():
                if low in ((d.xmp_key or "").lower(), (d.iptc or "").lower()):
                    return d
        qname = _adhoc_qname(text, self.namespaces)
        if qname is not None:
            return FieldDef(None, qname, qname, qname, None, None, "text")
        raise UnknownField(text, [*self._by_name, *self.aliases])

    def names(self) -> list[str]:
        return sorted(d.name for d in self._by_name.values())

    def by_id(self) -> Mapping[int, FieldDef]:
        return MappingProxyType(self._by_id)

    def defs(self) -> list[FieldDef]:
        """Every field, numbered ones in number order."""
        return sorted(self._by_name.values(), key=lambda d: (d.id is None, d.id or 0, d.name))

    @classmethod
    def load(cls, xml: Path, base: FieldTable | None = None) -> FieldTable:
        """The defaults (or `base`) plus a site's MetadataConfiguration.xml: new numbers are added, known
        numbers take the site's XMP property, label and type. Broken XML, a field without a usable id or
        XMP name, a duplicate id or an unknown type raise ConfigError(file, line, ...)."""
        start = base or DEFAULT_FIELDS
        site = _read_site(xml, {**STANDARD_NAMESPACES, **start.namespaces})
        merged = {d.name: d for d in start.defs()}
        by_id = {d.id: d for d in merged.values() if d.id is not None}
        aliases = dict(start.aliases)
        namespaces = dict(start.namespaces)
        namespaces.update(site.namespaces)
        for f in site.fields:
            old = by_id.get(f.id)
            if old is not None:
                # A site's "Text" for dc:creator describes each item; the XMP schema fixes the container.
                kind = old.kind if f.xmp == old.xmp and old.multi and f.kind == "text" else f.kind
                new = replace(old, label=f.label or old.label, xmp=f.xmp, kind=kind,
                              max_length=f.max_length or old.max_length)
                merged[old.name] = new
            else:
                new = FieldDef(f.id, _free_name(f.xmp, merged, aliases), f.label or f.xmp, f.xmp, None, None,
                               f.kind, f.max_length)
                merged[new.name] = new
            # the site's own words for the field work too: exm:OriginalFileName -> original_file_name
            for alias in (_snake(f.xmp.partition(":")[2]), _snake(f.label or "")):
                if alias and alias not in merged and alias not in aliases:
                    aliases[alias] = new.name
            by_id[f.id] = new
        return cls(merged.values(), aliases, namespaces, [*start.warnings, *site.warnings])


def _snake(text: str) -> str:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()


def _free_name(qname: str, taken: Mapping[str, FieldDef], aliases: Mapping[str, str]) -> str:
    prefix, _, local = qname.partition(":")
    for name in (_snake(local), f"{_snake(prefix)}_{_snake(local)}"):
        if name and name not in taken and name not in aliases:
            return name
    return qname.lower()


_QNAME = re.compile(r"^([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*)$")


def _adhoc_qname(text: str, namespaces: Mapping[str, str]) -> str | None:
    m = _QNAME.match(text)
    if m is None:
        return None
    for prefix in (*STANDARD_NAMESPACES, *namespaces):
        if prefix.lower() == m.group(1).lower():
            return f"{prefix}:{m.group(2)}"
    return None


# -- values by kind ---------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # not allowed in XML, so never in XMP


def normalise(f: FieldDef, values: list[str]) -> list[str]:
    """The values as stored: blanks dropped, several joined with ", " for a single-valued field, and typed
    values in one form (dates ISO 8601, times HH:MM:SS+HH:MM with +00:00 when none is given, booleans
    True/False). ValueError says what the field needs."""
    items = [_CONTROL.sub("", str(v)) for v in values]
    items = [v for v in items if v.strip()]
    if not f.multi and len(items) > 1:
        items = [", ".join(items)]
    if f.kind in ("date", "time", "int", "real", "bool"):
        items = [typed(f, v.strip()) for v in items]
    return items


def typed(f: FieldDef, value: str) -> str:
    fixed: str | None
    if f.kind == "date":
        fixed = iso_date(value)
    elif f.kind == "time":
        fixed = iso_time(value)
    elif f.kind == "int":
        fixed = value if re.fullmatch(r"[+-]?\d+", value) else None
    elif f.kind == "real":
        fixed = value if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value) else None
    else:
        fixed = {"true": "True", "yes": "True", "1": "True", "false": "False", "no": "False", "0": "False"}.get(
            value.lower())
    if fixed is None:
        wanted = {"date": "a date (2025-11-28, 20251128 or 2025-11-28T10:00:00)",
                  "time": "a time (10:00:00, 100000 or 10:00:00+01:00)", "int": "a whole number",
                  "real": "a number", "bool": "true or false"}[f.kind]
        raise ValueError(f"field {f} needs {wanted}, got {value!r}")
    return fixed


_DATE = re.compile(r"^(\d{4})[-:]?(\d\d)[-:]?(\d\d)(?:[T ](\d\d):?(\d\d)(?::?(\d\d)(\.\d+)?)?)?"
                   r"\s*(Z|[+-]\d\d:?\d\d)?$")
_PARTIAL = re.compile(r"^\d{4}(-\d\d)?$")
_TIME = re.compile(r"^(\d\d):?(\d\d)(?::?(\d\d)(\.\d+)?)?\s*(Z|[+-]\d\d:?\d\d)?$")


def iso_date(text: str) -> str | None:
    """2025-11-28, 20251128, 2025:11:28 10:00:00, 2025-11-28T10:00+01:00 -> ISO 8601; None if not a date."""
    if _PARTIAL.match(text):  # XMP allows a year or a month
        return text
    m = _DATE.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        date(int(y), int(mo), int(d))
        if h is not None:
            time(int(h), int(mi), int(s or 0))
    except ValueError:
        return None
    out = f"{y}-{mo}-{d}"
    if h is not None:
        out += f"T{h}:{mi}:{s or '00'}{frac or ''}{_offset(tz)}"
    return out


def iso_time(text: str) -> str | None:
    """10:00, 100000, 10:00:00+01:00, 100000+0100 -> HH:MM:SS+HH:MM (+00:00 when none is given)."""
    m = _TIME.match(text)
    if m is None:
        return None
    h, mi, s, _frac, tz = m.groups()
    try:
        time(int(h), int(mi), int(s or 0))
    except ValueError:
        return None
    return f"{h}:{mi}:{s or '00'}{_offset(tz) or '+00:00'}"


def _offset(tz: str | None) -> str:
    if not tz:
        return ""
    if tz == "Z":
        return "+00:00"
    return tz if ":" in tz else f"{tz[:3]}:{tz[3:]}"


def parse_datetime(text: str) -> datetime | None:
    iso = iso_date(text.strip())
    if iso is None:
        return None
    if _PARTIAL.match(iso):
        iso = (iso + "-01-01")[:10]
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def parse_time(text: str) -> time | None:
    iso = iso_time(text.strip()) if text else None
    return time.fromisoformat(iso) if iso else None


# -- MetadataConfiguration.xml ---------------------------------------------------------------------------
# Fotoware never documented the element names, so names match case-insensitively, a few spellings are
# accepted, and anything else becomes a warning (with its line) rather than an error or a silent drop.
_TYPES: Mapping[str, FieldKind] = MappingProxyType({
    "text": "text", "string": "text", "langalt": "text", "alt": "text", "bag": "bag", "seq": "seq",
    "date": "date", "datetime": "date", "time": "time", "integer": "int", "int": "int", "real": "real",
    "float": "real", "decimal": "real", "number": "real", "boolean": "bool", "bool": "bool",
})
_ATTRS = {
    "namespace": {"prefix": ("prefix",), "uri": ("uri", "url", "namespace", "ns", "namespaceuri")},
    "field": {"id": ("id", "fieldid", "number"), "xmp": ("xmpname", "name", "property", "xmp"),
              "label": ("displayname", "label", "title", "caption"), "type": ("type", "datatype"),
              "max_length": ("maxlength", "length", "maxlen")},
}


@dataclass(frozen=True, slots=True)
class _SiteField:
    id: int
    xmp: str
    label: str | None
    kind: FieldKind
    max_length: int | None


@dataclass(frozen=True, slots=True)
class _Site:
    fields: list[_SiteField]
    namespaces: dict[str, str]
    warnings: list[str]


def _local(tag: object) -> str:
    return str(tag).rpartition("}")[2].lower()


def _read_site(xml: Path, known: Mapping[str, str]) -> _Site:
    from lxml import etree

    from flowd.errors import ConfigError

    file = str(xml)
    try:
        data = xml.read_bytes()
    except OSError as exc:
        raise ConfigError(file, None, "", f"cannot read the metadata configuration: {exc.strerror}") from exc
    # No DTDs, entities or network: the file comes from another system.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True,
                             remove_pis=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (exc.lineno, 0)
        raise ConfigError(file, line, "", f"malformed XML: {exc.msg} (column {column})") from exc
    uri_prefix = {uri: prefix for prefix, uri in {**known, **STANDARD_NAMESPACES}.items()}
    site = _Site([], {}, [])
    seen: dict[int, int] = {}

    def warn(el: etree._Element, text: str) -> None:
        site.warnings.append(f"{file}:{el.sourceline}: {text}")

    def attrs(el: etree._Element, kind: str, path: str) -> dict[str, str]:
        wanted, found = _ATTRS[kind], {}
        for raw, value in el.attrib.items():
            name = _local(raw)
            key = next((k for k, spellings in wanted.items() if name in spellings), None)
            if key is None or key in found:
                warn(el, f"{path}: attribute {_local(raw)}={value!r} is not used by flowd")
            else:
                found[key] = value.strip()
        return found

    def field(el: etree._Element, path: str, prefix: str | None) -> None:
        def fail(attr: str, message: str, got: object = None, allowed: str | None = None) -> ConfigError:
            return ConfigError(file, el.sourceline, f"{path}.{attr}", message, got, allowed)

        a = attrs(el, "field", path)
        if not a.get("id", "").isdigit():
            raise fail("id", "a field needs a numeric id", a.get("id"), "a number, e.g. 412")
        fid = int(a["id"])
        if fid in seen:
            raise fail("id", f"field {fid} is already defined on line {seen[fid]}", fid)
        seen[fid] = el.sourceline or 0
        name = a.get("xmp", "")
        if ":" in name:
            given, _, local = name.partition(":")
            prefix = next((p for p in (*site.namespaces, *known) if p.lower() == given.lower()), None)
            if prefix is None:
                raise fail("xmpName", f"namespace prefix {given!r} is not declared", name)
            name = local
        if not _QNAME.match(f"x:{name}") or prefix is None:
            raise fail("xmpName", "a field needs an XMP property name inside a <Namespace prefix=... uri=...>",
                       a.get("xmp"), "e.g. <Field id=\"412\" xmpName=\"Desk\"/>")
        kind = _TYPES.get(a.get("type", "text").lower())
        if kind is None:
            raise fail("type", "unknown field type", a.get("type"), ", ".join(sorted(_TYPES)))
        limit = a.get("max_length")
        if limit is not None and not limit.isdigit():
            raise fail("maxLength", "expected a whole number of characters", limit)
        site.fields.append(_SiteField(fid, f"{prefix}:{name}", a.get("label"), kind,
                                      int(limit) if limit else None))

    def namespace(el: etree._Element, path: str) -> str:
        a = attrs(el, "namespace", path)
        uri, given = a.get("uri"), a.get("prefix")
        if not uri or not given:
            raise ConfigError(file, el.sourceline, path, "a namespace needs prefix= and uri=",
                              dict(el.attrib) or None)
        if uri in uri_prefix:  # a standard or already known namespace keeps its usual prefix
            return uri_prefix[uri]
        bound = {**STANDARD_NAMESPACES, **known, **site.namespaces}
        clash = next((u for p, u in bound.items() if p.lower() == given.lower()), None)
        if clash is not None:
            raise ConfigError(file, el.sourceline, f"{path}.prefix", f"prefix {given!r} is bound to {clash}",
                              uri, "another prefix")
        site.namespaces[given] = uri
        uri_prefix[uri] = given
        return given

    if _local(root.tag) != "metadataconfiguration":
        warn(root, f"root element <{etree.QName(root).localname}> is not <MetadataConfiguration>; read anyway")
    counts: dict[str, int] = {}
    for el in root:
        tag = _local(el.tag)
        index = counts[tag] = counts.get(tag, -1) + 1
        path = f"{etree.QName(el).localname}.{index}"
        if tag == "namespace":
            prefix = namespace(el, path)
            for j, child in enumerate(c for c in el if _local(c.tag) == "field"):
                field(child, f"{path}.Field.{j}", prefix)
            for child in el:
                if _local(child.tag) != "field":
                    warn(child, f"{path}: element <{etree.QName(child).localname}> is not used by flowd")
        elif tag == "field":
            field(el, path, None)
        else:
            warn(el, f"element <{etree.QName(el).localname}> is not used by flowd")
    return site


def _build_default() -> FieldTable:
    defs, aliases = _default_defs()
    return FieldTable(defs, aliases)


DEFAULT_FIELDS: FieldTable = _build_default()
