"""Run traces: which rules were considered, each condition's value and result, each action's outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["finished", "unmatched", "quarantined", "waiting", "vanished", "superseded", "ignored"]


@dataclass(slots=True)
class RuleTrace:
    rule: str
    file: str
    matched: bool | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "file": self.file, "matched": self.matched}
        if self.conditions:
            out["conditions"] = self.conditions
        if self.actions:
            out["actions"] = self.actions
        if self.skipped:
            out["skipped"] = self.skipped
        return out

    @contextmanager
    def action(self, index: int, kind: str) -> Iterator[dict[str, Any]]:
        """Record one action: always closed, with its timing, even when it raises."""
        record: dict[str, Any] = {"step": index, "action": kind}
        start = time.perf_counter()
        try:
            yield record
            record.setdefault("outcome", "done")
        except Exception as exc:
            record["outcome"] = "error"
            record["error"] = str(exc)
            raise
        finally:
            record["ms"] = round((time.perf_counter() - start) * 1000, 3)
            self.actions.append(record)


@dataclass(slots=True)
class RunTrace:
    job_id: int
    attempt: int
    ruleset: str
    status: Status = "finished"
    rules: list[RuleTrace] = field(default_factory=list)
    fate: str | None = None
    error: dict[str, Any] | None = None
    upload: dict[str, Any] | None = None  # who delivered the asset over FTP, from where, when
    started: float = field(default_factory=time.time)
    ms: float = 0.0

    def rule(self, name: str, file: str) -> RuleTrace:
        record = RuleTrace(name, file)
        self.rules.append(record)
        return record

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job": self.job_id, "attempt": self.attempt, "ruleset": self.ruleset, "status": self.status,
            "rules": [r.to_dict() for r in self.rules], "ms": round(self.ms, 3),
        }
        if self.upload:
            out["upload"] = self.upload
        if self.fate:
            out["fate"] = self.fate
        if self.error:
            out["error"] = self.error
        return out
