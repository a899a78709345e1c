"""When scheduled work runs: `{every: 30s}`, `{cron: "15 * * * *", timezone: "Europe/Oslo"}`, "once".

The arithmetic lives here, in wall-clock time of the schedule's zone, and APScheduler 3.11 only runs it
(a trigger of ours, coalescing, one instance at a time, a misfire grace of about one period).

Why not APScheduler's own CronTrigger: across the autumn DST change it fired a 02:30 job twice and, asked
for the next firing of "*/30 * * * *" inside the repeated hour, went back in time (measured on 3.11.3).
Here a cron expression matches wall-clock times, each of which fires once: at its first occurrence when
the clock goes back, and at the first instant after the gap when a wall time does not exist (02:30 on the
spring-forward night fires at 03:30). `every` is plain elapsed time, aligned to the epoch, so every node
computes the same firings.

Each firing has a slot: its fire time, as UTC text. A unique (schedule, slot) row in the database is what
makes one firing run once across every daemon sharing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from flowd.units import parse_duration

SCHEDULE_HELP = ('{every: 30s} (also 10m, 2h, 1d), {cron: "15 * * * *"} with an optional timezone '
                 '(e.g. "Europe/Oslo"; default: this machine\'s zone)')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_LOOK_BACK = timedelta(hours=3)  # more than any zone's clock change
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def local_zone_name() -> str:
    """This machine's zone as an IANA name (what a cron schedule without `timezone` uses)."""
    from tzlocal import get_localzone_name

    try:
        return get_localzone_name() or "UTC"
    except Exception:  # no /etc/localtime and no TZ: containers often have neither
        return "UTC"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule: `every` seconds, or a five-field cron expression in `timezone`."""

    every: float | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule has either every or cron")

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        if self.every is not None:
            return f"every {_seconds(self.every)}"
        return f"cron \"{self.cron}\" ({self.timezone})"

    @property
    def key(self) -> str:
        """Canonical text: two equal schedules have equal keys."""
        return f"every:{self.every:g}" if self.every is not None else f"cron:{self.cron}@{self.timezone}"

    # -- firings -------------------------------------------------------------------------------------
    def next_after(self, t: datetime) -> datetime:
        """The first firing strictly after `t` (aware), as an aware UTC datetime."""
        t = t.astimezone(UTC)
        if self.every is not None:
            n = math.floor((t - _EPOCH).total_seconds() / self.every) + 1
            return _EPOCH + timedelta(seconds=n * self.every)
        zone = self.zone
        fast = self._wall_cron.get_next_fire_time(None, (_wall(t, zone) + _MINUTE).replace(
            second=0, microsecond=0, tzinfo=UTC))
        if fast is not None:
            instant = _instant(fast.replace(tzinfo=None), zone)
            if instant > t and (t - _LOOK_BACK).astimezone(zone).utcoffset() == \
                    (instant + _LOOK_BACK).astimezone(zone).utcoffset():
                return instant  # no clock change anywhere near: wall order is instant order
        # Around a change wall times are not in the order of their instants (02:30 in the spring gap fires at
        # 01:30 UTC, after 03:00 CEST at 01:00 UTC): look from a little before t and keep the earliest.
        wall = _wall(t - _LOOK_BACK, zone)
        best: datetime | None = None
        for _ in range(100_000):
            candidate = self._wall_cron.get_next_fire_time(None, (wall + _MINUTE).replace(second=0, microsecond=0,
                                                                                          tzinfo=UTC))
            if candidate is None:
                break
            wall = candidate.replace(tzinfo=None)
            if best is not None and wall > _wall(best, zone) + _LOOK_BACK:
                return best
            instant = _instant(wall, zone)
            if instant > t and (best is None or instant < best):
                best = instant
        if best is not None:
            return best
        raise ValueError(f"schedule {self.describe()} never fires after {t.isoformat()}")

    def last_at_or_before(self, t: datetime, since: datetime | None = None) -> datetime | None:
        """The latest firing at or before `t`; None if there is none after `since` (default: a year back)."""
        t = t.astimezone(UTC)
        if self.every is not None:
            n = math.floor((t - _EPOCH).total_seconds() / self.every)
            fire = _EPOCH + timedelta(seconds=n * self.every)
            return fire if since is None or fire > since else None
        floor = since.astimezone(UTC) if since is not None else t - timedelta(days=367)
        # Look back a little first: a day's worth of a minutely cron is 1,440 steps, a year's 525,600.
        for back in (2 * self.period(), 20 * self.period(), (t - floor).total_seconds()):
            start = max(floor, t - timedelta(seconds=back))
            last = None
            fire = self.next_after(start - timedelta(microseconds=1))
            while fire <= t:
                last = fire
                fire = self.next_after(fire)
            if last is not None and last > floor:
                return last
            if start <= floor:
                break
        return None

    def period(self) -> float:
        """About one period in seconds: the longest gap between the next few firings (a weekday-only cron
        has a weekend gap). The misfire grace, and how far back a catch-up looks first."""
        if self.every is not None:
            return self.every
        fire = self.next_after(datetime(2025, 1, 6, tzinfo=UTC))
        longest = 60.0
        for _ in range(12):
            following = self.next_after(fire)
            longest = max(longest, (following - fire).total_seconds())
            fire = following
        return longest

    @property
    def _wall_cron(self) -> CronTrigger:
        # Wall-clock arithmetic: the expression matched against naive local times carried as UTC.
        return _cron(self.cron or "")


def slot_of(fire: datetime) -> str:
    """A firing's slot: its instant as UTC text (the unique key's second half)."""
    return fire.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_schedule(value: object, default_zone: str | None = None) -> Schedule:
    """`{every: 30s}` or `{cron: "...", timezone: "..."}`. Raises ValueError with the allowed forms.
    (The daemon's `run` also accepts "always" and "once": see `parse_run`.)"""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected a schedule: {SCHEDULE_HELP}")
    unknown = [k for k in value if k not in ("every", "cron", "timezone")]
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}' in a schedule; allowed: every, cron, timezone")
    if ("every" in value) == ("cron" in value):
        raise ValueError(f"a schedule has exactly one of every, cron: {SCHEDULE_HELP}")
    if "every" in value:
        if "timezone" in value:
            raise ValueError("timezone applies to cron schedules; every counts elapsed time")
        try:
            seconds = parse_duration(value["every"])
        except ValueError as exc:
            raise ValueError(f"every: {exc}") from None
        if seconds < 1:
            raise ValueError("every: the shortest period is 1s")
        return Schedule(every=seconds)
    expr = value["cron"]
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise ValueError('cron: expected five fields "minute hour day-of-month month day-of-week", '
                         'e.g. "0 3 * * *" (03:00 daily) or "15 * * * *" (quarter past every hour)')
    try:
        _cron(expr)
    except ValueError as exc:
        raise ValueError(f"cron: {exc}") from None
    zone = value.get("timezone", default_zone or local_zone_name())
    if not isinstance(zone, str) or not _valid_zone(zone):
        raise ValueError(f"timezone: not an IANA time zone name like \"Europe/Oslo\" or \"UTC\": {zone!r}")
    schedule = Schedule(cron=" ".join(expr.split()), timezone=zone)
    try:
        schedule.next_after(datetime(2025, 1, 1, tzinfo=UTC))
    except ValueError:
        raise ValueError(f"cron: \"{expr}\" never fires (e.g. the 31st of a 30-day month)") from None
    return schedule


class FlowdTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger running a Schedule's firings (see the module's docstring for why)."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        # At or after now, and strictly after the previous firing: APScheduler collects run times in a loop
        # `while next <= now`, which a trigger returning its previous firing again would never leave.
        start = now - timedelta(microseconds=1)
        if previous_fire_time is not None and previous_fire_time > start:
            start = previous_fire_time
        return self.schedule.next_after(start)

    def __str__(self) -> str:
        return self.schedule.describe()

    def __getstate__(self) -> dict[str, Any]:  # never persisted (in-memory job store); kept for repr
        return {"schedule": self.schedule}


def _cron(expr: str) -> CronTrigger:
    cached = _CRONS.get(expr)
    if cached is None:
        minute, hour, day, month, dow = expr.split()
        # APScheduler 3 counts weekdays from 0 = Monday (its documented historical mistake); cron from
        # 0 = Sunday, with 7 = Sunday too. Numbers become names, which both read the same way.
        cached = _CRONS[expr] = CronTrigger(minute=minute, hour=hour, day=day, month=month,
                                            day_of_week=_weekdays(dow), timezone=UTC)
    return cached


def _weekdays(field: str) -> str:
    """A cron day-of-week field (0-7, names, ranges, lists, steps) as APScheduler's names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"day of week: bad step in {item!r}")
        if base == "*":
            first, last = 0, 6
        else:
            low, _, high = base.partition("-")
            first = _day(low)
            last = _day(high) if high else (6 if step else first)
            if high and _day_number(high) == 7:
                last = 7
        if last < first:
            raise ValueError(f"day of week: range {base!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(text: str) -> int:
    number = _day_number(text)
    return 0 if number == 7 else number


def _day_number(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _DAYS and len(text) == 3:
        return _DAYS.index(text[:3])
    raise ValueError(f"day of week: {text!r} is not 0-7 (0 and 7 are Sunday) or a day name like mon")


_CRONS: dict[str, CronTrigger] = {}


def _wall(t: datetime, zone: tzinfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None, fold=0)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The first instant showing this wall time; for a time inside a spring-forward gap, the instant the
    clock would have shown it had it not jumped (02:30 -> 03:30 CEST)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) != wall:  # does not exist: fold=0 takes the offset from before the gap
        return first
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return min(first, second)


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"
