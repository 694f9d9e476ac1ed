"""bench/scheduler.py pins each side's jobs to the instants of its rounds with a cron expression:
the jobs must fire at exactly those instants, in order, and not again while the bench runs, or
the two sides would fire at the same instant or a round would be counted twice."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimir_tui.scheduler.cron import CronSchedule

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str):
    sys.path.insert(0, str(BENCH))  # the scripts import their neighbour common.py
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


# Rounds a minute apart across the turn of a year (minute, hour, day, month and year all
# change), and three rounds inside one minute.
CASES = [
    [datetime(2026, 12, 31, 23, 58, 30, tzinfo=UTC) + timedelta(minutes=k) for k in range(3)],
    [datetime(2026, 11, 30, 12, 5, 0, tzinfo=UTC) + timedelta(seconds=20 * k) for k in range(3)],
]


@pytest.mark.parametrize("instants", CASES, ids=["year-turn", "one-minute"])
def test_mimir_cron_fires_at_the_instants_only(instants: list[datetime]) -> None:
    schedule = CronSchedule(bench_module("scheduler").pinned_cron(instants))
    fired = []
    at = instants[0] - timedelta(seconds=5)
    for _ in instants:
        at = schedule.next_after(at)
        fired.append(at)
    assert fired == instants
    assert schedule.next_after(instants[-1]) - instants[-1] > timedelta(minutes=50)


@pytest.mark.parametrize("instants", CASES, ids=["year-turn", "one-minute"])
def test_peer_trigger_fires_at_the_instants_only(instants: list[datetime]) -> None:
    pytest.importorskip("apscheduler", reason="the bench extra: pip install -e '.[bench]'")
    trigger = bench_module("peer").pinned([int(t.timestamp()) for t in instants])
    fired: list[datetime] = []
    previous = None
    now = instants[0] - timedelta(seconds=5)
    for _ in instants:
        previous = trigger.get_next_fire_time(previous, now)
        fired.append(previous)
        now = previous
    assert fired == instants
    after = trigger.get_next_fire_time(instants[-1], instants[-1] + timedelta(seconds=1))
    assert after is None or after - instants[-1] > timedelta(minutes=50)
