"""Writing the generated rule files and config line by line, so the report can cite the line each Color
Factory setting became, and each line can carry a comment naming the setting it came from."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "~"}
COMMENT_COLUMN = 72


def scalar(value: object) -> str:
    """A YAML scalar: plain where unambiguous, else a JSON string (JSON strings are YAML double-quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(value: object) -> str:
    """A value in YAML flow style: `{to: srgb, embed: true}`, `[jpeg, tiff]`."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def comment_text(text: str) -> str:
    """A comment stays one line whatever the export held."""
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", text)


class Lines:
    """A text file built line by line; add() returns the 1-based line number."""

    def __init__(self, comment: str = "#") -> None:
        self.lines: list[str] = []
        self.mark = comment

    def add(self, text: str = "", comment: str | None = None) -> int:
        if comment:
            note = f"{self.mark} {comment_text(comment)}"
            text = f"{text}  {note}" if len(text) >= COMMENT_COLUMN - 2 else f"{text:<{COMMENT_COLUMN}}{note}" \
                if text.strip() else f"{text}{note}"
        self.lines.append(text.rstrip())
        return len(self.lines)

    def note(self, text: str, indent: str = "") -> int:
        """A comment line of its own."""
        return self.add(f"{indent}{self.mark} {comment_text(text)}")

    @property
    def next(self) -> int:
        return len(self.lines) + 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
