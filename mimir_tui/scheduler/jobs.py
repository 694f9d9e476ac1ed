"""Jobs as operators handle them: create, edit, enable, disable, delete, run now, next fires.

The command line and the dashboard both call these; each validates first and changes nothing
on bad input (a bad cron expression, an unknown zone or pipeline, an unknown id).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from ..errors import BadInput, Conflict, NotFound
from ..inputs import check_text
from ..persistence import MisfirePolicy, RunRequest, ScheduledJob, new_id, utcnow
from ..persistence.models import JOBS, TriggeredBy, check_queue_name, text_limits
from ..persistence.types import as_utc
from ..pipelines.execlog import execution_log_path, logged_ids
from .cron import CronSchedule, describe, seconds_first_warning, validate_cron, zone

EDITABLE = {
    "name",
    "pipeline",
    "cron_expr",
    "timezone",
    "description",
    "timeout_seconds",
    "max_retries",
    "retry_backoff_seconds",
    "misfire_policy",
    "misfire_grace_seconds",
    "misfire_cap",
    "max_concurrent",
    "priority",
    "enabled",
    "queue",
}


def schedule_of(job: ScheduledJob) -> CronSchedule:
    return CronSchedule(job.cron_expr, job.timezone or "UTC")


_INT_RANGES = (
    ("max_retries", 0, 1000),
    ("misfire_cap", 1, 100_000),
    ("max_concurrent", 1, 10_000),
    ("priority", -1_000_000, 1_000_000),
)
_FLOAT_RANGES = (  # seconds
    ("timeout_seconds", 0, 366 * 86400),
    ("retry_backoff_seconds", 0, 7 * 86400),
    ("misfire_grace_seconds", 0, 366 * 86400),
)


#: The most characters each text column of a job holds: the same limits on every backend.
_TEXT_LIMITS = text_limits(JOBS)


def _check(job: ScheduledJob, backend: Any, *, require_pipeline: bool) -> None:
    if not job.id or not str(job.id).strip():
        raise BadInput("job id is empty")
    check_text(job.id, "job id", limit=_TEXT_LIMITS["id"])  # first: the messages below name the job by it
    if not job.name or not job.name.strip():
        raise BadInput(f"job {job.id!r}: name is empty")
    job.cron_expr = validate_cron(job.cron_expr)
    zone(job.timezone or "UTC")
    try:
        check_queue_name(job.queue)
    except ValueError as exc:
        raise BadInput(f"job {job.id!r}: {exc}") from None
    if job.misfire_policy not in {p.value for p in MisfirePolicy}:
        raise BadInput(f"job {job.id!r}: misfire_policy {job.misfire_policy!r} is not one of skip, once, all")
    for key, low, high in _INT_RANGES:
        value = getattr(job, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadInput(f"job {job.id!r}: {key} must be an integer")
        if not low <= value <= high:
            raise BadInput(f"job {job.id!r}: {key} {value} is out of range ({low} to {high})")
    for key, low, high in _FLOAT_RANGES:
        value = getattr(job, key)
        if value is None and key == "timeout_seconds":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise BadInput(f"job {job.id!r}: {key} must be a finite number of seconds")
        if not low <= value <= high or (key == "timeout_seconds" and value <= 0):
            raise BadInput(
                f"job {job.id!r}: {key} {value} is out of range"
                f" ({'over ' if key == 'timeout_seconds' else ''}{low} to {high})"
            )
    for column, limit in _TEXT_LIMITS.items():  # what the checks above leave: control characters, lengths
        check_text(getattr(job, column), f"job {job.id!r}: {column}", limit=limit)
    check_text(job.description or "", f"job {job.id!r}: description", multiline=True)
    if require_pipeline:
        try:
            backend.get_pipeline(job.pipeline)
        except NotFound:
            raise BadInput(f"job {job.id!r}: pipeline {job.pipeline!r} does not exist (import it first)") from None


def create_job(
    backend: Any,
    *,
    name: str,
    pipeline: str,
    cron_expr: str,
    timezone: str | None = None,
    job_id: str | None = None,
    enabled: bool = True,
    require_pipeline: bool = True,
    now: datetime | None = None,
    **options: Any,
) -> ScheduledJob:
    unknown = set(options) - EDITABLE
    if unknown:
        raise BadInput(f"unknown job option(s): {', '.join(sorted(unknown))}")
    # Built unvalidated: _check says what is wrong in Mimir's words, naming the job.
    job = ScheduledJob.model_construct(
        id=job_id or new_id(),
        name=name,
        pipeline=pipeline,
        cron_expr=cron_expr,
        timezone=timezone or "UTC",
        enabled=enabled,
        **options,
    )
    _check(job, backend, require_pipeline=require_pipeline)
    # Stored now, not at the first fire: the job shows its next run before any instance runs.
    job.next_run = schedule_of(job).next_after(as_utc(now) or backend.database_now()) if enabled else None
    try:
        return backend.save_job(job)
    except Conflict:
        raise BadInput(f"job {job.id!r} already exists (give another id)") from None


def update_job(
    backend: Any,
    job_id: str,
    *,
    now: datetime | None = None,
    require_pipeline: bool = True,
    expected_updated_at: datetime | None = None,
    **changes: Any,
) -> ScheduledJob:
    """Apply ``changes`` to the job. With ``expected_updated_at`` (the ``updated_at`` of the copy
    being edited), an edit another instance made since is not overwritten: :class:`Conflict`."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise BadInput(f"unknown job field(s): {', '.join(sorted(unknown))}")
    job = backend.get_job(job_id)
    before = (job.cron_expr, job.timezone, job.enabled)
    for key, value in changes.items():
        setattr(job, key, value)
    _check(job, backend, require_pipeline=require_pipeline and "pipeline" in changes)
    fields = set(changes)
    if (job.cron_expr, job.timezone, job.enabled) != before or (job.enabled and job.next_run is None):
        # Disabling clears next_run; enabling (or a new schedule) recomputes it from now.
        job.next_run = schedule_of(job).next_after(as_utc(now) or backend.database_now()) if job.enabled else None
        fields.add("next_run")
    # Only what this edit changed: the scheduler may have written next_run (and last_run,
    # last_result) since the job was loaded.
    return backend.update_job(job, fields=fields, if_updated_at=expected_updated_at)


