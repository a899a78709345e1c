"""Schedule arithmetic with a controllable clock: every instant is passed in, nothing sleeps.

`every` is elapsed time aligned to the Unix epoch (every node computes the same firings); a cron
expression matches wall-clock time in its zone and each matching wall time fires once: at its first
occurrence when the clock goes back, at the instant the clock would have shown it when it jumps forward.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flowd.schedule import FlowdTrigger, Schedule, parse_schedule, slot_of

OSLO = ZoneInfo("Europe/Oslo")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")
DAY = 86400.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def cron(expr: str, zone: str = "UTC") -> Schedule:
    return parse_schedule({"cron": expr, "timezone": zone})


def every(text: str) -> Schedule:
    return parse_schedule({"every": text})


def firings(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every firing strictly after `start` and at or before `end`, by repeated next_after."""
    out: list[datetime] = []
    t = start
    while True:
        t = schedule.next_after(t)
        if t > end:
            return out
        out.append(t)


def walls(fires: list[datetime], zone: ZoneInfo) -> list[str]:
    return [f.astimezone(zone).strftime("%m-%d %H:%M%z") for f in fires]


# -- every: elapsed time aligned to the epoch ---------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400)])
def test_every_fires_on_multiples_of_its_period_since_the_epoch(text: str, seconds: int) -> None:
    s = every(text)
    epoch = utc(1970, 1, 1)
    for t in (utc(2026, 5, 17, 13, 47, 23), utc(2026, 5, 17, 13, 47, 23) + timedelta(microseconds=1),
              utc(2031, 1, 1, 0, 0, 1)):
        fire = s.next_after(t)
        assert fire.tzinfo is not None and fire.utcoffset() == timedelta(0)
        assert fire > t
        assert fire - t <= timedelta(seconds=seconds)
        assert (fire - epoch).total_seconds() % seconds == 0


def test_every_examples_a_person_would_check_by_hand() -> None:
    assert every("30s").next_after(utc(2026, 5, 17, 13, 47, 23)) == utc(2026, 5, 17, 13, 47, 30)
    assert every("10m").next_after(utc(2026, 5, 17, 13, 47, 23)) == utc(2026, 5, 17, 13, 50)
    assert every("1h").next_after(utc(2026, 5, 17, 13, 47, 23)) == utc(2026, 5, 17, 14)
    # Aligned to UTC midnight, whatever zone the caller's clock is in.
    assert every("1d").next_after(datetime(2026, 5, 17, 1, 0, tzinfo=OSLO)) == utc(2026, 5, 17)
    assert every("1d").next_after(utc(2026, 5, 17, 0, 0, 1)) == utc(2026, 5, 18)


def test_every_next_after_is_strictly_after_a_firing() -> None:
    s = every("1h")
    assert s.next_after(utc(2026, 5, 17, 13)) == utc(2026, 5, 17, 14)
    assert s.next_after(utc(2026, 5, 17, 13) - timedelta(microseconds=1)) == utc(2026, 5, 17, 13)


def test_every_gives_every_node_the_same_firings() -> None:
    # Two daemons started at different moments agree on the firings (and so on the slots).
    s = every("10m")
    a = firings(s, utc(2026, 5, 17, 9, 1, 7), utc(2026, 5, 17, 11))
    b = firings(s, utc(2026, 5, 17, 9, 8, 59, 999999), utc(2026, 5, 17, 11))
    assert a == b
    assert [slot_of(f) for f in a][:2] == ["2026-05-17T09:10:00Z", "2026-05-17T09:20:00Z"]


def test_every_is_not_moved_by_dst() -> None:
    # Elapsed time: across Oslo's autumn change an hourly schedule still fires every 3600 s.
    fires = firings(every("1h"), utc(2026, 10, 24, 20), utc(2026, 10, 25, 6))
    assert len(fires) == 10
    assert {(b - a).total_seconds() for a, b in zip(fires, fires[1:], strict=False)} == {3600}


