"""loguru set-up: human lines by default, one JSON object per line for journald/ELK."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

HUMAN = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"


def setup(level: str = "INFO", fmt: str = "human") -> None:
    logger.remove()
    if fmt == "json":
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        # diagnose=False: variable values in tracebacks could include secrets.
        logger.add(sys.stderr, level=level, format=HUMAN, colorize=None, backtrace=False, diagnose=False,
                   filter=_one_line)


def _one_line(record: Record) -> bool:
    """A file name with a newline must not be able to forge a log line of its own."""
    message = record["message"]
    if "\n" in message or "\r" in message:
        record["message"] = message.replace("\r", "\\r").replace("\n", "\\n")
    return True