def enable_job(backend: Any, job_id: str, *, now: datetime | None = None) -> ScheduledJob:
    return update_job(backend, job_id, enabled=True, now=now)


def disable_job(backend: Any, job_id: str) -> ScheduledJob:
    return update_job(backend, job_id, enabled=False)


def overdue_by(job: Any, now: datetime) -> timedelta | None:
    """How long ago the enabled job's ``next_run`` passed with no instance firing it (no service
    running, or none serving its queue); None when it has not (or the job is disabled). Under a
    second counts as on time: a running scheduler writes the next fire just after the fire.
    ``job``: a :class:`ScheduledJob` or a lean row of one (``JobRow``)."""
    if not job.enabled or job.next_run is None:
        return None
    late = as_utc(now) - as_utc(job.next_run)
    return late if late >= timedelta(seconds=1) else None


@dataclass(frozen=True)
class DeletedJob:
    """What went with a deleted job: its executions, its queued runs, the log files of its
    executions on this machine (``logging.executions_dir``), and the log files that could not be
    deleted (``path: reason``)."""

    id: str
    executions: int
    queued_runs: int
    log_files: int
    log_files_left: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "deleted": True, **{k: v for k, v in asdict(self).items() if k != "id"}}

    def summary(self) -> str:
        return (
            f"deleted job {self.id} with {count(self.executions, 'execution')}"
            f" ({count(self.log_files, 'log file')} on this machine) and {count(self.queued_runs, 'queued run')}"
        )


