"""Retry policy: which ended runs are retried, after how long, and the queued request that
retries one.

A retry is a :class:`~mimir_tui.persistence.RunRequest` in the queue (``triggered_by`` retry,
the next attempt number, available after an exponential backoff), so any instance serving the
job's queue may run it, not only the one that saw the failure.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from ..errors import MimirError
from ..persistence import JobExecutionRecord, RunRequest, ScheduledJob
from ..persistence.models import Status, TriggeredBy

log = logging.getLogger("mimir.scheduler")

#: The ends of a run that its job's ``max_retries`` retries (a cancel or a success is final).
RETRYABLE = (Status.failed, Status.timed_out, Status.interrupted)
MAX_RETRY_DELAY = 7 * 86400.0  # seconds


def retry_delay(backoff_seconds: float, attempt: int) -> float:
    """Seconds before the retry of ``attempt``: exponential from ``backoff_seconds``, but never
    more than a week between attempts (and no float overflow)."""
    return min(backoff_seconds * 2.0 ** min(attempt - 1, 40), MAX_RETRY_DELAY)


def is_retryable(record: JobExecutionRecord) -> bool:
    """Whether the end of ``record`` calls for a retry, if its job allows one."""
    return record.status in RETRYABLE and record.job_id is not None


def retry_request(
    record: JobExecutionRecord, job: ScheduledJob | None, now: datetime, fire: datetime | None = None
) -> RunRequest | None:
    """The request that retries ``record``, or None if it is not to be retried (it did not
    fail, it has no job, or its job's ``max_retries`` are used up). ``fire``: the fire the
    run belongs to when its row does not say (a retry's row: the first attempt holds the run
    key)."""
    if not is_retryable(record) or job is None or record.attempt > job.max_retries:
        return None
    delay = retry_delay(job.retry_backoff_seconds, record.attempt)
    return RunRequest(
        job_id=job.id,
        pipeline=job.pipeline,
        priority=job.priority,
        triggered_by=TriggeredBy.retry.value,
        attempt=record.attempt + 1,
        available_at=now + timedelta(seconds=delay),
        scheduled_for=record.scheduled_for or fire,
        requested_by=f"retry of {record.id}",
        queue=job.queue,
    )


def enqueue_retry(
    backend: Any, record: JobExecutionRecord, job: ScheduledJob | None, now: datetime, fire: datetime | None = None
) -> RunRequest | None:
    """Queue the retry of ``record`` if its job allows one (see :func:`retry_request`); the
    request, or None if none was queued (a failure to queue it is logged)."""
    request = retry_request(record, job, now, fire)
    if request is None or job is None:
        return None
    try:
        backend.runs.enqueue(request)
    except MimirError as exc:
        log.error("could not queue a retry of %s: %s", record.id, exc)
        return None
    log.info(
        "execution %s %s; retry %d of %d in %.0f s",
        record.id,
        record.status,
        record.attempt,
        job.max_retries,
        retry_delay(job.retry_backoff_seconds, record.attempt),
    )
    return request
