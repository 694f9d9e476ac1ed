"""The scheduler: fires cron jobs exactly once across instances, runs queued work, heartbeats,
and recovers runs that a dead instance left behind.

One :class:`Scheduler` per process. Its three loops (fire, queue, heartbeat) are daemon
threads; each step is also a plain method (:meth:`tick`, :meth:`poll_queue`, :meth:`beat`) that
tests drive on a :class:`~mimir_tui.scheduler.clock.FakeClock`.

Exactly once: a fire ``(job_id, scheduled_for)`` runs on the instance whose insert of the
execution row lands (a unique key, "on conflict do nothing"); every other instance sees 0 rows
and moves on. Nothing else coordinates the instances.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from .. import __version__
from ..errors import MimirError
from ..persistence import JobExecutionRecord, RunRequest, ScheduledJob, Worker, new_id
from ..persistence.types import as_utc
from .clock import SystemClock
from .cron import CronSchedule

log = logging.getLogger("mimir.scheduler")

RETRYABLE = ("failed", "timed_out", "interrupted")
#: Missed fires recorded one by one per job and tick; beyond this, one row says how many more.
MAX_MISSED_ROWS = 1000


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunPool:
    """A fixed number of daemon threads running executions (daemon: a stopping service never
    waits on a stuck plugin beyond its grace period)."""

    def __init__(self, size: int, name: str = "mimir-run") -> None:
        self.size = size
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._busy += 1
        self._queue.put(fn)

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    @property
    def free(self) -> int:
        return max(0, self.size - self.busy)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _work(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a run's failure is recorded by the runner; never kill the pool
                log.exception("run crashed")
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


@dataclass
class _JobState:
    job: ScheduledJob
    schedule: CronSchedule
    next_fire: datetime


@dataclass
class TickReport:
    """What one tick did, for tests and the dashboard."""

    claimed: list[JobExecutionRecord] = field(default_factory=list)
    missed: list[JobExecutionRecord] = field(default_factory=list)
    lost: int = 0  # fires another instance had claimed first


class Scheduler:
    def __init__(
        self,
        backend: Any,
        settings: Any,
        *,
        runner: Any = None,
        worker_id: str | None = None,
        clock: Any = None,
        inline: bool = False,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.config = settings.scheduler
        if runner is None:
            from ..pipelines.runner import PipelineRunner

            runner = PipelineRunner(backend, settings)
        self.runner = runner
        self.worker_id = worker_id or make_worker_id()
        self.clock = clock or SystemClock()
        self.inline = inline  # run executions inside tick()/poll_queue() (tests)
        self._jobs: dict[str, _JobState] = {}
        self._signature: tuple[int, datetime | None] | None = None
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel: dict[str, threading.Event] = {}
        self._cancel_lock = threading.Lock()
        self.pool: RunPool | None = None
        self.fire_lags: list[float] = []  # seconds between scheduled_for and the claim
        self.on_finished: Callable[[JobExecutionRecord], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def register(self) -> None:
        """Register this instance, and recover what a crashed predecessor on this host left."""
        self.backend.register_worker(
            Worker(id=self.worker_id, host=socket.gethostname(), pid=os.getpid(), version=__version__,
                   started_at=self.clock.now())
        )
        host = socket.gethostname()
        crashed = [
            w["id"] for w in self.backend.list_workers()
            if w["id"] != self.worker_id and w["host"] == host and w["status"] in ("running", "stopping")
            and not _pid_alive(int(w["pid"]))
        ]
        self._recover(crashed)

    def start(self) -> None:
        self.register()
        self.pool = RunPool(self.config.max_concurrency)
        for target, name in ((self._fire_loop, "mimir-fire"), (self._queue_loop, "mimir-queue"),
                             (self._heartbeat_loop, "mimir-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("scheduler %s started", self.worker_id)

    def stop(self, grace: float | None = None) -> list[JobExecutionRecord]:
        """Stop firing and claiming; give running executions ``grace`` seconds to finish; mark
        the rest ``interrupted`` (retried by the next instance if their job allows)."""
        grace = self.config.shutdown_grace if grace is None else grace
        self._draining.set()
        try:
            self.backend.heartbeat(self.worker_id, status="stopping")
        except MimirError:
            pass
        finished = self.pool.wait_idle(grace) if self.pool else True
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        interrupted: list[JobExecutionRecord] = []
        if not finished:
            with self._cancel_lock:
                for event in self._cancel.values():
                    event.set()
            interrupted = self.backend.interrupt_runs(
                [self.worker_id], "interrupted: the instance was stopped before the run finished"
            )
        try:
            self.backend.heartbeat(self.worker_id, status="stopped")
        except MimirError:
            pass
        if self.pool:
            self.pool.shutdown()
        log.info("scheduler %s stopped (%d interrupted)", self.worker_id, len(interrupted))
        return interrupted

    # -- loops ----------------------------------------------------------------------------

    def _fire_loop(self) -> None:
        while not self._draining.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep firing through a database hiccup
                log.error("scheduler tick failed: %s", exc)
            now = self.clock.now()
            soonest = min((s.next_fire for s in self._jobs.values()), default=None)
            wait = self.config.poll_interval
            if soonest is not None:
                wait = min(wait, max(0.0, (soonest - now).total_seconds()))
            self.clock.wait(self._draining, wait)

    def _queue_loop(self) -> None:
        while not self._draining.is_set():
            try:
                claimed = self.poll_queue()
            except Exception as exc:
                log.error("queue poll failed: %s", exc)
                claimed = 0
            if not claimed:
                self.clock.wait(self._draining, min(0.5, self.config.poll_interval))

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            if self.clock.wait(self._stop, self.config.heartbeat_interval):
                return
            try:
                self.beat()
            except Exception as exc:
                log.error("heartbeat failed: %s", exc)

    # -- steps (each callable on its own, on a fake clock) ---------------------------------

    def refresh_jobs(self, *, force: bool = False) -> bool:
        """Reload jobs when anyone changed them (count or latest ``updated_at`` moved)."""
        signature = self.backend.jobs_signature()
        if not force and signature == self._signature:
            return False
        self._signature = signature
        now = self.clock.now()
        jobs: dict[str, _JobState] = {}
        for job in self.backend.list_jobs(enabled=True):
            old = self._jobs.get(job.id)
            try:
                schedule = CronSchedule(job.cron_expr, job.timezone or "UTC")
            except MimirError as exc:
                log.error("job %s has an unusable schedule, skipped: %s", job.id, exc)
                continue
            if old is not None and old.schedule == schedule:
                next_fire = old.next_fire
            elif job.next_run is not None and old is None:
                next_fire = as_utc(job.next_run)  # resume where the database says
            else:
                next_fire = schedule.next_after(now)
            jobs[job.id] = _JobState(job, schedule, next_fire)
        self._jobs = jobs
        return True

    def tick(self, now: datetime | None = None) -> TickReport:
        """Fire every job that is due at ``now``."""
        self.refresh_jobs()
        now = as_utc(now) or self.clock.now()
        report = TickReport()
        for state in sorted(self._jobs.values(), key=lambda s: (-s.job.priority, s.next_fire)):
            if state.next_fire <= now and not self._draining.is_set():
                self._fire(state, now, report)
        return report

    def _due_fires(self, state: _JobState, now: datetime) -> list[datetime]:
        cap = MAX_MISSED_ROWS + max(1, state.job.misfire_cap) + 1
        fires = [state.next_fire]
        fires += list(state.schedule.fires(state.next_fire, now, limit=cap))
        return fires

    def _fire(self, state: _JobState, now: datetime, report: TickReport) -> None:
        job = state.job
        fires = self._due_fires(state, now)
        grace = timedelta(seconds=job.misfire_grace_seconds)
        late = [f for f in fires if now - f > grace]
        on_time = [f for f in fires if now - f <= grace]
        run: list[datetime] = list(on_time)
        policy = job.misfire_policy
        if late and policy == "once" and not on_time:
            run = [late[-1]]
        elif late and policy == "all":
            run = late[-job.misfire_cap:] + on_time
        missed = [f for f in fires if f not in run]
        if missed:
            self._record_missed(job, missed, now, policy, report)
        for fire in run:
            self._claim_and_run(job, fire, now, report)
        last = fires[-1]
        state.next_fire = state.schedule.next_after(max(last, now) if late else last)
        self.backend.set_job_schedule(job.id, next_run=state.next_fire, last_run=run[-1] if run else None)

    def _record_missed(self, job: ScheduledJob, fires: list[datetime], now: datetime, policy: str,
                       report: TickReport) -> None:
        extra = len(fires) - MAX_MISSED_ROWS
        if extra > 0:
            fires = fires[-MAX_MISSED_ROWS:]
        for index, fire in enumerate(fires):
            note = f"missed: fire at {fire.isoformat()} was {int((now - fire).total_seconds())} s late (misfire policy {policy})"
            if index == 0 and extra > 0:
                note += f"; {extra} earlier fires were missed too"
            record = JobExecutionRecord(
                job_id=job.id, pipeline=job.pipeline, start_time=fire, end_time=now, duration=0,
                status="missed", error=note, triggered_by="scheduler", scheduled_for=fire,
                worker_id=self.worker_id, context={}, steps=[],
            )
            if self.backend.claim_fire(record):
                report.missed.append(record)

    def _claim_and_run(self, job: ScheduledJob, fire: datetime, now: datetime, report: TickReport) -> None:
        active = self.backend.count_running(job.id)
        if active >= job.max_concurrent:
            record = JobExecutionRecord(
                job_id=job.id, pipeline=job.pipeline, start_time=fire, end_time=now, duration=0,
                status="missed", triggered_by="scheduler", scheduled_for=fire, worker_id=self.worker_id,
                error=f"missed: {active} run(s) of this job still active (max_concurrent {job.max_concurrent})",
                context={}, steps=[],
            )
            if self.backend.claim_fire(record):
                report.missed.append(record)
            return
        record = JobExecutionRecord(
            job_id=job.id, pipeline=job.pipeline, start_time=now, status="queued", triggered_by="scheduler",
            scheduled_for=fire, worker_id=self.worker_id, attempt=1, context={}, steps=[],
        )
        if not self.backend.claim_fire(record):
            report.lost += 1
            return
        self.fire_lags.append((self.clock.now() - fire).total_seconds())
        report.claimed.append(record)
        self._submit(job, record)

    def poll_queue(self, now: datetime | None = None) -> int:
        """Claim queued runs while this instance has room; returns how many."""
        claimed = 0
        while not self._draining.is_set() and (self.inline or (self.pool and self.pool.free > 0)):
            got = self.backend.claim_request(self.worker_id, now=as_utc(now) or self.clock.now())
            if got is None:
                break
            request, record = got
            job = self._job(record.job_id) if record.job_id else None
            self._submit(job, record, pipeline=request.pipeline)
            claimed += 1
            if self.inline and claimed >= 1000:
                break
        return claimed

    def beat(self, now: datetime | None = None) -> list[JobExecutionRecord]:
        """Heartbeat, then declare silent peers dead and retry their runs if allowed."""
        now = as_utc(now) or self.clock.now()
        if not self.backend.heartbeat(self.worker_id, now=now):
            # A peer declared us dead (we stalled); our runs were interrupted. Come back.
            log.warning("instance %s was declared dead by a peer; re-registering", self.worker_id)
            self.backend.heartbeat(self.worker_id, now=now, status="running") or self.register()
        dead, interrupted = self.backend.reap_stale_workers(stale_after=self.config.stale_after, now=now)
        if dead:
            log.warning("instances %s stopped heartbeating; %d run(s) interrupted", ", ".join(dead), len(interrupted))
        for record in interrupted:
            self._maybe_retry(record)
        return interrupted

    def _recover(self, worker_ids: list[str]) -> None:
        if not worker_ids:
            return
        dead, interrupted = self.backend.reap_stale_workers(
            stale_after=self.config.stale_after, now=self.clock.now(), also=worker_ids
        )
        if dead:
            log.warning("recovered after a crash of %s: %d run(s) interrupted", ", ".join(dead), len(interrupted))
        for record in interrupted:
            self._maybe_retry(record)

    # -- running --------------------------------------------------------------------------

    def _job(self, job_id: str) -> ScheduledJob | None:
        state = self._jobs.get(job_id)
        if state is not None:
            return state.job
        try:
            return self.backend.get_job(job_id)
        except MimirError:
            return None

    def _submit(self, job: ScheduledJob | None, record: JobExecutionRecord, *, pipeline: str | None = None) -> None:
        cancel = threading.Event()
        with self._cancel_lock:
            self._cancel[record.id] = cancel

        def execute() -> None:
            try:
                self._execute(job, record, pipeline or record.pipeline, cancel)
            finally:
                with self._cancel_lock:
                    self._cancel.pop(record.id, None)

        if self.inline or self.pool is None:
            execute()
        else:
            self.pool.submit(execute)

    def _execute(self, job: ScheduledJob | None, record: JobExecutionRecord, pipeline: str,
                 cancel: threading.Event) -> None:
        timeout = job.timeout_seconds if job and job.timeout_seconds else self.config.default_timeout
        try:
            final = self.runner.run(
                pipeline, job_id=record.job_id, triggered_by=record.triggered_by, execution_id=record.id,
                scheduled_for=record.scheduled_for, attempt=record.attempt, worker_id=self.worker_id,
                timeout=timeout, cancel_event=cancel,
            )
        except Exception as exc:
            log.error("execution %s could not run: %s", record.id, exc)
            return
        if job is not None:
            try:
                self.backend.set_job_schedule(job.id, next_run=self._next_run_of(job), last_result=final.status)
            except MimirError as exc:
                log.error("could not record the result of job %s: %s", job.id, exc)
            self._maybe_retry(final, job)
        if self.on_finished is not None:
            self.on_finished(final)

    def _next_run_of(self, job: ScheduledJob) -> datetime | None:
        state = self._jobs.get(job.id)
        if state is not None:
            return state.next_fire
        try:
            return as_utc(self.backend.get_job(job.id).next_run)
        except MimirError:
            return None

    def _maybe_retry(self, record: JobExecutionRecord, job: ScheduledJob | None = None) -> RunRequest | None:
        if record.status not in RETRYABLE or record.job_id is None:
            return None
        job = job or self._job(record.job_id)
        if job is None or record.attempt > job.max_retries:
            return None
        delay = job.retry_backoff_seconds * (2 ** (record.attempt - 1))
        request = RunRequest(
            job_id=job.id, pipeline=job.pipeline, priority=job.priority, triggered_by="retry",
            attempt=record.attempt + 1, available_at=self.clock.now() + timedelta(seconds=delay),
            scheduled_for=record.scheduled_for, requested_by=f"retry of {record.id}",
        )
        try:
            self.backend.enqueue(request)
        except MimirError as exc:
            log.error("could not queue a retry of %s: %s", record.id, exc)
            return None
        log.info("execution %s %s; retry %d of %d in %.0f s", record.id, record.status, record.attempt,
                 job.max_retries, delay)
        return request