def test_slot_is_the_fire_time_as_utc_text() -> None:
    assert slot_of(datetime(2026, 10, 25, 2, 30, tzinfo=OSLO)) == "2026-10-25T00:30:00Z"
    assert slot_of(datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=OSLO)) == "2026-10-25T01:30:00Z"
    assert slot_of(utc(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"


# -- cron: wall-clock time in a zone ------------------------------------------------------------------

def test_cron_minute_of_every_hour() -> None:
    s = cron("15 * * * *")
    assert s.next_after(utc(2026, 5, 17, 10, 14, 59)) == utc(2026, 5, 17, 10, 15)
    assert s.next_after(utc(2026, 5, 17, 10, 15)) == utc(2026, 5, 17, 11, 15)
    fires = firings(s, utc(2026, 5, 17), utc(2026, 5, 18))
    assert len(fires) == 24 and all(f.minute == 15 and f.second == 0 for f in fires)


def test_cron_daily_at_three_follows_the_zones_offset() -> None:
    s = cron("0 3 * * *", "Europe/Oslo")
    assert s.next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 2)  # CET, +01:00
    assert s.next_after(utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 1)  # CEST, +02:00
    assert s.next_after(utc(2026, 7, 11, 0, 59)) == utc(2026, 7, 11, 1)


def test_cron_named_weekday_sunday_at_22_fires_weekly_on_sunday() -> None:
    s = cron("0 22 * * sun", "Europe/Oslo")
    fires = firings(s, utc(2026, 6, 1), utc(2026, 7, 1))  # 2026-06-01 is a Monday
    assert fires[0] == utc(2026, 6, 7, 20)
    assert [f.astimezone(OSLO).strftime("%A %H:%M") for f in fires] == ["Sunday 22:00"] * 4
    assert {(b - a).days for a, b in zip(fires, fires[1:], strict=False)} == {7}


def test_cron_named_weekdays_mon_fri_skip_the_weekend() -> None:
    s = cron("0 9 * * mon-fri", "Europe/Oslo")
    fires = firings(s, utc(2026, 6, 1), utc(2026, 6, 15))
    assert [f.astimezone(OSLO).strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri"] * 2



def test_cron_sunday_at_22_fires_weekly_on_sunday() -> None:
    # Color Factory's "weekday + hour", the README's own example: "0 22 * * 0" is Sundays 22:00 Oslo time.
    s = cron("0 22 * * 0", "Europe/Oslo")
    fires = firings(s, utc(2026, 6, 1), utc(2026, 7, 1))  # 2026-06-01 is a Monday
    assert [f.astimezone(OSLO).strftime("%A %H:%M") for f in fires] == ["Sunday 22:00"] * 4
    assert fires[0] == utc(2026, 6, 7, 20)


def test_cron_numeric_weekdays_1_5_are_monday_to_friday() -> None:
    s = cron("0 9 * * 1-5", "Europe/Oslo")
    fires = firings(s, utc(2026, 6, 1), utc(2026, 6, 15))
    assert [f.astimezone(OSLO).strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri"] * 2


def test_cron_day_31_skips_short_months() -> None:
    s = cron("0 6 31 * *")
    fires = firings(s, utc(2026, 1, 1), utc(2027, 1, 1))
    assert [f.month for f in fires] == [1, 3, 5, 7, 8, 10, 12]
    assert all(f.day == 31 and f.hour == 6 for f in fires)


def test_cron_in_kolkata_is_half_an_hour_off_utc_all_year() -> None:
    s = cron("0 9 * * *", "Asia/Kolkata")
    fires = firings(s, utc(2026, 1, 1), utc(2027, 1, 1))
    assert len(fires) == 365
    assert {(f.hour, f.minute) for f in fires} == {(3, 30)}
    assert {(b - a).total_seconds() for a, b in zip(fires, fires[1:], strict=False)} == {DAY}


def test_cron_in_utc_is_plain() -> None:
    s = cron("0 0 1 1 *", "UTC")
    assert s.next_after(utc(2026, 6, 1)) == utc(2027, 1, 1)
    assert s.next_after(utc(2026, 12, 31, 23, 59, 59, 999999)) == utc(2027, 1, 1)


# -- autumn: the clock goes back, a wall time repeats ------------------------------------------------

def test_oslo_autumn_0230_fires_once_at_its_first_occurrence() -> None:
    s = cron("30 2 * * *", "Europe/Oslo")
    fires = firings(s, utc(2026, 10, 23, 12), utc(2026, 10, 26, 12))
    assert fires == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # Asked inside the repeated hour, before or after the second 02:30: the next one is tomorrow.
    assert s.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)
    assert s.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)
    assert s.next_after(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 26, 1, 30)


def test_oslo_autumn_every_half_hour_never_goes_back_in_time() -> None:
    s = cron("*/30 * * * *", "Europe/Oslo")
    fires = firings(s, utc(2026, 10, 24, 23, 10), utc(2026, 10, 25, 3, 10))
    assert walls(fires, OSLO) == ["10-25 01:30+0200", "10-25 02:00+0200", "10-25 02:30+0200",
                                  "10-25 03:00+0100", "10-25 03:30+0100", "10-25 04:00+0100"]
    # Inside the second 02:00-03:00 (CET): the next firing is 03:00 CET, never the 02:30 already fired.
    for t in (utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 1, 45)):
        assert s.next_after(t) == utc(2026, 10, 25, 2, 0)


