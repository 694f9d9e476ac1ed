"""Fires across DST transitions, second by second, against a brute-force reading of the rule.

``CronSchedule.next_after`` finds a zone's offset changes by bisection and computes fires from
them (cron.py). Here the rule in cron.py's docstring is applied the slow way instead, with
neither croniter nor any offset arithmetic: every second of real time is turned into its
wall-clock time, and

- a wildcard job fires at each second whose wall-clock time matches;
- a fixed-time job fires at the second at which the wall clock first shows a matching time: the
  first pass of a repeated time, the jump over a skipped one (several skipped times, one fire).

Per-second and per-minute jobs, wildcard and fixed, at both transitions of Europe/Riga (2021,
cronsim's cases), America/New_York and Australia/Lord_Howe (a 30-minute shift).
"""

from __future__ import annotations

import math
import zoneinfo
from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from mimir_tui.scheduler.cron import _NEAR, CronSchedule

SECOND = timedelta(seconds=1)

# (zone, the instant of the change in UTC, what it is)
TRANSITIONS = [
    ("Europe/Riga", datetime(2021, 3, 28, 1, 0, tzinfo=UTC), "03:00 EET -> 04:00 EEST"),
    ("Europe/Riga", datetime(2021, 10, 31, 1, 0, tzinfo=UTC), "04:00 EEST -> 03:00 EET"),
    ("America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC), "02:00 EST -> 03:00 EDT"),
    ("America/New_York", datetime(2026, 11, 1, 6, 0, tzinfo=UTC), "02:00 EDT -> 01:00 EST"),
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC), "02:00 +1030 -> 02:30 +11"),
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, 0, tzinfo=UTC), "02:00 +11 -> 01:30 +1030"),
]

EXPRESSIONS = [
    "* * * * * *",  # wildcard, every second
    "*/10 1-4 * * * *",  # wildcard, every second of :00, :10 ... of 01-04 (none in a skipped hour)
    "0,30 1-4 * * * *",  # fixed time, every second of two minutes an hour
    "* * * * *",  # wildcard, every minute
    "*/15 1-4 * * *",  # wildcard
    "0-59 0-23 * * *",  # fixed time, every minute: a skipped span fires once, a repeated one once
    "15,45 1-4 * * *",  # fixed time
]


def values(field: str, low: int, high: int) -> set[int]:
    """The values of one cron field of plain numbers: *, lists, ranges, steps."""
    out: set[int] = set()
    for term in field.split(","):
        span, _, step = term.partition("/")
        first, last = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        out.update(range(first, last + 1, int(step or 1)))
    return out


class Rule:
    """An expression of plain numeric fields (day-of-week ``*``), read without croniter."""

    def __init__(self, expr: str) -> None:
        minute, hour, day, month, weekday, *second = expr.split()
        assert weekday == "*"
        ranges = [(minute, 0, 59), (hour, 0, 23), (day, 1, 31), (month, 1, 12), (second[0] if second else "0", 0, 59)]
        self.sets = [values(*r) for r in ranges]
        self.wildcard = minute.startswith("*") or hour.startswith("*")

    def matches(self, wall: datetime) -> bool:
        fields = (wall.minute, wall.hour, wall.day, wall.month, wall.second)
        return all(v in s for v, s in zip(fields, self.sets, strict=True))