def count(n: int, what: str) -> str:
    """``1 execution``, ``3 executions``."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def delete_question(backend: Any, job_id: str) -> str:
    """What deleting the job would take with it, as a question for the operator."""
    job = backend.get_job(job_id)
    executions, queued = backend.jobs.dependents(job_id)
    return (
        f"Delete job {job.id} ({job.name}) with its {count(executions, 'execution')}"
        f" and {count(queued, 'queued run')}? This cannot be undone."
    )


def delete_job(backend: Any, settings: Any, job_id: str) -> DeletedJob:
    """Delete the job with its history, and the log files of its executions."""
    gone = backend.delete_job(job_id)
    # Only files listed in the folder: not the runs that never ran here (missed fires, another
    # machine's), nor a path outside it that an execution id written by another tool names.
    logged = logged_ids(settings) if gone.execution_ids else set()
    removed, left = 0, []
    for execution_id in gone.execution_ids:
        if execution_id not in logged:
            continue
        path = execution_log_path(settings, execution_id)
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass  # deleted meanwhile
        except OSError as exc:
            left.append(f"{path}: {exc.strerror or exc}")
    return DeletedJob(job_id, len(gone.execution_ids), gone.queued_runs, removed, left)


def run_job_now(
    backend: Any,
    job_id: str,
    *,
    triggered_by: str = TriggeredBy.manual.value,
    requested_by: str | None = None,
    priority: int | None = None,
) -> RunRequest:
    """Put a run of the job in the queue; any instance claims it. Returns the request, whose
    ``execution_id`` is the id the execution will have."""
    job = backend.get_job(job_id)
    request = RunRequest(
        job_id=job.id,
        pipeline=job.pipeline,
        priority=job.priority if priority is None else priority,
        triggered_by=triggered_by,
        requested_by=requested_by,
        queue=job.queue,
    )
    return backend.runs.enqueue(request)


@dataclass
class NextFires:
    """An expression's next fires in a zone; its reading in words (``describe``), and a warning
    when it looks written with the seconds first (``seconds_first_warning``)."""

    expr: str
    timezone: str
    fires: list[datetime]
    warning: str | None

    @cached_property
    def explain(self) -> str:
        return describe(self.expr)

    def local(self) -> list[datetime]:
        tz = zone(self.timezone)
        return [f.astimezone(tz) for f in self.fires]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cron_expr": self.expr,
            "timezone": self.timezone,
            "fires": [f.isoformat() for f in self.fires],
            "fires_local": [f.isoformat() for f in self.local()],
            "warning": self.warning,
        }


def next_fires(expr: str, tz: str = "UTC", *, start: datetime | None = None, n: int = 5) -> NextFires:
    if n < 1 or n > 10_000:
        raise BadInput(f"-n {n}: give a count between 1 and 10000")
    schedule = CronSchedule(expr, tz)
    fires = schedule.next_n(as_utc(start) or utcnow(), n)
    return NextFires(schedule.expr, tz, fires, seconds_first_warning(schedule.expr))


def wait_for_run(
    backend: Any,
    settings: Any,
    request: RunRequest,
    *,
    claim_after: float = 3.0,
    poll: float = 0.2,
    timeout: float | None = None,
    on_progress: Any = None,
) -> Any:
    """Follow a queued run to its end and return the final execution.

    If no instance claims the request within ``claim_after`` seconds (no service running, or
    all busy), this process claims it and runs it itself, registered as a worker with a
    heartbeat so that a crash of this process is recovered like any other. While its job has
    ``max_concurrent`` runs in flight the request stays queued: tried again ``claim_after``
    seconds later (at least one).
    """
    import time

    from ..persistence import FINISHED

    deadline = None if timeout is None else time.monotonic() + timeout
    started = time.monotonic()
    live = [
        w
        for w in backend.workers.live_workers(stale_after=settings.scheduler.stale_after)
        if request.queue in w.serves()
    ]
    grace = claim_after if live else 0.0  # nobody serves its queue: run it here at once
    while True:
        try:
            record = backend.get_execution(request.execution_id)
        except NotFound:
            record = None
        if record is not None:
            if on_progress is not None:
                on_progress(record)
            if record.status in FINISHED:
                return record
        elif time.monotonic() - started >= grace:
            from .executor import run_request_here

            ran = run_request_here(backend, settings, request)
            if not ran:
                # Another instance claimed it (its execution exists: claiming creates it in the
                # same transaction), or the request is gone: its job was deleted meanwhile.
                try:
                    backend.get_execution(request.execution_id)
                except NotFound:
                    if any(r.id == request.id for r in backend.runs.list_queue()):
                        # Its job is running as often as it may: try again later.
                        started, grace = time.monotonic(), max(claim_after, 1.0)
                        continue
                    raise NotFound(
                        f"the queued run {request.execution_id} no longer exists (was job {request.job_id!r} deleted?)"
                    ) from None
            grace = float("inf")  # someone (maybe us) has it now: just follow it
            continue
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"execution {request.execution_id} did not finish in {timeout} s")
        time.sleep(poll)
