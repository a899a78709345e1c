"""One exception hierarchy. Every error renders a full sentence a person can act on."""

from __future__ import annotations

from typing import Any


class FlowdError(Exception):
    """Base of every error flowd raises on purpose."""


class ConfigError(FlowdError):
    """A config or rule file is wrong: where, what, the bad value and what is allowed."""

    def __init__(
        self,
        file: str,
        line: int | None,
        path: str,
        message: str,
        got: Any = None,
        allowed: str | None = None,
        *,
        has_got: bool = False,
    ) -> None:
        self.file, self.line, self.path, self.message = file, line, path, message
        self.got, self.allowed, self.has_got = got, allowed, has_got or got is not None
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        extra = []
        if self.has_got:
            extra.append(f"got {_show(self.got)}")
        if self.allowed:
            extra.append(f"allowed: {self.allowed}")
        return f"{text} ({'; '.join(extra)})" if extra else text


class ConfigErrors(FlowdError):
    """Several ConfigErrors found in one pass: `flowd check` prints them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class TemplateError(FlowdError):
    """A template could not be compiled or rendered."""


class StepError(FlowdError):
    """An action failed. `transient` errors are retried with backoff; others quarantine the asset."""

    transient = False


class TransientError(StepError):
    transient = True


class ChangedError(TransientError):
    """A stored asset changed or vanished while a job worked on it. Retried: the retry finds the newer
    version (left for its own job) or no blob, and ends as superseded or vanished."""


class PermanentError(StepError):
    transient = False


class ConflictError(PermanentError):
    """The target exists and the conflict policy says not to touch it."""


class PathEscapeError(PermanentError):
    """A rendered path would leave its root."""


class AlreadyRunningError(FlowdError):
    pass


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
