"""Running claimed runs: one executor shared by the scheduler (fires and queued runs) and by
``jobs run --wait`` (a queued run nobody claimed), and the use case behind ``pipelines run``.

An execution is claimed (its row created ``queued`` with this worker's id) before it gets
here. The executor runs its pipeline, makes sure no ``queued``/``running`` row is left behind
when the runner itself fails, records the job's last result and queues a retry when the job
allows one. Cancel requests for a run go through :func:`new_cancel` and
:func:`request_cancel`.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import MimirError, NotFound, OutcomeNotSaved
from ..persistence import FINISHED, JobExecutionRecord, RunRequest, ScheduledJob
from ..persistence.models import Status, TriggeredBy
from ..persistence.types import as_utc
from ..pipelines.cancel import CancelToken
from .clock import DatabaseClock, SystemClock
from .retries import enqueue_retry, is_retryable
from .workers import crashed_peers, make_worker_id, register_worker, worker_session

log = logging.getLogger("mimir.scheduler")

#: Why a run stopped by :meth:`Scheduler.stop` is ``interrupted``.
STOPPED_REASON = "interrupted: the instance was stopped before the run finished"


# -- cancel requests (one place: what the runner is handed to stop a run) -------------------------


def new_cancel() -> CancelToken:
    """A cancel request for one run, handed to the runner as its ``cancel``."""
    return CancelToken()


def request_cancel(cancel: CancelToken, reason: str, status: Status = Status.cancelled) -> None:
    """Ask the run holding ``cancel`` to stop; ``reason`` becomes its recorded error, ``status``
    its status."""
    cancel.cancel(reason, status=status.value)


# -- the executor -------------------------------------------------------------------------------


class Executor:
    """Runs claimed executions as worker ``worker_id``, on ``clock`` (by default the database
    server's, which every instance shares). ``job_lookup`` finds a run's job (the scheduler's
    loaded jobs first)."""

    def __init__(
        self,
        backend: Any,
        settings: Any,
        *,
        runner: Any = None,
        clock: Any = None,
        worker_id: str | None = None,
        job_lookup: Callable[[str], ScheduledJob | None] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.clock = clock or DatabaseClock(backend)
        if runner is None:
            from ..pipelines.runner import PipelineRunner

            # Its records' times on that clock too (a test's fake clock stays the scheduler's).
            shared = self.clock if isinstance(self.clock, DatabaseClock) else None
            runner = PipelineRunner(backend, settings, clock=shared)
        self.runner = runner
        self.worker_id = worker_id or make_worker_id()
        self._job_lookup = job_lookup
        self.stopped_runs = 0  # runs interrupted by a stop that recorded it themselves
        #: Called when this executor queues a retry (the scheduler's queue loop looks at once).
        self.on_queued: Callable[[], None] | None = None

    # -- the worker -----------------------------------------------------------------------

    def sync_clock(self) -> None:
        if isinstance(self.clock, DatabaseClock):
            self.clock.sync()

    def lease_now(self) -> datetime:
        """The clock heartbeats are written and judged on: the database's (one clock for every
        machine), or the fake clock of a test."""
        if isinstance(self.clock, SystemClock):
            return self.backend.database_now()
        return self.clock.now()

    def register(self, *, load: tuple[int, int] | None = None, queues: Iterable[str] = ()) -> None:
        """Register this worker, and recover what a crashed predecessor on this host left."""
        self.sync_clock()
        register_worker(self.backend, self.worker_id, self.lease_now(), load=load, queues=queues)
        self.recover(crashed_peers(self.backend, self.worker_id))

    def recover(self, worker_ids: list[str]) -> None:
        """Declare ``worker_ids`` dead now; interrupt their runs and queue the retries."""
        if not worker_ids:
            return
        dead, interrupted = self.backend.workers.reap_stale_workers(
            stale_after=self.settings.scheduler.stale_after, now=self.lease_now(), also=worker_ids
        )
        if dead:
            log.warning("recovered after a crash of %s: %d run(s) interrupted", ", ".join(dead), len(interrupted))
        for record in interrupted:
            self.maybe_retry(record)

    # -- running --------------------------------------------------------------------------

    def job(self, job_id: str) -> ScheduledJob | None:
        if self._job_lookup is not None:
            return self._job_lookup(job_id)
        try:
            return self.backend.get_job(job_id)
        except MimirError:
            return None

    def execute(
        self,
        job: ScheduledJob | None,
        record: JobExecutionRecord,
        pipeline: str | None = None,
        cancel: CancelToken | None = None,
        *,
        fire: datetime | None = None,
        pipeline_version: Any = None,
    ) -> JobExecutionRecord | None:
        """Run the claimed ``record`` to its end; the final record, or None if the run could
        not even start (it is then recorded ``failed``) or its end could not be saved (see
        ``PipelineRunner._save_final``). Its end is saved with its job's ``last_result``.
        ``fire``: the fire a retry belongs to (see
        :func:`~mimir_tui.scheduler.retries.retry_request`); ``pipeline_version``: the stored
        pipeline's version as read at the claim (see ``PipelineRunner.run_async``)."""
        pipeline = pipeline or record.pipeline
        cancel = cancel if cancel is not None else new_cancel()
        timeout = job.timeout_seconds if job and job.timeout_seconds else self.settings.scheduler.default_timeout
        try:
            final = self.runner.run(
                pipeline,
                job_id=record.job_id,
                triggered_by=record.triggered_by,
                execution_id=record.id,
                scheduled_for=record.scheduled_for,
                attempt=record.attempt,
                worker_id=self.worker_id,
                timeout=timeout,
                cancel=cancel,
                claimed=True,
                pipeline_version=pipeline_version,
            )
        except OutcomeNotSaved as exc:
            # The run ended, and the database stayed away for the runner's whole save window:
            # its end is not guessed (a success recorded failed would be retried). The row
            # stays running until this instance reconciles it (interrupted, then retried).
            log.error("%s", exc)
            return None
        except Exception as exc:
            # The runner could not even record the run (the database went away at that moment).
            # Leave no queued/running row behind on a live instance: nobody would ever reap it,
            # and it would count as an active run of the job for good. Not a MimirError: a bug,
            # whose stack is wanted.
            log.error("execution %s could not run: %s", record.id, exc, exc_info=not isinstance(exc, MimirError))
            failed = self.record_failure(record, pipeline, f"could not run: {exc}")
            if failed is not None and job is not None:
                self.maybe_retry(failed, job, fire=fire)
            return None
        # Whoever marks a run interrupted queues its retry: here, a run this instance's stop
        # interrupted (its cancel request says so, and the run recorded it: see
        # Scheduler.stop), not one a peer ended.
        stopped = final.status == Status.interrupted and cancel.is_set() and final.error == cancel.reason
        if stopped:
            self.stopped_runs += 1
        retry = final.status != Status.interrupted or stopped
        if job is not None and retry:
            self.maybe_retry(final, job, fire=fire)
        return final

    def record_failure(self, record: JobExecutionRecord, pipeline: str, error: str) -> JobExecutionRecord | None:
        """Mark an execution that never ran (or whose end could not be saved) ``failed``,
        unless it ended meanwhile; a few tries, for a database that is briefly away."""
        delay = 0.2
        for attempt in range(4):
            try:
                try:
                    current = self.backend.get_execution(record.id)
                except NotFound:
                    current = record
                if current.status in FINISHED:
                    return None
                now = self.clock.now()
                current.pipeline = current.pipeline or pipeline
                current.status = Status.failed.value
                current.error = error
                current.end_time = now
                current.duration = max(0, int((now - as_utc(current.start_time)).total_seconds() * 1000))
                current.context = current.context or {}
                current.steps = current.steps or []
                if not self.backend.save_execution(current, only_unfinished=True):
                    return None  # it ended meanwhile (another instance interrupted it)
                return current
            except MimirError as exc:
                if attempt == 3:
                    log.error("could not mark execution %s failed: %s", record.id, exc)
                    return None
                time.sleep(delay)
                delay *= 2
        return None

    def maybe_retry(
        self, record: JobExecutionRecord, job: ScheduledJob | None = None, *, fire: datetime | None = None
    ) -> RunRequest | None:
        """Queue the retry of ``record`` if it failed and its job allows one."""
        if not is_retryable(record):
            return None
        if job is None and record.job_id is not None:
            job = self.job(record.job_id)
        request = enqueue_retry(self.backend, record, job, self.clock.now(), fire)
        if request is not None and self.on_queued is not None:
            self.on_queued()
        return request