def test_new_york_autumn_0130_fires_once() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:00-02:00 happens twice.
    s = cron("30 1 * * *", "America/New_York")
    fires = firings(s, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert fires == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_sydney_autumn_0230_fires_once() -> None:
    # 2026-04-05 03:00 AEDT -> 02:00 AEST: 02:00-03:00 happens twice.
    s = cron("30 2 * * *", "Australia/Sydney")
    fires = firings(s, utc(2026, 4, 3, 12), utc(2026, 4, 5, 18))
    assert fires == [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)]


# -- spring: the clock jumps forward, a wall time does not exist ---------------------------------------

def test_oslo_spring_0230_fires_once_an_hour_later() -> None:
    s = cron("30 2 * * *", "Europe/Oslo")
    fires = firings(s, utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert fires == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert walls(fires, OSLO)[1] == "03-29 03:30+0200"


def test_oslo_spring_every_half_hour() -> None:
    s = cron("*/30 * * * *", "Europe/Oslo")
    fires = firings(s, utc(2026, 3, 29, 0, 10), utc(2026, 3, 29, 2, 10))
    assert walls(fires, OSLO) == ["03-29 01:30+0100", "03-29 03:00+0200", "03-29 03:30+0200",
                                  "03-29 04:00+0200"]


def test_new_york_spring_0230_fires_at_0330_edt() -> None:
    s = cron("30 2 * * *", "America/New_York")
    assert s.next_after(utc(2026, 3, 8, 5)) == utc(2026, 3, 8, 7, 30)
    assert s.next_after(utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 9, 6, 30)


def test_sydney_spring_0230_fires_at_0330_aedt() -> None:
    # 2026-10-04 02:00 AEST -> 03:00 AEDT.
    s = cron("30 2 * * *", "Australia/Sydney")
    fires = firings(s, utc(2026, 10, 2, 12), utc(2026, 10, 4, 18))
    assert fires == [utc(2026, 10, 2, 16, 30), utc(2026, 10, 3, 16, 30), utc(2026, 10, 4, 15, 30)]


DST_DAYS = [("Europe/Oslo", (2026, 3, 29)), ("Europe/Oslo", (2026, 10, 25)),
            ("America/New_York", (2026, 3, 8)), ("America/New_York", (2026, 11, 1)),
            ("Australia/Sydney", (2026, 4, 5)), ("Australia/Sydney", (2026, 10, 4)),
            ("Asia/Kolkata", (2026, 3, 29)), ("UTC", (2026, 3, 29))]


@pytest.mark.parametrize(("zone", "day"), DST_DAYS, ids=[f"{z}-{d[1]}-{d[2]}" for z, d in DST_DAYS])
@pytest.mark.parametrize("expr", ["*/30 * * * *", "30 2 * * *", "0 2 * * *", "*/7 * * * *", "30 1 * * *"])
def test_a_dst_day_of_firings_is_strictly_increasing_without_duplicates(zone: str, day: tuple[int, int, int],
                                                                        expr: str) -> None:
    s = cron(expr, zone)
    start = datetime(*day, tzinfo=ZoneInfo(zone)) - timedelta(hours=6)
    fires = firings(s, start, start + timedelta(hours=36))
    assert fires
    assert all(a < b for a, b in zip(fires, fires[1:], strict=False))
    assert len({slot_of(f) for f in fires}) == len(fires)
    # Each fires at a wall time the expression names, or (in a gap) one it would have shown.
    for f in fires:
        assert f.utcoffset() == timedelta(0)
        assert s.last_at_or_before(f) == f


# -- period, describe ---------------------------------------------------------------------------------

def test_period() -> None:
    assert cron("0 3 * * *", "Europe/Oslo").period() == DAY
    assert cron("15 * * * *").period() == 3600
    assert every("10m").period() == 600
    # Weekdays only: the weekend gap (Friday to Monday) is the longest.
    assert cron("0 9 * * mon-fri", "Europe/Oslo").period() == 3 * DAY
    assert cron("0 22 * * 0").period() == 7 * DAY


def test_describe() -> None:
    assert every("30s").describe() == "every 30s"
    assert every("10m").describe() == "every 10m"
    assert every("90m").describe() == "every 90m"
    assert every("1d").describe() == "every 1d"
    assert cron("0  3 * * *", "Europe/Oslo").describe() == 'cron "0 3 * * *" (Europe/Oslo)'


# -- last_at_or_before --------------------------------------------------------------------------------

def test_last_at_or_before_every() -> None:
    s = every("10m")
    assert s.last_at_or_before(utc(2026, 5, 17, 13, 47, 23)) == utc(2026, 5, 17, 13, 40)
    assert s.last_at_or_before(utc(2026, 5, 17, 13, 40)) == utc(2026, 5, 17, 13, 40)  # at: included
    assert s.last_at_or_before(utc(2026, 5, 17, 13, 47), since=utc(2026, 5, 17, 13, 39)) == utc(2026, 5, 17, 13, 40)
    assert s.last_at_or_before(utc(2026, 5, 17, 13, 47), since=utc(2026, 5, 17, 13, 40)) is None  # not after since
    assert s.last_at_or_before(utc(2026, 5, 17, 13, 47), since=utc(2026, 5, 17, 13, 41)) is None


def test_last_at_or_before_cron() -> None:
    s = cron("0 3 * * *")
    assert s.last_at_or_before(utc(2026, 5, 5, 2, 59)) == utc(2026, 5, 4, 3)
    assert s.last_at_or_before(utc(2026, 5, 5, 3)) == utc(2026, 5, 5, 3)
    assert s.last_at_or_before(utc(2026, 5, 5, 2, 59), since=utc(2026, 5, 4, 2)) == utc(2026, 5, 4, 3)
    assert s.last_at_or_before(utc(2026, 5, 5, 2, 59), since=utc(2026, 5, 4, 3)) is None
    assert s.last_at_or_before(utc(2026, 5, 5, 2, 59), since=utc(2026, 5, 4, 12)) is None
    # A missed week: the latest firing, not the first missed one.
    assert s.last_at_or_before(utc(2026, 5, 12, 8), since=utc(2026, 5, 5)) == utc(2026, 5, 12, 3)


def test_last_at_or_before_weekday_cron_over_a_weekend() -> None:
    s = cron("0 9 * * mon-fri", "Europe/Oslo")
    # Monday 2026-06-08 08:00 Oslo: the last firing was Friday 09:00.
    assert s.last_at_or_before(datetime(2026, 6, 8, 8, tzinfo=OSLO)) == utc(2026, 6, 5, 7)


def test_last_at_or_before_a_rare_cron_looks_back_far_enough() -> None:
    s = cron("0 6 31 * *")
    assert s.last_at_or_before(utc(2026, 7, 30)) == utc(2026, 5, 31, 6)
    assert s.last_at_or_before(utc(2026, 7, 30), since=utc(2026, 6, 1)) is None


def test_last_at_or_before_in_the_repeated_hour_is_the_first_occurrence() -> None:
    s = cron("30 2 * * *", "Europe/Oslo")
    assert s.last_at_or_before(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)
    assert s.last_at_or_before(utc(2026, 10, 25, 0, 29)) == utc(2026, 10, 24, 0, 30)


# -- parsing ------------------------------------------------------------------------------------------

def test_parse_accepts_the_documented_forms() -> None:
    assert parse_schedule({"every": "30s"}) == Schedule(every=30)
    assert parse_schedule({"every": 3600}) == Schedule(every=3600)
    s = parse_schedule({"cron": "15  *  * * *", "timezone": "Europe/Oslo"})
    assert (s.cron, s.timezone) == ("15 * * * *", "Europe/Oslo")
    assert parse_schedule({"cron": "0 3 * * *"}, default_zone="Asia/Kolkata").timezone == "Asia/Kolkata"
    assert parse_schedule({"cron": "0 3 * * *", "timezone": "UTC"}, default_zone="Asia/Kolkata").timezone == "UTC"
    # Feb 29 exists every four years: it fires, rarely.
    assert cron("0 3 29 2 *").next_after(utc(2026, 1, 1)) == utc(2028, 2, 29, 3)


BAD = [
    ("every-not-a-duration", {"every": "x"}, ["every:", "30s"]),
    ("every-below-1s", {"every": "0.5s"}, ["every:", "shortest period is 1s"]),
    ("every-zero", {"every": 0}, ["every:", "shortest period is 1s"]),
    ("cron-four-fields", {"cron": "0 3 * *"}, ["cron:", "five fields"]),
    ("cron-not-text", {"cron": 5}, ["cron:", "five fields"]),
    ("cron-hour-25", {"cron": "0 25 * * *"}, ["cron:", "25"]),
    ("cron-never-fires", {"cron": "0 3 30 2 *"}, ["cron:", "0 3 30 2 *", "never fires"]),
    ("cron-april-31", {"cron": "0 3 31 4 *"}, ["never fires"]),
    ("timezone-unknown", {"cron": "0 3 * * *", "timezone": "Mars/Base"}, ["timezone:", "Mars/Base"]),
    ("unknown-key", {"cron": "0 3 * * *", "tz": "UTC"}, ["unknown key 'tz'", "every, cron, timezone"]),
    ("both", {"every": "1h", "cron": "0 3 * * *"}, ["exactly one of every, cron"]),
    ("neither", {"timezone": "UTC"}, ["exactly one of every, cron"]),
    ("timezone-with-every", {"every": "1h", "timezone": "UTC"}, ["timezone applies to cron"]),
    ("not-a-mapping", "daily", ["expected a schedule"]),
    ("empty", {}, ["expected a schedule"]),
]


@pytest.mark.parametrize(("value", "says"), [(v, s) for _, v, s in BAD], ids=[i for i, _, _ in BAD])
def test_parse_errors_name_the_problem(value: object, says: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(value)
    for text in says:
        assert text in str(info.value), f"{text!r} not in {info.value}"


# -- FlowdTrigger: what APScheduler asks ---------------------------------------------------------------

def test_trigger_first_firing_is_at_or_after_now() -> None:
    trig = FlowdTrigger(cron("*/30 * * * *", "Europe/Oslo"))
    assert trig.get_next_fire_time(None, utc(2026, 5, 17, 10, 5)) == utc(2026, 5, 17, 10, 30)
    assert trig.get_next_fire_time(None, utc(2026, 5, 17, 10, 30)) == utc(2026, 5, 17, 10, 30)
    assert str(trig) == 'cron "*/30 * * * *" (Europe/Oslo)'


def test_trigger_skips_missed_firings_instead_of_replaying_them() -> None:
    trig = FlowdTrigger(every("10m"))
    # The last run was three hours ago (a suspended host): the next firing is the next one from now.
    got = trig.get_next_fire_time(utc(2026, 5, 17, 7), utc(2026, 5, 17, 10, 3))
    assert got == utc(2026, 5, 17, 10, 10)


@pytest.mark.parametrize("expr", ["*/30 * * * *", "30 2 * * *"])
def test_trigger_driven_like_apscheduler_matches_next_after_over_autumn(expr: str) -> None:
    s = cron(expr, "Europe/Oslo")
    trig = FlowdTrigger(s)
    start, end = utc(2026, 10, 24, 20), utc(2026, 10, 26, 4)
    expected = firings(s, start - timedelta(microseconds=1), end)  # at or after `start`, like the trigger
    got = []
    fire = trig.get_next_fire_time(None, start)
    while fire is not None and fire <= end:
        got.append(fire)
        # The job ran a little after its fire time; APScheduler asks with the previous fire time.
        fire = trig.get_next_fire_time(fire, fire + timedelta(milliseconds=3))
    assert got == expected
    assert all(a < b for a, b in zip(got, got[1:], strict=False))


def test_trigger_never_returns_the_previous_fire_time_again() -> None:
    trig = FlowdTrigger(every("30s"))
    fire = utc(2026, 5, 17, 10, 0, 30)
    now = fire  # the scheduler woke up on the very microsecond of the firing
    # APScheduler 3.11 Job._get_run_times: while next <= now: append; next = trigger(next, now)
    run_times: list[datetime] = []
    nxt: datetime | None = fire
    while nxt is not None and nxt <= now and len(run_times) < 5:
        run_times.append(nxt)
        nxt = trig.get_next_fire_time(nxt, now)
    assert run_times == [fire]  # one run, and the loop ends
    assert nxt == utc(2026, 5, 17, 10, 1)


# -- wall times inside a spring-forward gap: each fires, after the gap ------------------------------------

def test_oslo_spring_two_firings_in_the_missing_hour_both_fire() -> None:
    s = cron("0,30 2 * * *", "Europe/Oslo")
    fires = firings(s, utc(2026, 3, 28, 22), utc(2026, 3, 29, 22))
    # 02:00 -> 03:00 CEST and 02:30 -> 03:30 CEST, as the module documents for a time in the gap.
    assert walls(fires, OSLO) == ["03-29 03:00+0200", "03-29 03:30+0200"]


def test_oslo_spring_started_after_the_jump_still_fires_the_shifted_0230() -> None:
    s = cron("30 2 * * *", "Europe/Oslo")
    t = utc(2026, 3, 29, 1, 10)  # 03:10 CEST, e.g. the daemon (re)started here
    assert s.last_at_or_before(utc(2026, 3, 29, 1, 45)) == utc(2026, 3, 29, 1, 30)  # a firing exists at 03:30
    assert s.next_after(t) == utc(2026, 3, 29, 1, 30)
