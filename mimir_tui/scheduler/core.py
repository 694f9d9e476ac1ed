"""The scheduler: fires cron jobs exactly once across instances, runs queued work, heartbeats,
and recovers runs that a dead instance left behind.

One :class:`Scheduler` per process. Its three loops (fire, queue, heartbeat) are daemon
threads; each step is also a plain method (:meth:`tick`, :meth:`poll_queue`, :meth:`beat`) that
tests drive on a :class:`~mimir_tui.scheduler.clock.FakeClock`.

Exactly once: a fire ``(job_id, scheduled_for)`` runs on the instance whose insert of the
execution row lands (a unique key, "on conflict do nothing"); every other instance sees 0 rows
and moves on. Nothing else coordinates the instances.

The parts live next door: worker identity and crash detection (``workers``), the run slots
(``pool``), misfire policy (``misfire``), retry policy (``retries``), running a claimed run
(``executor``).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..errors import MimirError, PersistenceError
from ..loop_errors import LoopErrors
from ..persistence import JobExecutionRecord, RunRequest, ScheduledJob, new_id
from ..persistence.models import Status, TriggeredBy, every_field
from ..persistence.runs import FireBatch, JobRoom
from ..persistence.types import as_utc
from ..pipelines.cancel import CancelToken
from .clock import DatabaseClock
from .cron import CronSchedule
from .executor import STOPPED_REASON, Executor, new_cancel, request_cancel
from .misfire import MAX_MISSED_ROWS, DueFires, MisfireChoice, choose_fires, due_fires, missed_note, overlap_note
from .pool import RunPool
from .retries import MAX_RETRY_DELAY, RETRYABLE
from .workers import _crashed_here, instance_key, make_worker_id, register_worker, worker_session

log = logging.getLogger("mimir.scheduler")

# Their home before the scheduler was split by concern; imported from here by older callers.
__all__ = [
    "FULL_REFRESH_EVERY",
    "LOST_REASON",
    "MAX_MISSED_ROWS",
    "MAX_RETRY_DELAY",
    "RETRYABLE",
    "STOPPED_REASON",
    "RunPool",
    "Scheduler",
    "TickReport",
    "_crashed_here",
    "instance_key",
    "make_worker_id",
    "register_worker",
    "worker_session",
]

#: Longest sleep of the fire loop on a server (seconds), when no fire is due sooner: each
#: wake-up reads the jobs' signature (a scan of the jobs table: 1,000 jobs, some 0.3 ms), and
#: an edit by another process is seen by the next one. (On SQLite the queue loop tells it when
#: the database changed: see Scheduler._fire_loop.)
IDLE_CHECK_EVERY = 2.0
#: Most jobs fired in one transaction (see Scheduler._fire_batch).
BATCH_JOBS = 1000
#: Runs claimed and not yet done, per run slot, beyond which an instance with live peers on a
#: server leaves due fires to whichever instance has room first (see Scheduler._defer); it
#: claims again once half of them are done. Eight, not one or two: a claim costs a few ms
#: whatever its size, and a slot's next runs are queued while the claim is under way.
CLAIM_AHEAD = 8
#: Most seconds before a tick that left due fires for now looks again: a peer's claim held
#: their rows (see RunStore.claim_batch), or its own claims found them taken by peers and left
#: it room. (A run's end that makes room wakes it sooner: see Scheduler._submit_chain.)
RETRY_DEFERRED = 0.2
#: Seconds between full reloads of the jobs table, whatever its signature says (a safety net
#: for edits whose ``updated_at`` came from a clock behind the others': edits take the
#: database's clock, so it is seldom needed; a reload of 1,000 jobs costs some 30 ms).
FULL_REFRESH_EVERY = 300.0
#: Most seconds an idle loop goes without reading the database while its SQLite file shows no
#: change (see _Looks): a change hidden by a coarse file clock is seen by then.
LOOK_ANYWAY_EVERY = 30.0
#: Why a run of a live instance that it no longer executes (see Scheduler._reconcile) is.
LOST_REASON = "interrupted: the instance that claimed it was no longer running it"


def _fire_record(**values: Any) -> JobExecutionRecord:
    """A new execution of a fire, built without pydantic validation (``model_construct``): the
    tick makes one per fire, and the values are the scheduler's own, already typed."""
    row: dict[str, Any] = {
        "id": new_id(),
        "end_time": None,
        "duration": None,
        "error": None,
        "attempt": 1,
        "cancel_requested": False,
        "updated_at": None,
        "context": {},
        "steps": [],
    }
    row.update(values)
    return JobExecutionRecord.model_construct(every_field(JobExecutionRecord), **row)


class _Looks:
    """Whether an idle loop should read the database again: when its SQLite file changed since
    the last look (anyone's commit changes it: ``backend.change_marker``, a ``stat``), else
    every :data:`LOOK_ANYWAY_EVERY` seconds; at every call on a server (no marker).
    :meth:`forget` after a failed read: the next call looks."""

    def __init__(self, backend: Any) -> None:
        self._marker: Callable[[], Any] = getattr(backend, "change_marker", lambda: None)
        self._seen: Any = None
        self._at = float("-inf")

    def due(self) -> bool:
        mark = self._marker()
        now = time.monotonic()
        if mark is None or mark != self._seen or now - self._at >= LOOK_ANYWAY_EVERY:
            self._seen, self._at = mark, now
            return True
        return False

    def forget(self) -> None:
        self._at = float("-inf")