# -- use cases ----------------------------------------------------------------------------------


def run_request_here(backend: Any, settings: Any, request: RunRequest) -> bool:
    """Claim the queued ``request`` and run it in this process, registered as a worker with a
    heartbeat (a crash of this process is then recovered like any other). False if another
    instance claimed it first, or it is gone."""
    executor = Executor(backend, settings)
    with worker_session(backend, settings, worker_id=executor.worker_id, register=executor.register):
        got = backend.runs.claim_request(executor.worker_id, request_id=request.id)
        if got is None:
            return False
        _, claimed = got
        job = backend.get_job(claimed.job_id) if claimed.job_id else None
        executor.execute(job, claimed, request.pipeline)
    return True


@dataclass
class FinishedRun:
    record: JobExecutionRecord
    log_path: Path


@contextmanager
def cancel_on_signals(cancel: CancelToken) -> Iterator[None]:
    """While in the block, SIGINT, SIGTERM and SIGHUP (an SSH session that drops takes the
    command with it) cancel the run holding ``cancel`` instead of killing the process. Off the
    main thread, signals cannot be caught: nothing is installed."""

    def on_signal(signum: int, _frame: Any) -> None:
        request_cancel(cancel, f"cancelled: interrupted ({signal.Signals(signum).name})")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_pipeline_now(
    backend: Any,
    settings: Any,
    pipeline: Any,
    *,
    registry: Any = None,
    job_id: str | None = None,
    timeout: float | None = None,
    on_step: Any = None,
    cancel: CancelToken | None = None,
    handle_signals: bool = False,
) -> FinishedRun:
    """Run ``pipeline`` (a spec or a stored pipeline's name) now in this process, and return
    its final record (``job_id``: recorded under that job, which must exist).

    The run's times are on the clock the schedulers use (the database's), and it runs as a
    registered worker with a heartbeat: if this process dies, a service's reaper sees the
    heartbeat go stale and interrupts the run, instead of a row left ``running`` for good that
    blocks its job. ``cancel``: stops the run when requested; ``handle_signals``: a stop signal
    requests it (see :func:`cancel_on_signals`)."""
    from ..pipelines.runner import PipelineRunner

    if job_id is not None:
        backend.get_job(job_id)  # an unknown job is bad input (NotFound), not a failed run
    clock = DatabaseClock(backend)
    clock.sync()
    runner = PipelineRunner(backend, settings, registry, clock=clock)
    cancel = cancel if cancel is not None else new_cancel()
    with cancel_on_signals(cancel) if handle_signals else nullcontext():
        with worker_session(backend, settings) as worker_id:
            record = runner.run(
                pipeline,
                job_id=job_id,
                triggered_by=TriggeredBy.manual.value,
                timeout=timeout,
                cancel=cancel,
                on_step=on_step,
                worker_id=worker_id,
            )
    return FinishedRun(record, runner.log_path(record.id))