def reference_fires(expr: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The fires in ``(start, end]`` by the rule, from every second of real time (``start`` is
    not within a repeated span, so its wall-clock time is the latest shown so far)."""
    rule = Rule(expr)
    fires = []
    shown = start.astimezone(tz).replace(tzinfo=None)
    instant = start
    while instant < end:
        instant += SECOND
        wall = instant.astimezone(tz).replace(tzinfo=None)
        if rule.wildcard:
            new = [wall]
        else:  # the times the clock shows for the first time, all at once after a jump
            new = [shown + SECOND * k for k in range(1, int((wall - shown) / SECOND) + 1)]
            shown = max(shown, wall)
        if any(rule.matches(time) for time in new):
            fires.append(instant)
    return fires


@cache
def span(zone: str, change: datetime) -> tuple[ZoneInfo, datetime, datetime, timedelta]:
    """The zone, a stretch of real time holding both passes of a repeated span (or the jump) and
    a few minutes either side, and the size of the shift."""
    tz = ZoneInfo(zone)
    before, after = ((change + d).astimezone(tz).utcoffset() for d in (-SECOND, timedelta(0)))
    assert before is not None and after is not None and before != after, (zone, change)
    shift = abs(after - before)
    return tz, change - shift - timedelta(minutes=4), change + shift + timedelta(minutes=4), shift


@cache
def expected_fires(expr: str, zone: str, change: datetime) -> list[datetime]:
    """The rule's fires from the start of the stretch to an hour past its end."""
    tz, start, end, _ = span(zone, change)
    return reference_fires(expr, tz, start, end + timedelta(hours=1))


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("zone,change,what", TRANSITIONS, ids=[f"{t[0]}-{t[1]:%Y-%m}" for t in TRANSITIONS])
def test_fires_across_a_transition_are_the_rules_second_by_second(zone, change, what, expr):
    """The attack: per-second and per-minute jobs through a repeated or skipped span, where the
    fast path has to tell the two passes apart and jump the gap without walking matches. Each
    fire is chained from the one before over four minutes around each moment that matters: the
    start of the first pass, the middle of each pass, the change, the end of the second pass."""
    tz, _, _, shift = span(zone, change)
    expected = expected_fires(expr, zone, change)
    sched = CronSchedule(expr, zone)
    for moment in (change - shift, change - shift / 2, change, change + shift / 2, change + shift):
        low, high = moment - timedelta(minutes=2), moment + timedelta(minutes=2)
        fires = [fire for fire in expected if low < fire <= high]
        assert list(sched.fires(low, high)) == fires, (zone, what, expr, moment.astimezone(tz))


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("zone,change,what", TRANSITIONS, ids=[f"{t[0]}-{t[1]:%Y-%m}" for t in TRANSITIONS])
def test_next_fire_from_any_instant_near_a_transition_is_the_rules(zone, change, what, expr):
    """From instants all through the stretch, less than a minute apart and between whole
    seconds (inside either pass of a repeated span, just before and after the change), the next
    fire is the rule's first one after."""
    tz, start, end, _ = span(zone, change)
    expected = expected_fires(expr, zone, change)
    sched = CronSchedule(expr, zone)
    starts = [start + timedelta(seconds=53.25) * k for k in range(int((end - start) / timedelta(seconds=53.25)))]
    starts += [change - SECOND, change - SECOND / 2, change, change + SECOND / 2]
    checked = 0
    for instant in starts:
        index = bisect_right(expected, instant)
        if index < len(expected):  # else the next fire is beyond the hour the reference covers
            assert sched.next_after(instant) == expected[index], (zone, what, expr, instant.astimezone(tz))
            checked += 1
    assert checked > 60, checked


@pytest.mark.parametrize(
    "expr,zone,after,fire",
    [
        # One second later the clock goes back to 01:00; the next 1 November is a year away.
        ("* 1 1 11 *", "America/New_York", "2026-11-01T01:59:30-04:00", "2026-11-01T01:00:00-05:00"),
        ("* 1 1 11 *", "America/New_York", "2026-11-01T01:30:00-05:00", "2026-11-01T01:31:00-05:00"),
        # The next match, a week away, is in the skipped hour: the year after, then.
        ("* 2 8 3 *", "America/New_York", "2026-03-01T00:00:00-05:00", "2027-03-08T02:00:00-05:00"),
        # A fixed time in it runs at the jump.
        ("30 2 8 3 *", "America/New_York", "2026-03-01T00:00:00-05:00", "2026-03-08T03:00:00-04:00"),
    ],
)
def test_next_match_far_away_with_a_transition_near(expr, zone, after, fire):
    """The attack: the first wall-clock match after the start lies beyond a change of offset
    (a year away, or in a skipped hour). Before this rework the first case gave the year
    after's 1 November; cronsim, the reference, agrees with each answer."""
    start, expected = datetime.fromisoformat(after), datetime.fromisoformat(fire).astimezone(UTC)
    assert CronSchedule(expr, zone).next_after(start) == expected
    # (in UTC: an aware time in a repeated hour never equals one in another zone, PEP 495)
    assert next(CronSim(expr, start.astimezone(ZoneInfo(zone)))).astimezone(UTC) == expected


def test_tzdata_changes_are_days_apart_and_never_set_the_clock_back_a_day():
    """What cron._NEAR relies on, checked over the installed tzdata (every zone, every offset
    change listed since 1900, read through the pure-Python zoneinfo): within _NEAR of an instant
    the offset changes at most once, and no change sets the clock back by _NEAR or more."""
    from zoneinfo._zoneinfo import ZoneInfo as PureZoneInfo

    since = datetime(1900, 1, 1, tzinfo=UTC).timestamp()
    closest, furthest_back = math.inf, 0.0
    for key in zoneinfo.available_timezones():
        tz = PureZoneInfo.no_cache(key)
        offset = tz._tti_before.utcoff if tz._tti_before else None
        last_change = None
        for moment, info in zip(tz._trans_utc, tz._ttinfos, strict=True):
            if offset is not None and info.utcoff != offset and moment >= since:
                if last_change is not None:
                    closest = min(closest, moment - last_change)
                furthest_back = max(furthest_back, (offset - info.utcoff).total_seconds())
                last_change = moment
            offset = info.utcoff
    assert closest > _NEAR.total_seconds() >= furthest_back
