"""Retry policy on plain values: which runs are retried, the backoff, the retry's request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mimir_tui.persistence import JobExecutionRecord, ScheduledJob
from mimir_tui.scheduler.retries import MAX_RETRY_DELAY, retry_delay, retry_request

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "backoff, attempt, delay",
    [
        (10, 1, 10),
        (10, 2, 20),
        (10, 3, 40),
        (0, 5, 0),
        (3600, 1000, MAX_RETRY_DELAY),  # capped at a week, and no float overflow
    ],
)
def test_retry_delay(backoff, attempt, delay) -> None:
    assert retry_delay(backoff, attempt) == delay


def job(**kw) -> ScheduledJob:
    values = dict(
        id="j",
        name="j",
        pipeline="p",
        cron_expr="* * * * *",
        max_retries=2,
        retry_backoff_seconds=30,
        priority=7,
        queue="gpu",
    )
    values.update(kw)
    return ScheduledJob(**values)


def record(status: str, attempt: int = 1, **kw) -> JobExecutionRecord:
    values = dict(
        id="e1", job_id="j", pipeline="p", start_time=T0, status=status, triggered_by="scheduler", attempt=attempt
    )
    values.update(kw)
    return JobExecutionRecord(**values)


@pytest.mark.parametrize(
    "status, attempt, retried",
    [
        ("failed", 1, True),
        ("timed_out", 1, True),
        ("interrupted", 2, True),
        ("failed", 3, False),  # max_retries 2 used up
        ("success", 1, False),
        ("cancelled", 1, False),
        ("missed", 1, False),
    ],
)
def test_which_runs_are_retried(status, attempt, retried) -> None:
    assert (retry_request(record(status, attempt), job(), T0) is not None) is retried


def test_no_retry_without_a_job() -> None:
    assert retry_request(record("failed", job_id=None), job(), T0) is None
    assert retry_request(record("failed"), None, T0) is None


def test_the_retry_request() -> None:
    fire = T0 - timedelta(minutes=1)
    request = retry_request(record("failed", attempt=2, scheduled_for=None), job(), T0, fire)
    assert request is not None
    assert (request.job_id, request.pipeline, request.priority, request.queue) == ("j", "p", 7, "gpu")
    assert (request.triggered_by, request.attempt, request.requested_by) == ("retry", 3, "retry of e1")
    assert request.available_at == T0 + timedelta(seconds=60)
    assert request.scheduled_for == fire, "a retry's row has no fire of its own: the one given"
    own = retry_request(record("failed", scheduled_for=T0), job(), T0, fire)
    assert own is not None and own.scheduled_for == T0, "the row's own fire wins"
