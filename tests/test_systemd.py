"""The shipped unit runs flowd the way the daemon expects: notify-type, reload by SIGHUP, sandboxed."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).parent.parent / "systemd" / "flowd.service"


def _service() -> dict[str, list[str]]:
    # configparser cannot hold repeated keys (SystemCallFilter=...), so read the lines ourselves.
    values: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_unit_is_notify_type_with_watchdog_and_reload_by_sighup() -> None:
    service = _service()
    assert service["Type"] == ["notify"]
    assert "run" in service["ExecStart"][0] and "-c" in service["ExecStart"][0]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "WatchdogSec" in service


def test_unit_runs_sandboxed_as_the_flowd_user() -> None:
    service = _service()
    assert service["User"] == ["flowd"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["NoNewPrivileges"] == ["true"]
    assert service["PrivateTmp"] == ["true"]
    assert service["ReadWritePaths"], "the data dir and served folders must be writable"
    assert service["CapabilityBoundingSet"] == ["CAP_LEASE"]
