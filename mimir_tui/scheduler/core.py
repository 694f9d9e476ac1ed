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
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .. import __version__
from ..errors import MimirError, NotFound
from ..persistence import FINISHED, JobExecutionRecord, RunRequest, ScheduledJob, Worker, new_id
from ..persistence.models import queues_text, serves
from ..persistence.types import as_utc
from ..pipelines.cancel import CancelToken
from .clock import DatabaseClock, SystemClock
from .cron import CronSchedule

log = logging.getLogger("mimir.scheduler")

RETRYABLE = ("failed", "timed_out", "interrupted")
MAX_RETRY_DELAY = 7 * 86400.0  # seconds
#: Missed fires recorded one by one per job and tick (the latest ones); older fires of a longer
#: downtime are summed up in the note of the oldest recorded one.
MAX_MISSED_ROWS = 1000
#: Seconds between full reloads of the jobs table, whatever its signature says (a safety net
#: for edits whose ``updated_at`` came from a clock behind the others').
FULL_REFRESH_EVERY = 60.0
#: Why a run stopped by :meth:`Scheduler.stop` is ``interrupted``.
STOPPED_REASON = "interrupted: the instance was stopped before the run finished"
#: Why a run of a live instance that it no longer executes (see Scheduler._reconcile) is.
LOST_REASON = "interrupted: the instance that claimed it was no longer running it"


def _fire_record(**values: Any) -> JobExecutionRecord:
    """A new execution of a fire, built without pydantic validation (``model_construct``): the
    tick makes one per fire, and the values are the scheduler's own, already typed."""
    row: dict[str, Any] = {
        "id": new_id(), "end_time": None, "duration": None, "error": None, "attempt": 1,
        "cancel_requested": False, "updated_at": None, "context": {}, "steps": [],
    }
    row.update(values)
    return JobExecutionRecord.model_construct(**row)


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"


#: Worker ids registered by this process. A live-looking row with this process's pid and an id
#: not in here was left by an earlier process that had the same pid: a container restarted
#: with the same hostname runs its service under the same pid again.
_LOCAL_WORKERS: set[str] = set()


