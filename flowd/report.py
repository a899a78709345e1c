"""Human renderings of traces and queue state for the CLI."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def render_trace(trace: dict[str, Any], title: str) -> str:
    lines = [f"{title}: {trace.get('status')}  (attempt {trace.get('attempt')}, rule set {trace.get('ruleset')}, "
             f"{trace.get('ms', 0):.1f} ms)"]
    upload = trace.get("upload")
    if upload:
        lines.append(f"  uploaded over {upload.get('protocol', 'ftp').upper()} by {upload.get('user')} "
                     f"(group {upload.get('group')}) from {upload.get('client')} at {when(upload.get('at'))}")
    rules = trace.get("rules", [])
    if not rules:
        lines.append("  no rule applies to this hot folder")
    for rule in rules:
        state = "matched" if rule.get("matched") else "not matched"
        lines.append(f"  rule {rule['rule']} ({rule['file']}): {state}")
        for cond in rule.get("conditions", []):
            lines.extend(_condition(cond, 4))
        if rule.get("skipped"):
            lines.append(f"    skipped: {rule['skipped']}")
        for action in rule.get("actions", []):
            detail = {k: v for k, v in action.items() if k not in ("step", "action", "ms", "outcome")}
            shown = " ".join(f"{k}={v}" for k, v in detail.items())
            lines.append(f"    -> {action['action']} [{action.get('outcome', '')}] {shown} ({action.get('ms', 0):.2f} ms)")
    if trace.get("fate"):
        lines.append(f"  source: {trace['fate']}")
    if trace.get("error"):
        lines.append(f"  error: {json.dumps(trace['error'], ensure_ascii=False)}")
    return "\n".join(lines)


def _condition(cond: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    mark = "yes" if cond.get("result") else "no "
    if "of" in cond:
        out = [f"{pad}{mark} {cond['if']}:"]
        for inner in cond["of"]:
            out.extend(_condition(inner, indent + 2))
        return out
    on = f" ({cond['on']})" if "on" in cond else ""
    what = f"{cond['if']} {cond['field']}" if "field" in cond else cond["if"]  # field caption = ''
    if "missing" in cond:  # required_fields
        return [f"{pad}{mark} {what}{on}: missing {cond['missing'] or 'none'}  expected {cond.get('expect')}"]
    if "error" in cond:
        return [f"{pad}{mark} {what}{on}: {cond['error']}"]
    return [f"{pad}{mark} {what}{on} = {cond.get('value')!r}  expected {cond.get('expect')}"]


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"