@dataclass
class _JobState:
    job: ScheduledJob
    schedule: CronSchedule
    next_fire: datetime
    # Left for now, at the latest until then (see Scheduler._defer); None: not deferred.
    deferred_until: datetime | None = None
    # Where this instance tries the job among the due jobs of equal priority and fire time: a
    # different order on each instance, so that peers sharing a burst start on different jobs.
    order: int = 0

    @property
    def wake_at(self) -> datetime:
        return max(self.next_fire, self.deferred_until or self.next_fire)


@dataclass
class _Fired:
    """What the claims since the last log line fired (see Scheduler._log_fired): one line per
    tick, or per burst shared with peers, at the default level; not one per claim."""

    runs: int = 0
    jobs: int = 0
    missed: int = 0
    lost: int = 0
    claims: int = 0
    seconds: float = 0.0  # in the claims
    since: float = 0.0  # time.monotonic() of the first claim


@dataclass
class TickReport:
    """What one tick did, for tests and the dashboard."""

    claimed: list[JobExecutionRecord] = field(default_factory=list)
    missed: list[JobExecutionRecord] = field(default_factory=list)
    lost: int = 0  # fires another instance had claimed first
    errors: int = 0  # jobs whose fire failed (tried again at the next tick)
    deferred: int = 0  # due jobs left for now, to whichever instance has room first


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
        queues: Iterable[str] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.config = settings.scheduler
        # Schedules fall due on the database server's clock, shared by every instance.
        self.clock = clock or DatabaseClock(backend)
        self._draining = threading.Event()
        # Set to wake the fire loop: the database changed (the queue loop saw it), or stopping.
        self._fire_wake = threading.Event()
        # Set when the queue loop has something to look at before its next poll (see _queue_loop).
        self._queue_wake = threading.Event()
        # Its last look found a request available and claimed none (no free slot, or its job
        # at its limit): a run's end here is worth a look. Not otherwise: in a burst of fires
        # a look per run's end read the queue and woke the fire loop a thousand times.
        self._queue_waits_for_room = False
        # Runs what this instance claims (its runner's records on the same clock).
        self.executor = Executor(
            backend,
            settings,
            runner=runner,
            clock=self.clock,
            worker_id=worker_id,
            job_lookup=self._job,
        )
        self.runner = self.executor.runner
        self.executor.on_queued = self._queue_wake.set
        self.worker_id = self.executor.worker_id
        self.inline = inline  # run executions inside tick()/poll_queue() (tests)
        # The queues whose jobs this instance fires and whose queued runs it claims.
        self.queues: frozenset[str] = frozenset(self.config.queues if queues is None else queues)
        self._jobs: dict[str, _JobState] = {}
        self._soonest_known = False  # see _soonest
        self._soonest_cache: tuple[datetime | None, datetime | None] = (None, None)
        self._signature: tuple[int, datetime | None] | None = None
        self._refreshed_at = float("-inf")  # time.monotonic() of the last full reload
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel: dict[str, CancelToken] = {}
        self._cancel_lock = threading.Lock()
        self.pool: RunPool | None = None
        self.fire_lags: deque[float] = deque(maxlen=100_000)  # seconds between scheduled_for and the claim
        self.on_finished: Callable[[JobExecutionRecord], None] | None = None
        # execution id -> the fire a retry belongs to (its row has no run key: the first
        # attempt holds it), carried on to the next retry
        self._fires_of: dict[str, datetime] = {}
        self._suspects: set[str] = set()  # own unfinished rows untracked at the last beat
        # The database was out of reach at the last beat; until when peers are not judged by
        # their heartbeats (see beat()).
        self._cut_off = False
        self._judge_peers_from: datetime | None = None
        # Fires claimed by a tick still in progress, not yet handed to the pool (a tick after
        # a downtime, or on a slow database, can outlast several heartbeats).
        self._claimed: set[str] = set()
        self._unstarted: list | None = None  # the runs a tick has claimed, started when it ends
        # (time.monotonic(), [(queues, free run slots) of each live peer]) as last read
        self._peers_seen: tuple[float, list[tuple[set[str], int]]] = (float("-inf"), [])
        # Whether instances share a burst of fires (a server: see _defer).
        self._shares_bursts = bool(backend.db.dialect.skip_locked)
        # The last tick left due fires for now: a run's end that makes room wakes the fire loop,
        # and the next tick first reads what the peers claimed meanwhile.
        self._deferring = False
        self._fired = _Fired()
        # What the loops raise: a bug's stack once, not at every poll; a fatal error (a damaged
        # database) stops firing and claiming (see halt).
        self.fatal: MimirError | None = None
        self._tick_errors = LoopErrors(log, "scheduler tick failed", on_fatal=self.halt)
        self._queue_errors = LoopErrors(log, "queue poll failed", on_fatal=self.halt)
        self._beat_errors = LoopErrors(log, "heartbeat failed", on_fatal=self.halt)

    # -- lifecycle ------------------------------------------------------------------------

    def register(self) -> None:
        """Register this instance, and recover what a crashed predecessor on this host left."""
        self.executor.register(load=self._load(), queues=self.queues)

    def start(self) -> None:
        # Runs take turns on SQLite, where their database calls are this process's work (see
        # pipelines.loops); on a server those calls are waits that other runs should use.
        self.pool = RunPool(self.config.max_concurrency, turns=getattr(self.backend, "dialect", None) == "sqlite")
        self.register()
        for target, name in (
            (self._fire_loop, "mimir-fire"),
            (self._queue_loop, "mimir-queue"),
            (self._heartbeat_loop, "mimir-heartbeat"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("scheduler %s started", self.worker_id)

    def stop(self, grace: float | None = None) -> list[JobExecutionRecord]:
        """Stop firing and claiming; give running executions ``grace`` seconds to finish; mark
        the rest ``interrupted`` and queue their retries (for the next instance) if their job
        allows."""
        grace = self.config.shutdown_grace if grace is None else grace
        self._draining.set()
        self._queue_wake.set()
        self._fire_wake.set()
        try:
            self.backend.workers.heartbeat(self.worker_id, status="stopping")
        except MimirError:
            pass
        finished = self.pool.wait_idle(grace) if self.pool else True
        if not finished:
            # Ask the runs to stop; each records itself ``interrupted`` within about a second,
            # a plugin that ignores the request included (the runner abandons it), and is
            # retried (see Executor.execute).
            with self._cancel_lock:
                for cancel in self._cancel.values():
                    request_cancel(cancel, STOPPED_REASON, Status.interrupted)
            if self.pool:
                self.pool.wait_idle(2.0)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        # Whatever of ours is still queued or running now will not run here: a fire claimed
        # but not started, or a run stuck past the cancel.
        interrupted: list[JobExecutionRecord] = []
        try:
            interrupted = self.backend.executions.interrupt_runs([self.worker_id], STOPPED_REASON, now=self.clock.now())
            for record in interrupted:
                self._maybe_retry(record)
        except MimirError as exc:
            if not exc.fatal:  # a damaged database: said once already
                log.error("could not mark the runs of %s interrupted: %s", self.worker_id, exc)
        try:
            self.backend.workers.heartbeat(self.worker_id, status="stopped")
        except MimirError:
            pass
        if self.pool:
            self.pool.shutdown()
        log.info("scheduler %s stopped (%d interrupted)", self.worker_id, len(interrupted) + self.executor.stopped_runs)
        return interrupted

    def halt(self, error: MimirError) -> None:
        """Stop firing and claiming, on an error no retry mends (the database is damaged): the
        loops would fail at every pass. Runs in progress end as they can; :meth:`stop` (the
        service's, once it sees :attr:`fatal`) does the rest."""
        if self.fatal is None:
            self.fatal = error
            self._draining.set()
            self._queue_wake.set()
            self._fire_wake.set()

    # -- loops ----------------------------------------------------------------------------

    def _fire_loop(self) -> None:
        # Asleep until the next fire. On SQLite the queue loop, awake every poll_interval,
        # looks at the database file's marker and wakes this loop when anyone committed (see
        # _queue_loop): then it reads the jobs' signature, and otherwise every
        # LOOK_ANYWAY_EVERY seconds. On a server (no marker) it reads the signature every
        # IDLE_CHECK_EVERY seconds (poll_interval if longer), to see edits of other processes.
        watched = self._watched()
        idle = LOOK_ANYWAY_EVERY if watched else max(self.config.poll_interval, IDLE_CHECK_EVERY)
        looked_at = float("-inf")
        while not self._draining.is_set():
            wait = self.config.poll_interval  # after a failed fire (the database is away): not a busy loop
            look = not watched or self._fire_wake.is_set() or time.monotonic() - looked_at >= LOOK_ANYWAY_EVERY
            self._fire_wake.clear()
            try:
                report = self.tick(look=look)
                if look:
                    looked_at = time.monotonic()
                if not report.errors:
                    soonest = self._soonest()[1]
                    wait = idle if soonest is None else min(idle, (soonest - self.clock.now()).total_seconds())
                    if report.deferred:  # left for now (see _defer): claimed as runs end, or soon
                        wait = min(wait, RETRY_DEFERRED)
                    wait = max(0.005, wait)
                self._tick_errors.ok()
            except Exception as exc:  # keep firing through a database hiccup
                looked_at = float("-inf")
                self._tick_errors.report(exc)
            self.clock.wait(self._fire_wake, wait)
        self._tick_errors.flush()

    def _watched(self) -> bool:
        """Whether the database tells changes by its marker (SQLite: see _Looks)."""
        marker = getattr(self.backend, "change_marker", None)
        return marker is not None and marker() is not None

    def _queue_loop(self) -> None:
        # An idle queue is looked at when this instance wakes the loop (it queued a retry, or
        # a run ended while a request waited for room), when the database changed (another
        # process queued a run, or ended one: room for a waiting request), or when the earliest
        # request waiting for its time is due; not at every poll_interval. A look is one read
        # (the earliest request's time), and a claim only when a request is available.
        looks = _Looks(self.backend)
        watched = self._watched()
        woken, due_at = True, None
        while not self._draining.is_set():
            claimed = 0
            due = due_at is not None and self.clock.now() >= due_at
            changed = looks.due()
            if changed and watched:
                self._fire_wake.set()  # the fire loop reads the jobs' signature
            if woken or due or changed:
                try:
                    claimed, due_at = self._look_at_queue()
                    self._queue_errors.ok()
                except Exception as exc:
                    looks.forget()
                    self._queue_errors.report(exc)
            woken = bool(claimed)
            if not claimed:
                # Until poll_interval is over, or sooner when this instance queues a retry or
                # ends a run (a slot for a queued run).
                woken = self.clock.wait(self._queue_wake, self.config.poll_interval)
                self._queue_wake.clear()
        self._queue_errors.flush()

    def _look_at_queue(self) -> tuple[int, datetime | None]:
        """One look of the queue loop: the runs it claimed, and when the earliest request that
        waits for its time is due (None: none does). Nothing is claimed, and nothing more read,
        unless a request is available."""
        due_at = self.backend.runs.next_available(self.queues)
        if due_at is None or due_at > self.clock.now():
            self._queue_waits_for_room = False
            return 0, due_at
        # Available. If none can be claimed (no free slot, or its job at its limit), a run's
        # end wakes the loop; set first, so that a run ending during the claim does too.
        self._queue_waits_for_room = True
        claimed = self.poll_queue()
        self._queue_waits_for_room = not claimed
        return claimed, None

    def _heartbeat_loop(self) -> None:
        while not self.clock.wait(self._stop, self.config.heartbeat_interval):
            try:
                self.beat()
                self._beat_errors.ok()
            except Exception as exc:
                self._beat_errors.report(exc)
        self._beat_errors.flush()

    # -- steps (each callable on its own, on a fake clock) ---------------------------------

    def refresh_jobs(self, *, force: bool = False) -> bool:
        """Reload jobs when anyone changed them (count or latest ``updated_at`` moved), and
        every :data:`FULL_REFRESH_EVERY` seconds regardless."""
        signature = self.backend.jobs.signature()
        if time.monotonic() - self._refreshed_at >= FULL_REFRESH_EVERY:
            force = True
        if not force and signature == self._signature:
            return False
        self._signature = signature
        self._refreshed_at = time.monotonic()
        now = self.clock.now()
        jobs: dict[str, _JobState] = {}
        for job in self.backend.list_jobs(enabled=True):
            if job.queue not in self.queues:
                continue  # another queue's: the instances serving it fire it
            old = self._jobs.get(job.id)
            try:
                if old is not None and (old.job.cron_expr, old.job.timezone) == (job.cron_expr, job.timezone):
                    schedule = old.schedule  # parsed already (a reload of 1,000 jobs runs every minute)
                else:
                    schedule = CronSchedule(job.cron_expr, job.timezone or "UTC")
            except MimirError as exc:
                log.error("job %s has an unusable schedule, skipped: %s", job.id, exc)
                continue
            deferred_until = None
            if old is not None and old.schedule == schedule:
                next_fire, deferred_until = old.next_fire, old.deferred_until
                stored = as_utc(job.next_run)
                if stored is not None and stored > next_fire:
                    # Enabled again since the last reload (its fires while disabled are not
                    # due: enabling stored the first one after), or fired by a peer.
                    next_fire, deferred_until = stored, None
            elif job.next_run is not None and old is None:
                next_fire = as_utc(job.next_run)  # resume where the database says
            else:
                next_fire = schedule.next_after(now)
            order = old.order if old is not None else zlib.crc32(f"{self.worker_id}/{job.id}".encode())
            jobs[job.id] = _JobState(job, schedule, next_fire, deferred_until, order)
        self._jobs = jobs
        self._soonest_known = False
        return True

    def _soonest(self) -> tuple[datetime | None, datetime | None]:
        """(the soonest ``next_fire``, the soonest ``wake_at``) of the loaded jobs, computed
        again only after a reload or a tick that found something due: an idle tick of 1,000
        jobs looks at none of them."""
        if not self._soonest_known:
            states = self._jobs.values()
            self._soonest_cache = (
                min((s.next_fire for s in states), default=None),
                min((s.wake_at for s in states), default=None),
            )
            self._soonest_known = True
        return self._soonest_cache

    def tick(self, now: datetime | None = None, *, look: bool = True) -> TickReport:
        """Fire every job that is due at ``now``. A job whose fire fails (the database went
        away) is tried again at the next tick; the others fire regardless. ``look=False``:
        the jobs as loaded, without reading whether they changed (the database did not)."""
        if look:
            self.refresh_jobs()
        now = as_utc(now) or self.clock.now()
        report = TickReport()
        due_from = self._soonest()[0]
        if due_from is None or due_from > now:
            return report  # nothing due (a fire left to a peer is due: its job is looked at)
        self._soonest_known = False  # fires move on, or are deferred, below
        # With a pool, runs start once every due fire is claimed: runs started meanwhile would
        # compete with the claims for the GIL and the write lock (bench/scheduler.py: 1,000
        # jobs due at once, fire lag p99 of seconds instead of a few hundred ms). For the same
        # reason the pool starts no queued run (a backlog of earlier fires) while claiming.
        if self._deferring:  # sharing a burst: what the peers claimed meanwhile is not tried here
            self._seen_fired_by_peers(now)
        held = self.pool if not self.inline else None
        self._unstarted = []  # inline too: the runs of a test's tick start as the service's do
        if held is not None:
            held.hold()
        try:
            due: list[_JobState] = []
            for state in sorted(self._jobs.values(), key=lambda s: (-s.job.priority, s.next_fire, s.order)):
                if state.next_fire <= now and not self._draining.is_set():
                    if self._defer(state, now, report.deferred, pending=len(due)):
                        self._deferring = True
                        report.deferred += 1
                        continue
                    due.append(state)
            for start in range(0, len(due), BATCH_JOBS):
                if not self._draining.is_set():
                    self._fire_batch(due[start : start + BATCH_JOBS], now, report)
        finally:
            self._deferring = report.deferred > 0
            self._log_fired()
            unstarted, self._unstarted = self._unstarted, None
            # Stopping meanwhile: the claimed fires stay queued, and stop() marks them
            # interrupted (and queues their retries) once this tick has returned.
            if not self._draining.is_set() and unstarted:
                versions = self._pipeline_versions({job.pipeline for job, _ in unstarted})
                for job, chain in unstarted:
                    self._submit_chain(job, chain, versions=versions)
            if held is not None:
                held.release()
        return report

    def _fire_batch(self, states: list[_JobState], now: datetime, report: TickReport) -> None:
        """Fire ``states`` (jobs due at ``now``) in one transaction (see
        ``RunStore.claim_batch``). If that fails short of a damaged database, each job is fired
        on its own (:meth:`_fire`), so that one job's failure does not hold up the others."""
        started = time.monotonic()
        plans: dict[str, tuple[_JobState, DueFires, MisfireChoice, FireBatch]] = {}
        dues: dict[tuple[CronSchedule, datetime, int], DueFires] = {}  # many jobs share a schedule
        nexts: dict[tuple[CronSchedule, datetime], datetime] = {}
        for state in states:
            job = state.job
            try:
                key = (state.schedule, state.next_fire, job.misfire_cap)
                due = dues.get(key)
                if due is None:
                    due = dues[key] = due_fires(state.schedule, state.next_fire, now, job.misfire_cap)
                choice = choose_fires(
                    due.fires,
                    now,
                    policy=job.misfire_policy,
                    grace_seconds=job.misfire_grace_seconds,
                    cap=job.misfire_cap,
                )
                following = due.following
                if following is None:
                    after = (state.schedule, max(due.fires[-1], now))
                    following = nexts.get(after)
                    if following is None:
                        following = nexts[after] = state.schedule.next_after(after[1])
                missed = [
                    self._missed_record(
                        job, fire, now, missed_note(fire, now, job.misfire_policy, due.unlisted_from if not i else None)
                    )
                    for i, fire in enumerate(choice.missed)
                ]
                plans[job.id] = (
                    state,
                    due,
                    choice,
                    FireBatch(missed, self._run_records(job, choice.run, now), following),
                )
            except Exception as exc:
                self._tick_errors.report(exc, f"could not fire job {job.id}")
                report.errors += 1
        if not plans:
            return

        def overlap(job_id: str, room: JobRoom) -> list[JobExecutionRecord]:
            state, _, choice, _ = plans[job_id]
            note = overlap_note(room.active, room.limit)
            return [self._missed_record(state.job, fire, now, note) for fire in choice.run]

        try:
            claims = self.backend.runs.claim_batch({job_id: plan[3] for job_id, plan in plans.items()}, overlap)
        except Exception as exc:
            if isinstance(exc, MimirError) and exc.fatal:
                raise
            log.warning("could not fire %d jobs in one transaction (%s); firing them one at a time", len(plans), exc)
            for state, *_ in plans.values():
                if self._draining.is_set():
                    break
                try:
                    self._fire(state, now, report)
                except Exception as exc:
                    self._tick_errors.report(exc, f"could not fire job {state.job.id}")
                    report.errors += 1
            return
        ran = recorded_missed = lost = 0
        for job_id, claim in claims.items():
            state, due, choice, batch = plans[job_id]
            job = state.job
            if claim.held:  # a peer's claim holds the job's row: tried again shortly (or seen claimed)
                state.deferred_until = now + timedelta(seconds=RETRY_DEFERRED)
                report.deferred += 1
                continue
            if claim.room is None:
                self._tick_errors.report(
                    PersistenceError(f"claim_batch failed: job {job_id!r} does not exist"),
                    f"could not fire job {job_id}",
                )
                report.errors += 1
                continue
            report.missed.extend(claim.missed)
            recorded_missed += len(claim.missed)
            if due.unlisted_from is not None and (claim.missed if choice.missed else True):
                log.warning(
                    "job %s: every fire from %s to %s was missed (misfire policy %s)"
                    if choice.missed
                    else "job %s: fires from %s to %s were missed",
                    job.id,
                    due.unlisted_from.isoformat(),
                    (choice.missed[-1] if choice.missed else due.fires[0]).isoformat(),
                    *((job.misfire_policy,) if choice.missed else ()),
                )
            if batch.run and claim.room.free > 0:
                before = report.lost
                self._start(job, claim.run, claim.room, len(batch.run), report)
                ran += len(claim.run)
                lost += report.lost - before
            state.next_fire = batch.next_run
            state.deferred_until = None
        if ran or recorded_missed or lost:
            fired = self._fired
            if not fired.claims:
                fired.since = started
            fired.runs += ran
            fired.jobs += len(plans)
            fired.missed += recorded_missed
            fired.lost += lost
            fired.claims += 1
            fired.seconds += time.monotonic() - started

    def _log_fired(self) -> None:
        """One line for what the claims since the last line fired: at the end of each tick,
        or of a burst shared with peers (claimed a few runs at a time), and at least every
        10 s while one goes on."""
        fired = self._fired
        if not fired.claims or (self._deferring and time.monotonic() - fired.since < 10):
            return
        log.info(
            "fired %d run(s) of %d job(s) in %d claim(s), %.3f s (%d recorded missed, %d claimed by other instances)",
            fired.runs,
            fired.jobs,
            fired.claims,
            fired.seconds,
            fired.missed,
            fired.lost,
        )
        self._fired = _Fired()

    def _fire(self, state: _JobState, now: datetime, report: TickReport) -> None:
        job = state.job
        due = due_fires(state.schedule, state.next_fire, now, job.misfire_cap)
        fires = due.fires
        policy = job.misfire_policy
        choice = choose_fires(fires, now, policy=policy, grace_seconds=job.misfire_grace_seconds, cap=job.misfire_cap)
        owned = False
        if choice.missed:
            owned = self._record_missed(job, choice.missed, now, policy, report, due.unlisted_from)
        elif due.unlisted_from is not None:
            log.warning(
                "job %s: fires from %s to %s were missed", job.id, due.unlisted_from.isoformat(), fires[0].isoformat()
            )
        ran: list[JobExecutionRecord] = []
        if choice.run:
            ran = self._claim_and_run(job, choice.run, now, report)
            owned = owned or bool(ran)
        state.next_fire = due.following or state.schedule.next_after(max(fires[-1], now))
        state.deferred_until = None
        if owned:  # the instance that claimed writes the job's times; the others need not
            self.backend.jobs.set_schedule(
                job.id,
                next_run=state.next_fire,
                # The latest fire claimed (every record of a fire has its scheduled_for), None for none.
                last_run=max((r.scheduled_for for r in ran if r.scheduled_for is not None), default=None),
            )

    def _record_missed(
        self,
        job: ScheduledJob,
        fires: list[datetime],
        now: datetime,
        policy: str,
        report: TickReport,
        unlisted_from: datetime | None = None,
    ) -> bool:
        """Record ``fires`` as ``missed`` (one transaction); True if any row was ours to write."""
        records = [
            self._missed_record(job, fire, now, missed_note(fire, now, policy, unlisted_from if not i else None))
            for i, fire in enumerate(fires)
        ]
        landed = self.backend.runs.claim_fires(records)
        report.missed.extend(landed)
        if unlisted_from is not None and landed:
            log.warning(
                "job %s: every fire from %s to %s was missed (misfire policy %s)",
                job.id,
                unlisted_from.isoformat(),
                fires[-1].isoformat(),
                policy,
            )
        return bool(landed)

    def _missed_record(self, job: ScheduledJob, fire: datetime, now: datetime, note: str) -> JobExecutionRecord:
        return _fire_record(
            job_id=job.id,
            pipeline=job.pipeline,
            start_time=fire,
            end_time=now,
            duration=0,
            status=Status.missed.value,
            error=note,
            triggered_by=TriggeredBy.scheduler.value,
            scheduled_for=fire,
            worker_id=self.worker_id,
        )

    def _claim_and_run(
        self, job: ScheduledJob, fires: list[datetime], now: datetime, report: TickReport
    ) -> list[JobExecutionRecord]:
        """Claim the fires due to run and start them: one after another in each of the job's
        free slots (``max_concurrent`` less its active runs, counted by the claim itself, see
        :meth:`RunStore.claim_fires_within`), so the catch-up runs of a downtime queue up
        instead of counting as overlaps of each other. With no free slot, the fires are
        recorded ``missed`` (an overlap), never dropped."""
        records = self._run_records(job, fires, now)
        # A read first: a fire that finds the job's run still going (the common overlap) costs
        # no write lock; one that finds room is claimed with the count taken again, locked.
        room = JobRoom(self.backend.executions.count_running(job.id), job.max_concurrent)
        claimed: list = []  # of records, each with its scheduled_for
        if room.free > 0:
            claimed, room = self.backend.runs.claim_fires_within(records)
        if room.free <= 0:
            note = overlap_note(room.active, room.limit)
            report.missed.extend(self.backend.runs.claim_fires([self._missed_record(job, f, now, note) for f in fires]))
            return []
        self._start(job, claimed, room, len(records), report)
        return claimed

    def _run_records(self, job: ScheduledJob, fires: list[datetime], now: datetime) -> list[JobExecutionRecord]:
        """The executions that claim ``fires`` of ``job`` to run (``queued`` until they start)."""
        return [
            _fire_record(
                job_id=job.id,
                pipeline=job.pipeline,
                start_time=now,
                status=Status.queued.value,
                triggered_by=TriggeredBy.scheduler.value,
                scheduled_for=fire,
                worker_id=self.worker_id,
                attempt=1,
            )
            for fire in fires
        ]

    def _start(
        self, job: ScheduledJob, claimed: list[JobExecutionRecord], room: JobRoom, asked: int, report: TickReport
    ) -> None:
        """Start the fires of ``job`` this instance claimed (of ``asked``): one after another
        in each of the job's ``room.free`` slots (see :meth:`_claim_and_run`)."""
        report.lost += asked - len(claimed)
        with self._cancel_lock:
            self._claimed.update(record.id for record in claimed)
        claimed_at = self.clock.now()
        for record in claimed:
            lag = (claimed_at - as_utc(record.scheduled_for or claimed_at)).total_seconds()
            self.fire_lags.append(lag)
            log.debug("job %s: fire %s claimed, %.3f s late", job.id, record.scheduled_for, lag)
        report.claimed.extend(claimed)
        chains = [claimed[i :: room.free] for i in range(min(room.free, len(claimed)))]
        for chain in chains:
            if self._unstarted is not None:
                self._unstarted.append((job, chain))  # started by tick() once the claims are done
            else:
                self._submit_chain(job, chain)

    def poll_queue(self, now: datetime | None = None) -> int:
        """Claim queued runs while this instance has room; returns how many."""
        claimed = 0
        while not self._draining.is_set() and (self.inline or (self.pool and self.pool.free > 0)):
            got = self.backend.runs.claim_request(
                self.worker_id, now=as_utc(now) or self.clock.now(), queues=self.queues
            )
            if got is None:
                break
            request, record = got
            job = self._job(record.job_id) if record.job_id else None
            if request.scheduled_for is not None:  # a retry: its fire, for the next retry's request
                self._fires_of[record.id] = as_utc(request.scheduled_for)
            self._submit(job, record, pipeline=request.pipeline)
            claimed += 1
            if self.inline and claimed >= 1000:
                break
        return claimed

    def beat(self, now: datetime | None = None) -> list[JobExecutionRecord]:
        """Heartbeat, then declare silent peers dead and retry their runs if allowed.

        After this instance could not reach the database for a while (a beat failed, or took
        so long that a live peer's heartbeat, held up as well, could look stale), it judges no
        peer by its heartbeat for ``stale_after`` seconds: the outage silenced the peers too,
        and each needs a beat of its own to show it is alive (a run whose end it is still
        saving is its)."""
        started = time.monotonic()
        try:
            self.executor.sync_clock()
            now = as_utc(now) or self.executor.lease_now()
            alive = self.backend.workers.heartbeat(self.worker_id, now=now, load=self._load())
        except Exception:
            self._cut_off = True
            raise
        if self._cut_off or time.monotonic() - started > self.config.stale_after - self.config.heartbeat_interval:
            self._cut_off = False
            self._judge_peers_from = now + timedelta(seconds=self.config.stale_after)
            log.warning(
                "the database was out of reach; peers are judged by their heartbeats again from %s",
                self._judge_peers_from.isoformat(),
            )
        if not alive:
            # A peer declared us dead (we stalled); our runs were interrupted. Come back.
            log.warning("instance %s was declared dead by a peer; re-registering", self.worker_id)
            if not self.backend.workers.heartbeat(self.worker_id, now=now, status="running", revive=True):
                self.register()  # the row is gone (pruned): register anew
        dead: list[str] = []
        interrupted: list[JobExecutionRecord] = []
        if self._judge_peers_from is None or now >= self._judge_peers_from:
            dead, interrupted = self.backend.workers.reap_stale_workers(stale_after=self.config.stale_after, now=now)
        if dead:
            log.warning("instances %s stopped heartbeating; %d run(s) interrupted", ", ".join(dead), len(interrupted))
        # Runs no live instance owns: no worker id (an unregistered process), an unknown one, or
        # a worker already dead or stopped (e.g. a reaper that crashed between its two steps).
        orphans = self.backend.executions.sweep_orphaned_runs(stale_after=self.config.stale_after, now=now)
        if orphans:
            log.warning(
                "%d run(s) that no live instance owned were interrupted: %s",
                len(orphans),
                ", ".join(r.id for r in orphans),
            )
        interrupted = [*interrupted, *orphans, *self._reconcile(now)]
        for record in interrupted:
            self._maybe_retry(record)
        return interrupted

    def _reconcile(self, now: datetime) -> list[JobExecutionRecord]:
        """This instance's queued/running rows that it is not executing (a run whose end could
        not be saved, a claimed fire never handed to the pool) become ``interrupted``.

        Fires claimed by a tick still in progress count as tracked (``_claimed``), and a row
        counts only if it was already unaccounted for at the previous beat (the moment between
        a claim's commit and its bookkeeping)."""
        ids = set(self.backend.executions.unfinished_run_ids(self.worker_id))
        with self._cancel_lock:
            untracked = ids - set(self._cancel) - self._claimed
        suspects, self._suspects = untracked & self._suspects, untracked
        if not suspects:
            return []
        lost = self.backend.executions.interrupt_executions(sorted(suspects), LOST_REASON, now=now)
        if lost:
            log.warning(
                "%d run(s) of this instance were no longer executing here: %s", len(lost), ", ".join(r.id for r in lost)
            )
        self._suspects -= {r.id for r in lost}
        return lost

    def _load(self) -> tuple[int, int] | None:
        """(run slots, slots taken) for the workers table; None without a pool."""
        return (self.pool.size, self.pool.busy) if self.pool is not None else None

    def _defer(self, state: _JobState, now: datetime, deferred: int, *, pending: int = 0) -> bool:
        """Leave a due fire for now (load balancing), for at most ``scheduler.defer_when_busy``
        seconds after it fell due (at most half the job's misfire grace), in two cases:

        1. Every run slot here is taken, and live peers serving the job's queue reported
           more free slots at their last heartbeats than the ``deferred`` fires this tick has
           left already: a peer with room starts it, rather than a long run here holding it up.
        2. On a server, this instance has claimed :data:`CLAIM_AHEAD` runs per slot not yet
           done and a live peer serves the queue: it has what it can start soon, and leaves
           the rest of a burst to whichever instance has room first. As its runs end, its fire
           loop is woken to claim more (see :meth:`_submit_chain`); the claims skip the job
           rows another's claim holds. (On SQLite, whose claims take turns on one writer, a
           burst shared by 2-3 processes started its last run later than one process claiming
           it all: 2.7-3.2 s against 2.3 s for 1,000 fires, for twice the CPU.)

        A fire no one claimed by the end of the window is claimed here like any other:
        deferring delays a fire's claim by a few seconds at most, and never loses one.
        ``pending``: due jobs this tick is about to claim before this one."""
        if self.pool is None:
            return False
        if self.pool.free - len(self._unstarted or ()) - pending > 0:
            return False  # a free slot here (less the runs this tick has claimed, or will)
        window = min(self.config.defer_when_busy, state.job.misfire_grace_seconds / 2)
        if window <= 0 or (now - state.next_fire).total_seconds() >= window:
            return False
        try:
            peers, room = self._peers(state.job.queue)
        except MimirError as exc:  # the peers cannot be read: fire here, as without peers
            log.warning("could not read the other instances' load: %s", exc)
            return False
        to_room = deferred < room  # 1.: a peer reported a free slot for it
        sharing = peers > 0 and not self._room_ahead(pending)  # 2.: claimed what can start soon
        if not (to_room or sharing):
            return False
        state.deferred_until = state.next_fire + timedelta(seconds=window)
        return True

    def _seen_fired_by_peers(self, now: datetime) -> None:
        """Move on the jobs due here that peers have fired meanwhile (their stored
        ``next_run`` is later), in one read: while instances share a burst, each would
        otherwise find the others' claims one batch at a time."""
        due = {job_id: state for job_id, state in self._jobs.items() if state.next_fire <= now}
        try:
            stored = self.backend.runs.next_runs(list(due))
        except MimirError as exc:
            log.debug("could not read the jobs' next fires: %s", exc)
            return
        for job_id, next_run in stored.items():
            state = due[job_id]
            if next_run is not None and next_run > state.next_fire:
                state.next_fire, state.deferred_until = next_run, None

    def _room_ahead(self, pending: int = 0) -> bool:
        """Whether this instance has fewer than :data:`CLAIM_AHEAD` runs per slot claimed and
        not done (the runs a tick has claimed and not started, and ``pending`` it is about to
        claim, count as taken). Without a pool (runs inline), and on SQLite, there is no such
        limit (see :meth:`_defer`)."""
        if self.pool is None or not self._shares_bursts:
            return True
        return self.pool.busy + len(self._unstarted or ()) + pending < self.pool.size * CLAIM_AHEAD

    def _peers(self, queue: str) -> tuple[int, int]:
        """(how many running peers serve ``queue``, the free run slots they reported at their
        last heartbeats); the workers table is read at most once a second. A peer that is
        stopping does not count: it claims no more fires."""
        checked, peers = self._peers_seen
        if time.monotonic() - checked >= 1.0:
            peers = [
                (w.serves(), max(0, w.capacity - (w.running or 0)))
                for w in self.backend.workers.live_workers(
                    stale_after=self.config.stale_after, now=self.executor.lease_now()
                )
                if w.id != self.worker_id and w.status == "running" and w.capacity is not None
            ]
            self._peers_seen = (time.monotonic(), peers)
        serving = [room for queues, room in peers if queue in queues]
        return len(serving), sum(serving)

    # -- running --------------------------------------------------------------------------

    def _job(self, job_id: str) -> ScheduledJob | None:
        state = self._jobs.get(job_id)
        if state is not None:
            return state.job
        try:
            return self.backend.get_job(job_id)
        except MimirError:
            return None

    def _pipeline_versions(self, names: set[str]) -> dict[str, Any]:
        """The stored versions of the pipelines ``names`` in one read, for the runs a tick
        starts (each run's runner then reads no version of its own); empty if the read fails
        (each run reads its own)."""
        try:
            return self.backend.pipelines.versions(names)
        except MimirError as exc:
            log.debug("could not read the versions of pipelines %s: %s", ", ".join(sorted(names)), exc)
            return {}

    def _submit(self, job: ScheduledJob | None, record: JobExecutionRecord, *, pipeline: str | None = None) -> None:
        self._submit_chain(job, [record], pipeline=pipeline)

    def _submit_chain(
        self,
        job: ScheduledJob | None,
        records: list[JobExecutionRecord],
        *,
        pipeline: str | None = None,
        versions: dict[str, Any] | None = None,
    ) -> None:
        """Run ``records`` one after another (in this thread when inline, else in the pool).
        Once the instance is stopping, the rest of a chain is left ``queued`` for
        :meth:`stop` to mark interrupted. ``versions``: stored pipelines' versions, read
        for a batch of fires (see :meth:`_pipeline_versions`)."""
        events = [new_cancel() for _ in records]
        with self._cancel_lock:
            for record, event in zip(records, events, strict=True):
                self._cancel[record.id] = event
                self._claimed.discard(record.id)

        def execute() -> None:
            try:
                for index, (record, event) in enumerate(zip(records, events, strict=True)):
                    # Stopping: the rest of a chain waits (queued) for stop() to mark it
                    # interrupted; nothing starts once the grace is over.
                    if self._stop.is_set() or (index and self._draining.is_set()):
                        return
                    try:
                        final = self.executor.execute(
                            job,
                            record,
                            pipeline,
                            event,
                            fire=self._fires_of.get(record.id),
                            pipeline_version=(versions or {}).get(pipeline or record.pipeline),
                        )
                        if final is not None and self.on_finished is not None:
                            self.on_finished(final)
                    finally:
                        with self._cancel_lock:
                            self._cancel.pop(record.id, None)
                            self._fires_of.pop(record.id, None)
                        if self._queue_waits_for_room:
                            self._queue_wake.set()  # a slot, or room in its job's limit
            finally:
                with self._cancel_lock:
                    for record in records:
                        self._cancel.pop(record.id, None)
                # Fires were left for now (see _defer), and with this chain's end half of the
                # runs this instance claims ahead are done: claim more.
                if (
                    self._deferring
                    and self.pool is not None
                    and self.pool.busy <= self.pool.size * CLAIM_AHEAD // 2 + 1
                ):
                    self._fire_wake.set()

        if self.inline or self.pool is None:
            execute()
        else:
            self.pool.submit(execute)

    def _maybe_retry(self, record: JobExecutionRecord, job: ScheduledJob | None = None) -> RunRequest | None:
        """Queue the retry of ``record`` if its job allows one (a retry's fire as known here)."""
        return self.executor.maybe_retry(record, job, fire=self._fires_of.get(record.id))
