"""webhook: a POST of the asset's facts to a real HTTP server, with an Idempotency-Key that survives retries.

2xx is success; 5xx, 429 and an unreachable server are retried with backoff (conftest sets a 0.2 s base);
any other 4xx quarantines. Secrets come from the environment and never reach traces or the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from actions_support import (
    Endpoint,
    QuickSite,
    actions_of,
    all_attempts,
    endpoints,
    error_notes,
    free_port,
    quarantined,
    quick_site,
    trace_of,
)
from conftest import JPEG, Site, tree, wait_for


@pytest.fixture
def site(tmp_path: Path) -> Iterator[QuickSite]:
    yield from quick_site(tmp_path)


@pytest.fixture
def endpoint() -> Iterator[Any]:
    yield from endpoints()


def webhook_rules(url: str, extra: str = "") -> str:
    return f"""
        rules:
          - name: archive
            do:
              - store: {{to: "{{output}}/archive/{{relpath}}"}}
              - webhook: {{url: "{url}"{extra}}}
    """


def test_webhook_posts_the_assets_facts_as_json_with_an_idempotency_key(site: Site, endpoint) -> None:
    hook: Endpoint = endpoint(200)
    site.rules(webhook_rules(hook.url, ", include_sha256: true, headers: {X-Source: flowd-test}"))
    site.start()
    site.drop("shoot/a.jpg", JPEG)
    site.settled(1)
    site.drop("b.jpg", JPEG)
    site.settled(2)
    call, other = hook.received
    trace = trace_of(site, "shoot/a.jpg")
    assert call.path == "/hook"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-source"] == "flowd-test"
    assert call.headers["idempotency-key"], "every call carries an idempotency key"
    assert call.headers["idempotency-key"] != other.headers["idempotency-key"], "one key per job and step"
    assert other.body["job"] == trace_of(site, "b.jpg")["job"] != trace["job"]
    body = call.body
    assert body["event"] == "asset.processed"
    assert body["job"] == trace["job"]
    assert (body["rule"], body["step"]) == ("archive", 1)
    assert (body["tenant"], body["hotfolder"]) == ("default", "inbox")
    assert (body["name"], body["relpath"], body["source"]) == ("a.jpg", "shoot/a.jpg", "shoot/a.jpg")
    assert body["size"] == len(JPEG)
    assert body["sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert body["mtime"] and body["detected"]
    assert trace["status"] == "finished"
    [_store, webhook] = actions_of(trace, "archive")
    assert webhook["action"] == "webhook" and webhook["status"] == 200 and webhook["url"] == hook.url
    assert tree(site.lake) == {"assets/archive/shoot/a.jpg": JPEG, "assets/archive/b.jpg": JPEG}
    assert tree(site.hot()) == {}


def test_a_5xx_answer_is_retried_with_backoff_and_the_same_idempotency_key(site: Site, endpoint) -> None:
    hook: Endpoint = endpoint(500, 200)
    site.rules(webhook_rules(hook.url))
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    first, second = hook.received
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body
    assert second.at - first.at >= 0.1, "the retry waited for its backoff (base 0.2 s, jitter 0.5-1x)"
    attempts = all_attempts(site, "a.jpg")
    assert [(t["attempt"], t["status"]) for t in attempts] == [(1, "waiting"), (2, "finished")]
    assert attempts[0]["fate"].startswith("retry in "), "the first attempt was put off with a backoff"
    assert "500" in attempts[0]["error"]["reason"]
    # The store before the webhook ran once: its journalled result is reused, not written twice.
    assert actions_of(attempts[1], "archive")[0]["outcome"] == "done in an earlier attempt"
    assert tree(site.lake) == {"assets/archive/a.jpg": JPEG}
    assert tree(site.hot()) == {}, "the job finished on the second attempt and the source was removed"
    assert site.status()["states"] == {"done": 1}


def test_a_server_that_is_down_then_comes_up_is_waited_for(site: Site, endpoint) -> None:
    port = free_port()  # nothing listens here yet: connection refused is transient
    site.rules(webhook_rules(f"http://127.0.0.1:{port}/hook"))
    site.start()
    site.drop("a.jpg", JPEG)

    def waiting() -> list:
        return site.status()["waiting"]
    [w] = wait_for(waiting, timeout=20, message="the job to wait for the webhook")
    assert w["file"] == "inbox/a.jpg" and "unreachable" in w["error"]
    assert (site.hot() / "a.jpg").exists(), "while the webhook is down the source stays in the hot folder"
    hook: Endpoint = endpoint(200, port=port)
    site.settled(1, timeout=30)
    assert len(hook.received) == 1
    assert trace_of(site, "a.jpg")["status"] == "finished"
    assert tree(site.hot()) == {}


def test_a_4xx_answer_quarantines_with_the_reason(site: Site, endpoint) -> None:
    hook: Endpoint = endpoint(404)
    site.rules(webhook_rules(hook.url))
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    assert len(hook.received) == 1, "a 404 is not retried"
    [q] = quarantined(site)
    assert "404" in q["error"]["reason"] and hook.url in q["error"]["reason"]
    assert (q["error"]["rule"], q["error"]["step"], q["error"]["action"]) == ("archive", 1, "webhook")
    note = error_notes(site)["a.jpg.error.json"]
    assert "404" in note["reason"] and note["step"] == 1
    assert (site.root / "errors/inbox/a.jpg").read_bytes() == JPEG
    # The store step before it did happen; its output stays (nothing is rolled back).
    assert tree(site.lake) == {"assets/archive/a.jpg": JPEG}


SECRET = "s3cr3t-token-9f8e7d6c"


def test_headers_env_takes_a_secret_from_the_environment_and_never_shows_it(site: Site, endpoint) -> None:
    hook: Endpoint = endpoint(503, 200)  # one retry, so the secret travels twice and is logged about
    site.rules(webhook_rules(hook.url, ", headers_env: {Authorization: HOOK_TOKEN}"))
    site.start(env={"HOOK_TOKEN": f"Bearer {SECRET}", "FLOWD_LOG_LEVEL": "DEBUG"})  # log all there is
    site.drop("a.jpg", JPEG)
    site.settled(1)
    assert [c.headers["authorization"] for c in hook.received] == [f"Bearer {SECRET}"] * 2
    traces = site.cli("trace", "a.jpg", "--json", "--all").stdout
    assert [t["status"] for t in all_attempts(site, "a.jpg")] == ["waiting", "finished"]
    assert SECRET not in traces
    assert SECRET not in site.cli("status", "--json").stdout
    assert site.stop() == 0
    assert f"job {trace_of(site, 'a.jpg')['job']}" in site.log(), "the DEBUG log talks about the job"
    assert SECRET not in site.log()
    assert SECRET not in (site.root / "rules/rules.yaml").read_text(), "the rule file names only the variable"


def test_headers_env_naming_an_unset_variable_quarantines(site: Site, endpoint) -> None:
    hook: Endpoint = endpoint(200)
    site.rules(webhook_rules(hook.url, ", headers_env: {Authorization: FLOWD_TEST_UNSET_TOKEN}"))
    site.start()
    site.drop("a.jpg", JPEG)
    site.settled(1)
    assert hook.received == []
    [q] = quarantined(site)
    assert "FLOWD_TEST_UNSET_TOKEN" in q["error"]["reason"]
