"""The README is the user's reference: every condition, action, placeholder and conflict policy is in it,
and its rule examples are valid rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowd.actions import ACTIONS
from flowd.conditions import CONDITIONS
from flowd.config import Settings
from flowd.rules import parse_rule_file
from flowd.storage.base import Conflict
from flowd.template import PLACEHOLDERS

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_every_condition_is_documented(name: str) -> None:
    assert f"`{name}`" in README, f"The {name} condition is not documented in README.md"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_action_is_documented(name: str) -> None:
    assert re.search(rf"`{name}(: |`)", README), f"The {name} action is not documented in README.md"


@pytest.mark.parametrize("name", sorted(PLACEHOLDERS))
def test_every_placeholder_is_documented(name: str) -> None:
    assert re.search(rf"\{{{name}[}}:.|]", README), f"The {{{name}}} placeholder is not documented in README.md"


@pytest.mark.parametrize("policy", [c.value for c in Conflict])
def test_every_conflict_policy_is_documented(policy: str) -> None:
    assert f"`{policy}`" in README


def test_readme_rule_examples_are_valid_rules() -> None:
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "rules:" in b]
    assert blocks, "the README shows no rule example"
    settings = Settings.model_validate({
        "storage": {"lake": {"kind": "local", "root": "var/lake"},
                    "cold": {"kind": "local", "root": "var/cold"},
                    "cloud": {"kind": "adls", "connection_string_env": "FLOWD_CLOUD_CONN"}},
        "hotfolders": [{"name": "inbox", "path": "hotfolders/inbox", "output": "lake:assets"}],
        "events": {"lake-events": {"kind": "azure_queue", "storage": "cloud", "queue": "flowd-events"}},
        "ftp": {"groups": [{"name": "photographers", "hotfolder": "inbox"}]},
    })
    hotfolders = {hf.name: hf for hf in settings.hotfolders}
    for block in blocks:
        errors: list[object] = []
        rules = parse_rule_file(block.encode(), "README.md", hotfolders, settings.storage, errors,  # type: ignore[arg-type]
                                events=settings.events,
                                ftp_groups={g.name: g.tenant for g in settings.ftp.groups} if settings.ftp else {})
        assert not errors, "\n".join(map(str, errors))
        assert rules
