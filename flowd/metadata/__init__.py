"""Metadata: Fotoware field numbers, reading and writing EXIF/IPTC/XMP, sidecars, dynamic codes, macros.

pyexiv2 (and libexiv2 with it) loads only when `flowd.metadata.model` is imported, so importing the field
table for rule checking stays cheap.
"""

from flowd.metadata.codes import CodeFacts, expand_codes, unknown_codes
from flowd.metadata.fields import DEFAULT_FIELDS, FieldDef, FieldKind, FieldTable, UnknownField
from flowd.metadata.macro import Action, apply

__all__ = [
    "DEFAULT_FIELDS", "Action", "CodeFacts", "FieldDef", "FieldKind", "FieldTable", "UnknownField", "apply",
    "expand_codes", "unknown_codes",
]
