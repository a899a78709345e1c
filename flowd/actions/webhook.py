"""webhook: POST the asset's facts as JSON, with an idempotency key so a retry is recognisable."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowd.action import Result, Step
from flowd.actions.common import validate
from flowd.asset import Asset
from flowd.context import RunContext
from flowd.errors import PermanentError, TransientError
from flowd.parse import Loc, Parser


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict)  # header -> environment variable holding a secret
    timeout: float = Field(10, gt=0, le=300)
    include_sha256: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL")
        return value


@dataclass(frozen=True, slots=True)
class Webhook:
    """`webhook: {url: https://...}`: 2xx is success, 5xx/429/timeouts are retried with backoff, other
    4xx quarantine. The `Idempotency-Key` header is the same on every retry of the step."""

    url: str
    headers: tuple[tuple[str, str], ...]
    headers_env: tuple[tuple[str, str], ...]
    timeout: float
    include_sha256: bool
    kind: ClassVar[str] = "webhook"
    effectful: ClassVar[bool] = True

    def run(self, asset: Asset, ctx: RunContext, step: Step) -> Result:
        payload: dict[str, Any] = {
            "event": "asset.processed", "job": asset.job_id, "rule": step.rule, "step": step.index,
            "tenant": asset.tenant, "hotfolder": asset.hotfolder, "name": asset.name,
            "relpath": asset.relpath, "source": asset.source_relpath, "size": asset.size,
            "mtime": asset.mtime.isoformat(), "detected": asset.detected_at.isoformat(),
        }
        if asset.origin is not None:  # a stored asset: which blob, which version, what happened to it
            payload.update(event=f"asset.{asset.origin.event}" if asset.origin.event == "deleted" else
                           "asset.processed", storage=asset.origin.storage, key=asset.origin.key,
                           etag=asset.origin.version)
        if self.include_sha256 and not (asset.origin and asset.origin.fetch is None):
            payload["sha256"] = asset.sha256()
        headers = dict(self.headers)
        for header, env in self.headers_env:
            secret = os.environ.get(env)
            if secret is None:
                raise PermanentError(f"environment variable {env} (for header {header}) is not set")
            headers[header] = secret
        shown = _redact(self.url)
        if ctx.simulate:
            return Result(asset, {"url": shown, "outcome": "would post"})
        status = ctx.post_json(self.url, payload, headers, self.timeout, step.token)
        return Result(asset, {"url": shown, "status": status})


def _redact(url: str) -> str:
    """Traces and logs never show credentials embedded in a URL."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def post_json(url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float, key: str) -> int:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "flowd", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise TransientError(f"webhook {_redact(url)} answered {exc.code}") from None
        raise PermanentError(f"webhook {_redact(url)} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"webhook {_redact(url)} unreachable: {reason}") from None


def build_webhook(value: object, loc: Loc, p: Parser) -> Webhook | None:
    spec = validate(WebhookSpec, value, loc, p)
    if spec is None:
        return None
    return Webhook(spec.url, tuple(spec.headers.items()), tuple(spec.headers_env.items()), spec.timeout,
                   spec.include_sha256)
