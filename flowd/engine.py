"""The engine: rules x asset -> effects, with a trace of every decision.

It owns the cross-cutting policy (ordering, fan-out and stop, once-per-content, the effect journal, error
kinds); conditions and actions own only their mechanism. It never touches the database or the clock:
both are handed in.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from flowd.action import Step
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import StepError
from flowd.rules import RuleSet
from flowd.trace import RunTrace, Status


@dataclass(slots=True)
class Outcome:
    status: Status
    matched: bool = False
    consumes: bool = False
    steps: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    ledger: list[tuple[str, str, str]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # rule, step, action, reason (for error.json)
    transient: bool = False


class Engine:
    def __init__(self, rules: RuleSet, install_id: str) -> None:
        self.rules = rules
        self.install_id = install_id

    def token(self, job_id: int, rule: str, index: int) -> str:
        rule_hash = hashlib.sha1(rule.encode()).hexdigest()[:8]
        return f"{self.install_id}-{job_id}-{rule_hash}-{index}"

    def run(self, asset: Asset, ctx: RunContext, trace: RunTrace,
            done: Mapping[str, dict[str, Any]] | None = None) -> Outcome:
        """Evaluate every rule for the asset's hot folder in order and run the matching ones' actions."""
        start = time.perf_counter()
        out = Outcome(status="unmatched")
        done = done or {}
        try:
            self._run(asset, ctx, trace, done, out)
        except StepError as exc:
            out.status = "waiting" if exc.transient else "quarantined"
            out.transient = exc.transient
            out.error = {**(out.error or {}), "reason": str(exc)}
        except FileNotFoundError:
            if asset.path.exists():
                raise
            out.status = "vanished"
        except Exception as exc:  # a bug must not kill the worker: the asset is quarantined, the log has why
            logger.opt(exception=exc).error("internal error on job {}: {}", asset.job_id, exc)
            out.status = "quarantined"
            out.error = {**(out.error or {}), "reason": f"internal error: {type(exc).__name__}: {exc}"}
        if out.status == "unmatched" and out.matched:
            out.status = "finished"
        trace.status = out.status
        if out.error:
            trace.error = out.error
        trace.ms = (time.perf_counter() - start) * 1000
        return out

    def _run(self, asset: Asset, ctx: RunContext, trace: RunTrace, done: Mapping[str, dict[str, Any]],
             out: Outcome) -> None:
        for rule in self.rules.for_hotfolder(asset.hotfolder, asset.upload.group if asset.upload else None):
            rt = trace.rule(rule.name, f"{rule.file}:{rule.line}")
            rt.matched = rule.condition.check(asset, ctx, rt.conditions) if rule.condition else True
            if not rt.matched:
                continue
            matched_before = out.matched
            out.matched = True
            if rule.once == "content":
                sha = asset.sha256()
                earlier = ctx.seen_content(rule.name, sha)
                if earlier is not None and earlier != asset.job_id:
                    rt.skipped = f"these bytes were already processed by this rule in job {earlier}"
                    if rule.stop:
                        break
                    continue
            current = asset  # each rule starts from the original asset
            effects = False
            skipped = None
            for index, (action, kind) in enumerate(zip(rule.actions, rule.kinds, strict=True)):
                step = Step(rule.name, index, self.token(asset.job_id, rule.name, index))
                out.error = {"rule": rule.name, "file": f"{rule.file}:{rule.line}", "step": index, "action": kind}
                with rt.action(index, kind) as record:
                    if action.effectful and step.id in done:
                        record.update(done[step.id])
                        record["outcome"] = "done in an earlier attempt"
                        out.consumes |= bool(getattr(action, "consumes", False))
                        effects = True
                        continue
                    result = action.run(current, ctx, step)
                    record.update(result.record)
                    current = result.asset
                    out.consumes |= result.consumes
                    effects |= action.effectful
                    if action.effectful and not ctx.simulate:
                        out.steps.append((step.id, step.token, result.record))
                    skipped = result.skip_rule
                out.error = None
                if skipped:
                    break
            if skipped:
                rt.skipped = skipped
                if not effects:  # left for other rules, as if it had not matched
                    out.matched = matched_before
                continue
            if rule.once == "content":  # recorded only once every step succeeded: a failed run does not count
                out.ledger.append((asset.tenant, rule.name, asset.sha256()))
            if rule.stop:
                break