def instance_key() -> str | None:
    """This process's kernel boot and pid namespace: where its pid means something."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{namespace}"


def _crashed_here(worker: dict[str, Any], host: str) -> bool:
    """True if ``worker`` ran on this host, in this boot and pid namespace, and its process is
    gone. (Elsewhere its pid says nothing here: its stale heartbeat will tell.)"""
    if worker["host"] != host or worker["status"] not in ("running", "stopping"):
        return False
    key, ours = worker.get("instance_key"), instance_key()
    if key and ours and key != ours:
        return False
    pid = int(worker["pid"])
    if pid == os.getpid():
        return worker["id"] not in _LOCAL_WORKERS
    return not _pid_alive(pid)


def register_worker(backend: Any, worker_id: str, now: datetime | None = None,
                    load: tuple[int, int] | None = None, queues: Iterable[str] = ()) -> None:
    """Register ``worker_id`` as this process's worker (status running). ``now`` None: the
    database's clock (see ``database_now``). ``load``: (run slots, slots taken); ``queues``:
    those it serves (none for a command that runs one execution itself)."""
    _LOCAL_WORKERS.add(worker_id)
    capacity, running = load or (None, None)
    backend.workers.register_worker(
        Worker(id=worker_id, host=socket.gethostname(), pid=os.getpid(), version=__version__,
               started_at=now, heartbeat_at=now, instance_key=instance_key(), capacity=capacity,
               running=running, queues=queues_text(queues))
    )


@contextmanager
def worker_session(backend: Any, settings: Any, *, worker_id: str | None = None,
                   scheduler: "Scheduler | None" = None) -> Iterator[str]:
    """Own runs as a registered worker for the length of the block: register (through
    ``scheduler.register()`` when given, which also recovers this host's crashed
    predecessors), heartbeat every ``scheduler.heartbeat_interval`` seconds in a daemon thread,
    and mark the worker ``stopped`` at the end. Yields the worker id, which every run executed
    in the block must carry: if this process dies, its heartbeat goes stale and a peer
    interrupts (and retries) those runs, instead of leaving them ``running`` for good."""
    if scheduler is not None:
        worker_id = scheduler.worker_id
        scheduler.register()
    else:
        worker_id = worker_id or make_worker_id()
        register_worker(backend, worker_id)
    stop = threading.Event()
    interval = settings.scheduler.heartbeat_interval

    def beat() -> None:
        while not stop.wait(interval):
            try:
                if not backend.workers.heartbeat(worker_id):
                    # Declared dead by a peer (we stalled): come back; the runs it
                    # interrupted stay interrupted (their saves are refused).
                    backend.workers.heartbeat(worker_id, status="running", revive=True)
            except Exception as exc:  # noqa: BLE001 - a database hiccup: try again next beat
                log.debug("heartbeat of %s failed: %s", worker_id, exc)

    beater = threading.Thread(target=beat, name="mimir-heartbeat", daemon=True)
    beater.start()
    try:
        yield worker_id
    finally:
        stop.set()
        beater.join(timeout=10)  # a beat in flight must not revive the row after "stopped"
        try:
            backend.workers.heartbeat(worker_id, status="stopped")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not mark worker %s stopped: %s", worker_id, exc)


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
        self._open = threading.Event()  # cleared by hold(): no new run starts
        self._open.set()
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

    def hold(self) -> None:
        """Start no new run until :meth:`release` (runs under way go on)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _work(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            self._open.wait()
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
    # Left to a peer with free run slots until then (see Scheduler._defer); None: not deferred.
    deferred_until: datetime | None = None

    @property
    def wake_at(self) -> datetime:
        return max(self.next_fire, self.deferred_until or self.next_fire)


@dataclass
class TickReport:
    """What one tick did, for tests and the dashboard."""

    claimed: list[JobExecutionRecord] = field(default_factory=list)
    missed: list[JobExecutionRecord] = field(default_factory=list)
    lost: int = 0  # fires another instance had claimed first
    errors: int = 0  # jobs whose fire failed (tried again at the next tick)
    deferred: int = 0  # due jobs left to a peer with free run slots, for now


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
        if runner is None:
            from ..pipelines.runner import PipelineRunner

            # Its records' times on that clock too (a test's fake clock stays the scheduler's).
            runner = PipelineRunner(backend, settings, clock=self.clock if isinstance(self.clock, DatabaseClock) else None)
        self.runner = runner
        self.worker_id = worker_id or make_worker_id()
        self.inline = inline  # run executions inside tick()/poll_queue() (tests)
        # The queues whose jobs this instance fires and whose queued runs it claims.
        self.queues: frozenset[str] = frozenset(self.config.queues if queues is None else queues)
        self._jobs: dict[str, _JobState] = {}
        self._signature: tuple[int, datetime | None] | None = None
        self._refreshed_at = float("-inf")  # time.monotonic() of the last full reload
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel: dict[str, CancelToken] = {}
        self._cancel_lock = threading.Lock()
        self.pool: RunPool | None = None
        self.fire_lags: deque[float] = deque(maxlen=100_000)  # seconds between scheduled_for and the claim
        self.on_finished: Callable[[JobExecutionRecord], None] | None = None
        self._stopped_runs = 0  # runs interrupted by stop() that recorded it themselves
        # execution id -> the fire a retry belongs to (its row has no run key: the first
        # attempt holds it), carried on to the next retry
        self._fires_of: dict[str, datetime] = {}
        self._suspects: set[str] = set()  # own unfinished rows untracked at the last beat
        # Fires claimed by a tick still in progress, not yet handed to the pool (a tick after
        # a downtime, or on a slow database, can outlast several heartbeats).
        self._claimed: set[str] = set()
        self._unstarted: list | None = None  # the runs a tick has claimed, started when it ends
        # (time.monotonic(), [(queues, free run slots) of each live peer]) as last read
        self._peers_seen: tuple[float, list[tuple[set[str], int]]] = (float("-inf"), [])

    # -- lifecycle ------------------------------------------------------------------------

    def register(self) -> None:
        """Register this instance, and recover what a crashed predecessor on this host left."""
        self._sync_clock()
        register_worker(self.backend, self.worker_id, self._lease_now(), load=self._load(),
                        queues=self.queues)
        host = socket.gethostname()
        crashed = [w["id"] for w in self.backend.workers.list_workers() if w["id"] != self.worker_id and _crashed_here(w, host)]
        self._recover(crashed)

    def start(self) -> None:
        self.pool = RunPool(self.config.max_concurrency)
        self.register()
        for target, name in ((self._fire_loop, "mimir-fire"), (self._queue_loop, "mimir-queue"),
                             (self._heartbeat_loop, "mimir-heartbeat")):
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
        try:
            self.backend.workers.heartbeat(self.worker_id, status="stopping")
        except MimirError:
            pass
        finished = self.pool.wait_idle(grace) if self.pool else True
        if not finished:
            # Ask the runs to stop; each records itself ``interrupted`` (see _execute) within
            # about a second, a plugin that ignores the request included (the runner abandons it).
            with self._cancel_lock:
                for token in self._cancel.values():
                    token.cancel(STOPPED_REASON)
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
            log.error("could not mark the runs of %s interrupted: %s", self.worker_id, exc)
        try:
            self.backend.workers.heartbeat(self.worker_id, status="stopped")
        except MimirError:
            pass
        if self.pool:
            self.pool.shutdown()
        log.info("scheduler %s stopped (%d interrupted)", self.worker_id, len(interrupted) + self._stopped_runs)
        return interrupted

    # -- loops ----------------------------------------------------------------------------

    def _fire_loop(self) -> None:
        while not self._draining.is_set():
            wait = self.config.poll_interval
            try:
                report = self.tick()
                now = self.clock.now()
                soonest = min((s.wake_at for s in self._jobs.values()), default=None)
                if soonest is not None and not report.errors:
                    wait = min(wait, max(0.005, (soonest - now).total_seconds()))
                # else: a fire that failed (the database is away) is tried again after
                # poll_interval, not in a busy loop.
            except Exception as exc:  # keep firing through a database hiccup
                log.error("scheduler tick failed: %s", exc)
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
                self._sync_clock()
                self.beat()
            except Exception as exc:
                log.error("heartbeat failed: %s", exc)

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
            elif job.next_run is not None and old is None:
                next_fire = as_utc(job.next_run)  # resume where the database says
            else:
                next_fire = schedule.next_after(now)
            jobs[job.id] = _JobState(job, schedule, next_fire, deferred_until)
        self._jobs = jobs
        return True

    def tick(self, now: datetime | None = None) -> TickReport:
        """Fire every job that is due at ``now``. A job whose fire fails (the database went
        away) is tried again at the next tick; the others fire regardless."""
        self.refresh_jobs()
        now = as_utc(now) or self.clock.now()
        report = TickReport()
        # With a pool, runs start once every due fire is claimed: runs started meanwhile would
        # compete with the claims for the GIL and the write lock (bench/scheduler.py: 1,000
        # jobs due at once, fire lag p99 of seconds instead of a few hundred ms). For the same
        # reason the pool starts no queued run (a backlog of earlier fires) while claiming.
        self._unstarted = [] if self.pool is not None and not self.inline else None
        if self._unstarted is not None:
            self.pool.hold()  # type: ignore[union-attr]
        try:
            for state in sorted(self._jobs.values(), key=lambda s: (-s.job.priority, s.next_fire)):
                if state.next_fire <= now and not self._draining.is_set():
                    if self._defer(state, now, report.deferred):
                        report.deferred += 1
                        continue
                    try:
                        self._fire(state, now, report)
                    except Exception as exc:
                        log.error("could not fire job %s: %s", state.job.id, exc)
                        report.errors += 1
        finally:
            unstarted, self._unstarted = self._unstarted, None
            # Stopping meanwhile: the claimed fires stay queued, and stop() marks them
            # interrupted (and queues their retries) once this tick has returned.
            if not self._draining.is_set():
                for job, chain in unstarted or ():
                    self._submit_chain(job, chain)
            if unstarted is not None:
                self.pool.release()  # type: ignore[union-attr]
        return report

    def _due_fires(self, state: _JobState, now: datetime) -> tuple[list[datetime], datetime | None, datetime | None]:
        """The fires due at ``now``, oldest first: all of them, or after a downtime with more
        than ``MAX_MISSED_ROWS + misfire_cap`` fires, the latest that many; then the first fire
        left out (every fire from it until the first listed one was missed), else None; then
        the first fire after ``now`` when it came out of the walk, else None."""
        keep = MAX_MISSED_ROWS + max(1, state.job.misfire_cap)
        schedule = state.schedule
        fires = [state.next_fire]
        following = schedule.next_after(state.next_fire)
        while following <= now and len(fires) <= keep:
            fires.append(following)
            following = schedule.next_after(following)
        if len(fires) <= keep:
            # The walk stopped at the first fire after ``now``: the job's next fire (computing
            # it again costs a croniter per job and tick, 1,000 of them when 1,000 jobs are due).
            return fires, None, following
        # Too many: find the latest ``keep`` fires by walking forward from a point before
        # ``now`` that holds about as many (a window doubled until it does).
        span = max(fires[-1] - fires[0], timedelta(seconds=1))
        while True:
            start = now - span
            if start <= fires[-1]:
                latest = deque(fires, maxlen=keep)
                latest.extend(schedule.fires(fires[-1], now))
                break
            latest = deque(schedule.fires(start, now), maxlen=keep)
            if len(latest) >= keep:
                break
            span *= 2
        return list(latest), fires[0], None

    def _fire(self, state: _JobState, now: datetime, report: TickReport) -> None:
        job = state.job
        fires, unlisted_from, following = self._due_fires(state, now)
        grace = timedelta(seconds=job.misfire_grace_seconds)
        late = [f for f in fires if now - f > grace]
        on_time = [f for f in fires if now - f <= grace]
        # A fire later than the job's grace is a misfire; the policy says what runs:
        #   skip: only the fires on time; once: the latest fire alone (whether late or not);
        #   all: every fire, up to the latest ``misfire_cap`` of them.
        # Fires not run are recorded ``missed``.
        policy = job.misfire_policy
        if not late:
            run = on_time
        elif policy == "all":
            run = fires[-max(1, job.misfire_cap):]
        elif policy == "once":
            run = [fires[-1]]
        else:
            run = on_time
        chosen = set(run)
        missed = [f for f in fires if f not in chosen]
        owned = False
        if missed:
            owned = self._record_missed(job, missed, now, policy, report, unlisted_from) or owned
        elif unlisted_from is not None:
            log.warning("job %s: fires from %s to %s were missed", job.id, unlisted_from.isoformat(),
                        fires[0].isoformat())
        ran: list[JobExecutionRecord] = []
        if run:
            ran = self._claim_and_run(job, run, now, report)
            owned = owned or bool(ran)
        state.next_fire = following or state.schedule.next_after(max(fires[-1], now))
        state.deferred_until = None
        if owned:  # the instance that claimed writes the job's times; the others need not
            self.backend.jobs.set_schedule(
                job.id, next_run=state.next_fire,
                last_run=max(r.scheduled_for for r in ran) if ran else None,
            )

    def _record_missed(self, job: ScheduledJob, fires: list[datetime], now: datetime, policy: str,
                       report: TickReport, unlisted_from: datetime | None = None) -> bool:
        """Record ``fires`` as ``missed`` (one transaction); True if any row was ours to write."""
        records = []
        for index, fire in enumerate(fires):
            note = f"missed: fire at {fire.isoformat()} was {int((now - fire).total_seconds())} s late (misfire policy {policy})"
            if index == 0 and unlisted_from is not None:
                note += (f"; every earlier fire since {unlisted_from.isoformat()} was missed too "
                         f"(not recorded one by one)")
            records.append(self._missed_record(job, fire, now, note))
        landed = self.backend.runs.claim_fires(records)
        report.missed.extend(landed)
        if unlisted_from is not None and landed:
            log.warning("job %s: every fire from %s to %s was missed (misfire policy %s)", job.id,
                        unlisted_from.isoformat(), fires[-1].isoformat(), policy)
        return bool(landed)

    def _missed_record(self, job: ScheduledJob, fire: datetime, now: datetime, note: str) -> JobExecutionRecord:
        return _fire_record(
            job_id=job.id, pipeline=job.pipeline, start_time=fire, end_time=now, duration=0,
            status="missed", error=note, triggered_by="scheduler", scheduled_for=fire,
            worker_id=self.worker_id,
        )

    def _claim_and_run(self, job: ScheduledJob, fires: list[datetime], now: datetime,
                       report: TickReport) -> list[JobExecutionRecord]:
        """Claim the fires due to run and start them: one after another in each of the job's
        free slots (``max_concurrent`` less its active runs), so the catch-up runs of a
        downtime queue up instead of counting as overlaps of each other. With no free slot,
        the fires are recorded ``missed`` (an overlap), never dropped."""
        active = self.backend.executions.count_running(job.id)
        slots = job.max_concurrent - active
        if slots <= 0:
            note = f"missed: {active} run(s) of this job still active (max_concurrent {job.max_concurrent})"
            report.missed.extend(self.backend.runs.claim_fires([self._missed_record(job, f, now, note) for f in fires]))
            return []
        claimed: list[JobExecutionRecord] = []
        try:
            for fire in fires:
                record = _fire_record(
                    job_id=job.id, pipeline=job.pipeline, start_time=now, status="queued", triggered_by="scheduler",
                    scheduled_for=fire, worker_id=self.worker_id, attempt=1,
                )
                if not self.backend.runs.claim_fire(record):
                    report.lost += 1
                    continue
                with self._cancel_lock:
                    self._claimed.add(record.id)
                self.fire_lags.append((self.clock.now() - fire).total_seconds())
                report.claimed.append(record)
                claimed.append(record)
        finally:
            # Even when a later claim failed (the database went away mid-tick): a claim that
            # landed is ours, and is run (or handed to the pool), never left queued.
            chains = [claimed[i::slots] for i in range(min(slots, len(claimed)))]
            unstarted = self._unstarted
            for chain in chains:
                if unstarted is not None:
                    unstarted.append((job, chain))  # started by tick() once the claims are done
                else:
                    self._submit_chain(job, chain)
        return claimed

    def poll_queue(self, now: datetime | None = None) -> int:
        """Claim queued runs while this instance has room; returns how many."""
        claimed = 0
        while not self._draining.is_set() and (self.inline or (self.pool and self.pool.free > 0)):
            got = self.backend.runs.claim_request(self.worker_id, now=as_utc(now) or self.clock.now(), queues=self.queues)
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
        """Heartbeat, then declare silent peers dead and retry their runs if allowed."""
        now = as_utc(now) or self._lease_now()
        if not self.backend.workers.heartbeat(self.worker_id, now=now, load=self._load()):
            # A peer declared us dead (we stalled); our runs were interrupted. Come back.
            log.warning("instance %s was declared dead by a peer; re-registering", self.worker_id)
            if not self.backend.workers.heartbeat(self.worker_id, now=now, status="running", revive=True):
                self.register()  # the row is gone (pruned): register anew
        dead, interrupted = self.backend.workers.reap_stale_workers(stale_after=self.config.stale_after, now=now)
        if dead:
            log.warning("instances %s stopped heartbeating; %d run(s) interrupted", ", ".join(dead), len(interrupted))
        # Runs no live instance owns: no worker id (an unregistered process), an unknown one, or
        # a worker already dead or stopped (e.g. a reaper that crashed between its two steps).
        orphans = self.backend.executions.sweep_orphaned_runs(stale_after=self.config.stale_after, now=now)
        if orphans:
            log.warning("%d run(s) that no live instance owned were interrupted: %s", len(orphans),
                        ", ".join(r.id for r in orphans))
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
            log.warning("%d run(s) of this instance were no longer executing here: %s", len(lost),
                        ", ".join(r.id for r in lost))
        self._suspects -= {r.id for r in lost}
        return lost

    def _load(self) -> tuple[int, int] | None:
        """(run slots, slots taken) for the workers table; None without a pool."""
        return (self.pool.size, self.pool.busy) if self.pool is not None else None

    def _defer(self, state: _JobState, now: datetime, deferred: int) -> bool:
        """Leave a due fire to a peer for now (load balancing): True when every run slot of
        this instance is taken, live peers reported more free slots at their last heartbeats
        than the ``deferred`` fires this tick has left them already, and the fire is younger
        than ``scheduler.defer_when_busy`` (at most half the job's misfire grace). A fire no
        peer took by then is claimed here like any other: deferring delays a fire by a few
        seconds at most, and never loses one. Fires beyond the peers' free slots are claimed
        at once, as before (a burst is shared by whoever claims first)."""
        if self.pool is None:
            return False
        window = min(self.config.defer_when_busy, state.job.misfire_grace_seconds / 2)
        if window <= 0 or (now - state.next_fire).total_seconds() >= window:
            return False
        if self.pool.free - len(self._unstarted or ()) > 0:
            return False  # room here (less the runs this tick has claimed and not started)
        try:
            room = self._peer_room(state.job.queue)
        except MimirError as exc:  # the peers' load cannot be read: fire here, as without peers
            log.warning("could not read the other instances' load: %s", exc)
            return False
        if deferred >= room:
            return False
        state.deferred_until = state.next_fire + timedelta(seconds=window)
        log.debug("job %s: all %d run slots taken; fire %s left to a peer with room until %s", state.job.id,
                  self.pool.size, state.next_fire.isoformat(), state.deferred_until.isoformat())
        return True

    def _peer_room(self, queue: str) -> int:
        """The free run slots that running peers serving ``queue`` reported at their last
        heartbeats (the workers table is read at most once a second). A peer that is stopping
        counts for nothing: it claims no more fires."""
        checked, peers = self._peers_seen
        if time.monotonic() - checked >= 1.0:
            peers = [
                (serves(w), max(0, w["capacity"] - (w.get("running") or 0)))
                for w in self.backend.workers.live_workers(stale_after=self.config.stale_after, now=self._lease_now())
                if w["id"] != self.worker_id and w["status"] == "running" and w.get("capacity") is not None
            ]
            self._peers_seen = (time.monotonic(), peers)
        return sum(room for queues, room in peers if queue in queues)

    def _sync_clock(self) -> None:
        if isinstance(self.clock, DatabaseClock):
            self.clock.sync()

    def _lease_now(self) -> datetime:
        """The clock heartbeats are written and judged on: the database's (one clock for every
        machine), or the fake clock of a test."""
        if isinstance(self.clock, SystemClock):
            return self.backend.database_now()
        return self.clock.now()

    def _recover(self, worker_ids: list[str]) -> None:
        if not worker_ids:
            return
        dead, interrupted = self.backend.workers.reap_stale_workers(
            stale_after=self.config.stale_after, now=self._lease_now(), also=worker_ids
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
        self._submit_chain(job, [record], pipeline=pipeline)

    def _submit_chain(self, job: ScheduledJob | None, records: list[JobExecutionRecord], *,
                      pipeline: str | None = None) -> None:
        """Run ``records`` one after another (in this thread when inline, else in the pool).
        Once the instance is stopping, the rest of a chain is left ``queued`` for
        :meth:`stop` to mark interrupted."""
        events = [CancelToken() for _ in records]
        with self._cancel_lock:
            for record, event in zip(records, events):
                self._cancel[record.id] = event
                self._claimed.discard(record.id)

        def execute() -> None:
            try:
                for index, (record, event) in enumerate(zip(records, events)):
                    # Stopping: the rest of a chain waits (queued) for stop() to mark it
                    # interrupted; nothing starts once the grace is over.
                    if self._stop.is_set() or (index and self._draining.is_set()):
                        return
                    try:
                        self._execute(job, record, pipeline or record.pipeline, event)
                    finally:
                        with self._cancel_lock:
                            self._cancel.pop(record.id, None)
                            self._fires_of.pop(record.id, None)
            finally:
                with self._cancel_lock:
                    for record in records:
                        self._cancel.pop(record.id, None)

        if self.inline or self.pool is None:
            execute()
        else:
            self.pool.submit(execute)

    def _execute(self, job: ScheduledJob | None, record: JobExecutionRecord, pipeline: str,
                 cancel: CancelToken) -> None:
        timeout = job.timeout_seconds if job and job.timeout_seconds else self.config.default_timeout
        try:
            final = self.runner.run(
                pipeline, job_id=record.job_id, triggered_by=record.triggered_by, execution_id=record.id,
                scheduled_for=record.scheduled_for, attempt=record.attempt, worker_id=self.worker_id,
                timeout=timeout, cancel=cancel,
            )
        except Exception as exc:
            # The runner could not even record the run (the database went away at that moment).
            # Leave no queued/running row behind on a live instance: nobody would ever reap it,
            # and it would count as an active run of the job for good.
            log.error("execution %s could not run: %s", record.id, exc)
            final = self._record_failure(record, pipeline, f"could not run: {exc}")
            if final is not None and job is not None:
                self._maybe_retry(final, job)
            return
        retry = final.status != "interrupted"  # whoever marks a run interrupted queues its retry
        if final.status == "cancelled" and cancel.is_set() and self._draining.is_set():
            # Stopped by stop(): not an operator's cancel. Interrupted, so that it is retried.
            final.status = "interrupted"
            final.error = STOPPED_REASON
            try:
                self.backend.save_execution(final)
                self._stopped_runs += 1
                retry = True
            except MimirError as exc:
                log.error("could not mark execution %s interrupted: %s", final.id, exc)
                retry = False
        if job is not None:
            try:
                self.backend.jobs.set_schedule(job.id, last_result=final.status)
            except MimirError as exc:
                log.error("could not record the result of job %s: %s", job.id, exc)
            if retry:
                self._maybe_retry(final, job)
        if self.on_finished is not None:
            self.on_finished(final)

    def _record_failure(self, record: JobExecutionRecord, pipeline: str, error: str) -> JobExecutionRecord | None:
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
                current.status = "failed"
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

    def _maybe_retry(self, record: JobExecutionRecord, job: ScheduledJob | None = None) -> RunRequest | None:
        if record.status not in RETRYABLE or record.job_id is None:
            return None
        job = job or self._job(record.job_id)
        if job is None or record.attempt > job.max_retries:
            return None
        # Exponential, but never more than a week between attempts (and no float overflow).
        delay = min(job.retry_backoff_seconds * 2.0 ** min(record.attempt - 1, 40), MAX_RETRY_DELAY)
        request = RunRequest(
            job_id=job.id, pipeline=job.pipeline, priority=job.priority, triggered_by="retry",
            attempt=record.attempt + 1, available_at=self.clock.now() + timedelta(seconds=delay),
            scheduled_for=record.scheduled_for or self._fires_of.get(record.id), requested_by=f"retry of {record.id}",
            queue=job.queue,
        )
        try:
            self.backend.runs.enqueue(request)
        except MimirError as exc:
            log.error("could not queue a retry of %s: %s", record.id, exc)
            return None
        log.info("execution %s %s; retry %d of %d in %.0f s", record.id, record.status, record.attempt,
                 job.max_retries, delay)
        return request
