"""Sizes ("1KB", "2 MiB") and durations ("30s", "2h", "7d") as users write them in rules and config."""

from __future__ import annotations

import re

# SI units are powers of 1000 and IEC units powers of 1024, as organize and most file managers use them.
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

SIZE_HELP = "a number of bytes or a size like 500, 1KB, 2.5MB, 1MiB"
DURATION_HELP = "seconds or a duration like 30s, 10m, 2h, 7d, 1w"


def parse_size(value: object) -> int:
    """Bytes from an int or a string with a unit. Raises ValueError with the allowed forms."""
    return int(_parse(value, _SIZE_UNITS, SIZE_HELP))


def parse_duration(value: object) -> float:
    """Seconds from a number or a string with a unit."""
    return float(_parse(value, _DURATION_UNITS, DURATION_HELP, integral=False))


def _parse(value: object, units: dict[str, int], help_text: str, integral: bool = True) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"expected {help_text}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must not be negative; expected {help_text}")
        return int(value) if integral else float(value)
    if isinstance(value, str):
        match = _NUMBER.match(value)
        if match and match.group(2).lower() in units:
            number = float(match.group(1)) * units[match.group(2).lower()]
            return int(number) if integral else number
    raise ValueError(f"expected {help_text}")
