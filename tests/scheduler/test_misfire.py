"""Misfire policy and the due-fires walk as pure functions: plain values in, plain values out,
no database and no scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mimir_tui.scheduler.cron import CronSchedule
from mimir_tui.scheduler.misfire import MAX_MISSED_ROWS, choose_fires, due_fires, missed_note, overlap_note

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


# Fires at minutes 1..10; now is minute 10 plus 30 s: the last fire is 30 s late, the others
# 90 s and more. (policy, grace seconds, cap) -> (minutes run, minutes missed).
TEN = [minute(n) for n in range(1, 11)]
NOW = minute(10) + timedelta(seconds=30)
CASES = [
    # Nothing late: every fire runs, whatever the policy.
    ("skip", 3600, 1, list(range(1, 11)), []),
    ("once", 3600, 1, list(range(1, 11)), []),
    ("all", 3600, 1, list(range(1, 11)), []),
    # Some late (grace 60 s: only minute 10 is on time).
    ("skip", 60, 1, [10], list(range(1, 10))),
    ("once", 60, 1, [10], list(range(1, 10))),
    ("all", 60, 3, [8, 9, 10], list(range(1, 8))),
    ("all", 60, 100, list(range(1, 11)), []),
    # All late (grace 10 s).
    ("skip", 10, 1, [], list(range(1, 11))),
    ("once", 10, 1, [10], list(range(1, 10))),
    ("all", 10, 2, [9, 10], list(range(1, 9))),
    ("all", 10, 0, [10], list(range(1, 10))),  # a cap below 1 counts as 1
    # An unknown policy counts as skip.
    ("never-heard-of-it", 60, 5, [10], list(range(1, 10))),
]


@pytest.mark.parametrize("policy, grace, cap, ran, missed", CASES)
def test_choose_fires(policy, grace, cap, ran, missed) -> None:
    choice = choose_fires(TEN, NOW, policy=policy, grace_seconds=grace, cap=cap)
    assert choice.run == [minute(n) for n in ran]
    assert choice.missed == [minute(n) for n in missed]


@pytest.mark.parametrize("late_by, grace, on_time", [(0, 0, True), (10, 10, True), (11, 10, False)])
def test_grace_is_inclusive(late_by, grace, on_time) -> None:
    fire = minute(1)
    choice = choose_fires([fire], fire + timedelta(seconds=late_by), policy="skip", grace_seconds=grace, cap=1)
    assert (choice.run, choice.missed) == (([fire], []) if on_time else ([], [fire]))


EVERY_MINUTE = CronSchedule("* * * * *", "UTC")


@pytest.mark.parametrize(
    "now, fires, following",
    [
        (minute(1), [1], 2),  # due exactly now
        (minute(1) + timedelta(seconds=59), [1], 2),
        (minute(4) + timedelta(seconds=1), [1, 2, 3, 4], 5),
    ],
)
def test_due_fires_walks_to_the_first_fire_after_now(now, fires, following) -> None:
    due = due_fires(EVERY_MINUTE, minute(1), now, misfire_cap=1)
    assert due.fires == [minute(n) for n in fires]
    assert due.following == minute(following)
    assert due.unlisted_from is None


@pytest.mark.parametrize("cap", [1, 5])
def test_due_fires_after_a_long_downtime_keeps_the_latest(cap) -> None:
    keep = MAX_MISSED_ROWS + cap
    now = minute(3 * keep) + timedelta(seconds=5)
    due = due_fires(EVERY_MINUTE, minute(1), now, misfire_cap=cap)
    assert len(due.fires) == keep
    assert due.fires[-1] == minute(3 * keep), "the latest due fire"
    assert due.fires == [minute(3 * keep - keep + 1 + i) for i in range(keep)], "consecutive, oldest first"
    assert due.unlisted_from == minute(1), "the fires before the listed ones are summed up from here"
    assert due.following is None, "not known from the walk: the caller computes it"


def test_notes() -> None:
    assert missed_note(minute(1), minute(1) + timedelta(seconds=90), "skip") == (
        f"missed: fire at {minute(1).isoformat()} was 90 s late (misfire policy skip)"
    )
    summed = missed_note(minute(5), minute(6), "once", unlisted_from=minute(1))
    assert summed.endswith(
        f"; every earlier fire since {minute(1).isoformat()} was missed too (not recorded one by one)"
    )
    assert overlap_note(2, 2) == "missed: 2 run(s) of this job still active (max_concurrent 2)"
