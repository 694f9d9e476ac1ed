"""The scheduler's loops log a bug with its stack once, not at every poll; a MimirError (the
database is away) stays one line."""

from __future__ import annotations

import logging
import threading

import pytest
from sched_helpers import T0, fake_scheduler

from mimir_tui.errors import PersistenceError
from mimir_tui.scheduler.clock import FakeClock

POLLS = 50


class StopAfter(FakeClock):
    """A fake clock whose loop waits end the loop after ``polls`` of them (``stop``, once
    given: the scheduler's; else the event waited on)."""

    def __init__(self, polls: int) -> None:
        super().__init__(T0)
        self.polls = polls
        self.stop: threading.Event | None = None

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.polls -= 1
        if self.polls <= 0:
            (self.stop or event).set()
            event.set()
        return super().wait(event, seconds)


def scheduler_records(caplog):
    return [r for r in caplog.records if r.name == "mimir.scheduler" and r.levelno >= logging.WARNING]


def broken_refresh(**_kw):
    return 1 / 0


@pytest.mark.parametrize(
    "loop, step", [("_fire_loop", "refresh_jobs"), ("_queue_loop", "_look_at_queue"), ("_heartbeat_loop", "beat")]
)
def test_a_bug_in_a_loop_logs_its_traceback_once(store, sqlite_settings, caplog, monkeypatch, loop, step) -> None:
    clock = StopAfter(POLLS)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    if loop in ("_fire_loop", "_queue_loop"):  # each waits on its own wake-up event, and ends when draining
        clock.stop = scheduler._draining
    monkeypatch.setattr(scheduler, step, broken_refresh)
    caplog.set_level(logging.INFO, logger="mimir.scheduler")
    getattr(scheduler, loop)()  # runs in this thread until the clock ends it
    records = scheduler_records(caplog)
    with_stack = [r for r in records if r.exc_info]
    assert len(with_stack) == 1, [r.getMessage() for r in records]
    assert with_stack[0].exc_info[0] is ZeroDivisionError
    assert "in broken_refresh" in caplog.text, "the stack names the frame that raised"
    summaries = [r.getMessage() for r in records if not r.exc_info]
    assert len(summaries) == 1 and "repeated" in summaries[0], summaries  # written as the loop ends


def test_a_bug_in_every_job_fire_logs_one_traceback(store, sqlite_settings, caplog, monkeypatch) -> None:
    from datetime import timedelta

    from mimir_tui.scheduler import jobs

    for n in range(5):
        jobs.create_job(store, name=f"j{n}", pipeline="ok", cron_expr="* * * * *", now=T0)
    clock = StopAfter(POLLS)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    monkeypatch.setattr(scheduler, "_run_records", lambda job, fires, now: 1 / 0)  # a bug in every fire
    caplog.set_level(logging.INFO, logger="mimir.scheduler")
    clock.advance(timedelta(minutes=1).total_seconds())
    report = scheduler.tick()
    assert report.errors == 5
    with_stack = [r for r in scheduler_records(caplog) if r.exc_info]
    assert len(with_stack) == 1 and with_stack[0].getMessage().startswith("could not fire job ")


def test_a_mimir_error_in_a_loop_is_one_line_without_a_stack(store, sqlite_settings, caplog, monkeypatch) -> None:
    clock = StopAfter(POLLS)
    scheduler = fake_scheduler(store, sqlite_settings, clock)
    clock.stop = scheduler._draining  # the fire loop waits on its wake-up event, and ends when draining

    def database_away(**_kw):
        raise PersistenceError("jobs_signature failed: database is locked")

    monkeypatch.setattr(scheduler, "refresh_jobs", database_away)
    caplog.set_level(logging.INFO, logger="mimir.scheduler")
    scheduler._fire_loop()
    records = scheduler_records(caplog)
    assert records, "logged"
    assert all(not r.exc_info for r in records)
    assert {r.getMessage() for r in records} == {"scheduler tick failed: jobs_signature failed: database is locked"}
