"""Cron in IANA zones, with Debian cron's DST behaviour (table tests, as cronsim does)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest

from mimir_tui.scheduler.cron import CronError, CronSchedule, describe, seconds_first_warning, validate_cron

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
    sched = CronSchedule("0,15,30,45 2 * * *", "America/New_York")
    fires = fires_on_local_day(sched, date(2026, 3, 8))
    assert [f.astimezone(sched.tz).strftime("%H:%M") for f in fires] == ["03:00"]


def test_wildcard_minute_job_runs_in_real_time_through_both_transitions():
    """A minute field starting with * makes a job a wildcard one (Debian cron, cronsim), even at
    a fixed hour: ``* 1-6`` fell from 03:59+03:00 to 04:00+02:00, skipping the repeated hour."""
    sched = CronSchedule("* 1-6 * * *", "Europe/Riga")
    fires = sched.next_n(datetime(2021, 10, 31, 3, 58, tzinfo=sched.tz), 3)
    assert [f.astimezone(sched.tz).isoformat() for f in fires] == [
        "2021-10-31T03:59:00+03:00",
        "2021-10-31T03:00:00+02:00",
        "2021-10-31T03:01:00+02:00",
    ]
    every_quarter = CronSchedule("*/15 1 * * *", "America/New_York")
    assert len(fires_on_local_day(every_quarter, date(2026, 11, 1))) == 8  # both passes of 01:xx
    in_the_gap = CronSchedule("*/15 2 * * *", "America/New_York")
    assert fires_on_local_day(in_the_gap, date(2026, 3, 8)) == []  # 02:xx never happened


def test_a_step_hour_not_starting_with_star_is_a_fixed_time_job():
    """Debian cron: only a field that starts with * makes a wildcard job; 1-23/2 lists hours."""
    sched = CronSchedule("0 1-23/2 * * *", "America/New_York")
    fires = fires_on_local_day(sched, date(2026, 11, 1))
    assert [f.astimezone(sched.tz).strftime("%H:%M%z") for f in fires][:2] == ["01:00-0400", "03:00-0500"]


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


JAN_2020 = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "expr,days",
    [
        # Either day field starting with * (even */7, */100,1-7): a day must match both.
        ("1 1 1-7 * */7", ["01-05", "02-02", "03-01"]),  # the first Sunday
        ("1 1 */100,1-7 * MON", ["01-06", "02-03", "03-02"]),  # the first Monday
        # Neither does: a day matching either, also with L, LW, nL, n#k, W on one side.
        ("1 1 15 * 1#2", ["01-13", "01-15", "02-10", "02-15"]),
        ("1 1 L * 5L", ["01-31", "02-28", "02-29", "03-27"]),
        ("1 1 LW * MON", ["01-06", "01-13", "01-20", "01-27", "01-31"]),
        ("1 1 15W * SAT", ["01-04", "01-11", "01-15", "01-18"]),
        # Terms croniter takes only alone, in lists.
        ("1 1 LW,15 * *", ["01-15", "01-31", "02-15", "02-28"]),
        ("1 1 * * 1,2,3#1", ["01-01", "01-06", "01-07", "01-13"]),
        ("1 1 * * 1#2,5L", ["01-13", "01-31", "02-10", "02-28"]),
        # nW: the nearest weekday, not across the month (Feb 15 is a Saturday, Mar 15 a Sunday,
        # Feb 1 a Saturday); croniter's Wn spelling; L5 (croniter's) is 5L.
        ("1 1 15W * *", ["01-15", "02-14", "03-16"]),
        ("1 1 W1 * *", ["01-01", "02-03", "03-02"]),
        ("1 1 * * L5", ["01-31", "02-28", "03-27"]),
        ("1 1 L/2 * *", ["01-31", "02-29", "03-31"]),  # a step on L is ignored, as cronsim does
    ],
)
def test_day_fields_read_as_cronsim(expr, days):
    fires = CronSchedule(expr).next_n(JAN_2020, len(days))
    assert [f.strftime("%m-%d") for f in fires] == days


def test_lw_is_the_last_weekday_in_every_kind_of_month():
    """LW runs on croniter's 31W, held to the month's last day: checked against the calendar
    over eight years (months of 28 to 31 days ending on every day of the week)."""
    fires = CronSchedule("0 0 LW * *").next_n(JAN_2020, 96)
    for fire in fires:
        last = date(fire.year, fire.month, calendar.monthrange(fire.year, fire.month)[1])
        while last.weekday() >= 5:
            last -= timedelta(days=1)
        assert fire.date() == last


def test_seconds_with_last_day():
    fire = CronSchedule("0 0 L * * 30").next_after(JAN_2020)
    assert fire == datetime(2020, 1, 31, 0, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "expr,field",
    [
        ("1 1 * * 5L#1", "day-of-week"),
        ("1 1 * * MONL", "day-of-week"),
        ("1 1 * * 1#6", "day-of-week"),
        ("1 1 * * 1-5#2", "day-of-week"),
        ("1 1 1-5W * *", "day-of-month"),
        ("1 1 5-1 * *", "day-of-month"),  # croniter would wrap it round
        ("0 22-2 * * *", "hour"),
        ("H * * * *", "minute"),  # croniter's hashed and random values are not cron
        ("R 1 * * *", "minute"),
        ("* * * JAN-R *", "month"),
        ("1-1_0 * * * *", "minute"),
        ("* * * * * 61", "second"),
        ("* * 1,,2 * *", "day-of-month"),
        ("0 0 30 2 *", "day-of-month"),  # never fires
    ],
)
def test_unsupported_constructs_are_refused_in_mimirs_words(expr, field):
    with pytest.raises(CronError) as info:
        CronSchedule(expr)
    message = str(info.value)
    assert info.value.field == field and field in message and repr(expr) in message
    assert "\n" not in message
    for internal in ("is not acceptable", "bands", "Cron:", "[", "croniter"):
        assert internal not in message, message


@pytest.mark.parametrize(
    "expr,words",
    [
        ("1 1 LW 5 *", "At 01:01 on the last weekday of May"),
        ("1 1 * * 5L", "At 01:01 on the last Friday of the month"),
        ("1 1 * * L5", "At 01:01 on the last Friday of the month"),
        ("1 1 * * 1#2", "At 01:01 on the second Monday of the month"),
        ("1 1 * * 1,2,3#1", "At 01:01 on Monday, Tuesday, and the first Wednesday of the month"),
        ("1 1 1-7 * */7", "At 01:01 on every day of month from 1 through 7 if it's on every seventh day of week"),
        ("0 0 15 * MON", "At 00:00 on the 15th day of month and on Monday"),
        ("1 1 15W * *", "At 01:01 on the weekday nearest the 15th day of every month"),
        ("1 1 W15 5 *", "At 01:01 on the weekday nearest May 15"),
        ("1 1 15W * MON", "At 01:01 on the weekday nearest the 15th day of month and on Monday"),
        ("0 0 15 * ?", "At 00:00 on the 15th day of every month"),
        ("@weekly", "At 00:00 on Sunday"),
        ("* * * * * */10", "Every minute, every 10th second"),
        ("0 3 * * * 30", "At 03:00 every day, at second 30"),
        ("0 3 * * * 0", "At 03:00 every day"),
    ],
)
def test_describe_reads_l_w_hash_and_seconds(expr, words):
    assert describe(expr) == words


def test_bad_timezone_is_named():
    with pytest.raises(CronError, match="Mars/Base"):
        CronSchedule("* * * * *", "Mars/Base")


# -- six fields written with the seconds first (Quartz, Spring) ------------------------------


@pytest.mark.parametrize(
    "expr, reason, rewrite",
    [
        # every second of every fifth minute; meant: every 5 seconds
        ("*/5 * * * * *", "its last field, *, fires it every second", "* * * * * */5"),
        ("*/10 * * * * ?", "its last field, ?, fires it every second", "* * * * * */10"),
        # 60 fires at minute 0 of every fifth hour; meant: every 5 minutes
        ("0 */5 * * * *", "every second of each minute it matches", "*/5 * * * * 0"),
        ("0 0 * * * *", "every second", "0 * * * * 0"),  # 60 fires at midnight; meant: hourly
        ("0 0 12 * * ?", "every second", "0 12 * * * 0"),  # Quartz's noon every day
        ("0 0 9 * * 1-5", "its last field, 1-5, reads like days of the week", "0 9 * * 1-5 0"),
        ("0 0 8 * * 0,6", "its last field, 0,6, reads like days", "0 8 * * 0,6 0"),
        ("0 15 10 ? * 6", "? in the fourth field", "15 10 * * 6 0"),  # Quartz: 10:15 on Saturdays
    ],
)
def test_six_fields_that_look_seconds_first_are_warned_about(expr, reason, rewrite):
    """The attack: ``*/5 * * * * *`` (meant: every 5 seconds) fires every second of every
    fifth minute, silently. The warning says how Mimir reads it, why it looks seconds-first, and
    the expression that says what was meant, in words."""
    warning = seconds_first_warning(expr)
    assert warning is not None and "\n" not in warning
    assert repr(expr) in warning and reason in warning and describe(expr) in warning
    assert f"write {rewrite!r}: {describe(rewrite)!r}" in warning


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * * */5",  # every 5 seconds, seconds last: as meant
        "*/5 * * * * 0",
        "0 2 * * * 30",  # 02:00:30
        "0 2 * * * 5",  # a single number is taken at its word (at second 5)
        "* * * * * *",  # every second, whichever way it is read
        "0 0 * * * 1-5/2",  # a step: seconds, not days
        "0 0 L * * *",  # read seconds first, L would be an hour: not what was meant
        "30 2 * * *",
        "@daily",
    ],
)
def test_six_fields_meant_seconds_last_are_not_warned_about(expr):
    assert seconds_first_warning(expr) is None


@pytest.mark.parametrize(
    "expr, rewrite",
    [("0 0 9 * * MON-FRI", "0 9 * * MON-FRI 0"), ("0 30 9 * * 1-5", "30 9 * * 1-5 0"), ("0 0 0 * * *", "0 0 * * * 0")],
)
def test_an_invalid_six_field_expression_valid_seconds_first_says_so(expr, rewrite):
    """Quartz's ``0 0 9 * * MON-FRI`` is refused (weekdays as seconds), with the expression it
    means in Mimir's order."""
    with pytest.raises(CronError) as info:
        validate_cron(expr)
    assert f"if they come first (Quartz, Spring), write {rewrite!r}" in str(info.value)
    with pytest.raises(CronError) as info:
        validate_cron("61 0 9 * * MON-FRI")  # not valid either way: no hint
    assert "Quartz" not in str(info.value)
