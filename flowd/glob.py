"""Globs compiled to regexes once: `*` stays inside one path segment, `**/` spans folders.

fnmatch lets `*` cross `/` and silently treats an unclosed `[` as a literal; rules deserve better.
"""

from __future__ import annotations

import re


class GlobError(ValueError):
    pass


def compile_glob(pattern: str, *, ignore_case: bool = True) -> re.Pattern[str]:
    if not pattern:
        raise GlobError("empty pattern")
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")  # "**/" matches zero or more folders
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern.startswith(("[!", "[^"), i) else i + 1)
            if pattern.startswith("[]", i) or pattern.startswith(("[!]", "[^]"), i):
                end = pattern.find("]", end + 1)
            if end < 0:
                raise GlobError(f"unclosed '[' at position {i} in {pattern!r}")
            body = pattern[i + 1:end]
            if body.startswith(("!", "^")):
                body = "^" + body[1:]
            if not body or body == "^":
                raise GlobError(f"empty character class at position {i} in {pattern!r}")
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "]":
            raise GlobError(f"unmatched ']' at position {i} in {pattern!r}")
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.S | (re.I if ignore_case else 0))
    except re.error as exc:
        raise GlobError(f"bad pattern {pattern!r}: {exc}") from None
