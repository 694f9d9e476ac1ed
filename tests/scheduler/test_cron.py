"""Cron in IANA zones, with Debian cron's DST behaviour (table tests, as cronsim does)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest

from mimir_tui.scheduler.cron import CronError, CronSchedule, validate_cron

# (zone, spring-forward local date, fall-back local date) in 2026
TRANSITIONS = [
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
    ("Australia/Sydney", date(2026, 10, 4), date(2026, 4, 5)),
    ("Australia/Lord_Howe", date(2026, 10, 4), date(2026, 4, 5)),  # a 30-minute shift
    ("America/Santiago", date(2026, 9, 6), date(2026, 4, 5)),  # transitions at midnight
]


def local_day_bounds(zone: str, day: date) -> tuple[datetime, datetime]:
    s = CronSchedule("0 0 * * *", zone)
    start = datetime(day.year, day.month, day.day, tzinfo=s.tz) - timedelta(hours=6)
    end = start + timedelta(hours=36)
    return start.astimezone(UTC), end.astimezone(UTC)


def fires_on_local_day(sched: CronSchedule, day: date) -> list[datetime]:
    start, end = local_day_bounds(sched.timezone, day)
    return [f for f in sched.fires(start, end) if f.astimezone(sched.tz).date() == day]


@pytest.mark.parametrize("zone,spring,fall", TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 2 * * *", "30 1 * * *", "15 3 * * *", "0 0 * * *"])
def test_fixed_time_job_runs_once_per_local_day_on_both_transition_days(zone, spring, fall, expr):
    sched = CronSchedule(expr, zone)
    for day in (spring - timedelta(days=1), spring, fall, fall + timedelta(days=1)):
        fires = fires_on_local_day(sched, day)
        assert len(fires) == 1, (zone, expr, day, fires)


@pytest.mark.parametrize("zone,spring,fall", TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
def test_hourly_job_runs_once_per_real_hour(zone, spring, fall):
    sched = CronSchedule("17 * * * *", zone)
    for day in (spring, fall):
        start, end = local_day_bounds(zone, day)
        fires = list(sched.fires(start, end))
        gaps = {b - a for a, b in pairwise(fires)}
        # Whole-hour shifts keep fires exactly an hour apart; Lord Howe's half hour shifts them.
        assert all(timedelta(minutes=30) <= g <= timedelta(minutes=90) for g in gaps), (zone, day, gaps)
        real_hours = (end - start) / timedelta(hours=1)
        assert abs(len(fires) - real_hours) <= 1, (zone, day, len(fires), real_hours)
        assert len(set(fires)) == len(fires)


def test_new_york_spring_forward_runs_skipped_time_right_after_the_jump():
    sched = CronSchedule("30 2 * * *", "America/New_York")
    fire = sched.next_after(datetime(2026, 3, 8, 0, 0, tzinfo=UTC))
    assert fire == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, the instant of the jump
    assert fire.astimezone(sched.tz).strftime("%H:%M") == "03:00"


def test_several_skipped_times_of_one_job_fire_once():
    sched = CronSchedule("*/15 2 * * *", "America/New_York")
    fires = fires_on_local_day(sched, date(2026, 3, 8))
    assert [f.astimezone(sched.tz).strftime("%H:%M") for f in fires] == ["03:00"]


def test_new_york_fall_back_fixed_time_runs_at_first_occurrence():
    sched = CronSchedule("30 1 * * *", "America/New_York")
    fires = fires_on_local_day(sched, date(2026, 11, 1))
    assert fires == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]  # 01:30 EDT, not 01:30 EST


def test_fall_back_hourly_runs_in_both_passes_of_the_repeated_hour():
    sched = CronSchedule("30 * * * *", "America/New_York")
    fires = sched.next_n(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), 4)
    assert [f.strftime("%H:%M") for f in fires] == ["04:30", "05:30", "06:30", "07:30"]
    assert [f.astimezone(sched.tz).strftime("%H:%M%z") for f in fires] == [
        "00:30-0400",
        "01:30-0400",
        "01:30-0500",
        "02:30-0500",
    ]


def test_step_hour_counts_as_per_real_hour():
    sched = CronSchedule("0 */1 * * *", "Europe/Berlin")
    start, end = local_day_bounds("Europe/Berlin", date(2026, 10, 25))
    fires = [f for f in sched.fires(start, end) if f.astimezone(sched.tz).date() == date(2026, 10, 25)]
    assert len(fires) == 25  # the fall-back day has 25 real hours


def test_no_dst_zone_and_utc():
    sched = CronSchedule("0 9 * * 1-5", "Asia/Kolkata")
    fires = sched.next_n(datetime(2026, 11, 27, 0, 0, tzinfo=UTC), 3)  # Fri, Mon, Tue
    assert [f.astimezone(sched.tz).strftime("%a %H:%M") for f in fires] == ["Fri 09:00", "Mon 09:00", "Tue 09:00"]
    assert fires[0] == datetime(2026, 11, 27, 3, 30, tzinfo=UTC)


def test_seconds_field_is_last():
    sched = CronSchedule("* * * * * */10", "UTC")
    fires = sched.next_n(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), 3)
    assert [f.second for f in fires] == [10, 20, 30]


def test_next_after_is_strict_and_naive_means_utc():
    sched = CronSchedule("0 * * * *")
    at = datetime(2026, 1, 1, 5, 0)
    assert sched.next_after(at) == datetime(2026, 1, 1, 6, 0, tzinfo=UTC)


def test_nicknames():
    assert CronSchedule("@hourly").next_after(datetime(2026, 1, 1, 5, 1, tzinfo=UTC)).hour == 6
    assert validate_cron("@DAILY") == "@daily"


@pytest.mark.parametrize(
    "expr,fragment",
    [
        ("61 * * * *", "61 * * * *"),
        ("* * *", "3 fields"),
        ("* * * * * * *", "7 fields"),
        ("@often", "unknown nickname"),
        ("", "empty"),
        ("a b c d e", "a b c d e"),
    ],
)
def test_bad_expressions_name_themselves(expr, fragment):
    with pytest.raises(CronError) as info:
        CronSchedule(expr)
    assert fragment in str(info.value)
    assert info.value.exit_code == 2


def test_bad_timezone_is_named():
    with pytest.raises(CronError, match="Mars/Base"):
        CronSchedule("* * * * *", "Mars/Base")
