"""Every condition by its YAML key. A new condition is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from flowd.condition import Condition
from flowd.conditions import facts, image, logic, metadata, names, upload
from flowd.parse import Loc, Parser

Builder = Callable[[object, Loc, Parser], Condition | None]

CONDITIONS: dict[str, Builder] = {
    "name": names.build_name,
    "regex": names.build_regex,
    "extension": names.build_extension,
    "path": names.build_path,
    "size": facts.build_size,
    "age": facts.build_age,
    "format": facts.build_format,
    "hotfolder": facts.build_hotfolder,
    "ftp": upload.build_ftp,
    "field": metadata.build_field,
    "required_fields": metadata.build_required_fields,
    "image": image.build_image,
    "all": logic.build_all,
    "any": logic.build_any,
    "not": logic.build_not,
}

__all__ = ["CONDITIONS", "Builder"]
