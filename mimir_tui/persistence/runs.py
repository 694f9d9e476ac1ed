"""Starting runs exactly once: claiming scheduled fires, and the queue of manual runs and retries.

- A fire is claimed by inserting its execution with the run key ``(job_id, scheduled_for)``
  and "on conflict do nothing": the instance whose insert lands runs it; the others see 0 rows.
- Queued runs are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and
  MariaDB, and inside ``BEGIN IMMEDIATE`` on SQLite (one writer at a time).
- A job's ``max_concurrent`` holds for every run of it, fires, manual runs and retries alike,
  across instances: a claim that starts a run locks the job's row (``FOR UPDATE``; SQLite's
  write transaction is one at a time anyway), counts the job's queued and running executions
  and inserts only if there is room, all in one transaction. So two claims of the same job
  never both see a free slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, true, update

from ..errors import PersistenceError
from .db import Database, RawTransaction, one_of, operation
from .executions import COLUMNS, UNFINISHED, active_runs
from .models import EXECUTIONS, JOBS, QUEUE, JobExecutionRecord, RunRequest, Status, values_of
from .types import as_utc, utcnow

#: MySQL/MariaDB's ER_DUP_ENTRY: InnoDB rolls back the one statement, not the transaction.
_DUPLICATE_KEY = 1062


class JobRoom(NamedTuple):
    """A job's queued/running executions and its ``max_concurrent``, as counted by a claim."""

    active: int
    limit: int

    @property
    def free(self) -> int:
        return self.limit - self.active


class RunStore:
    """Fires (``job_executions`` rows with a run key) and the run queue (``run_queue``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- fires -------------------------------------------------------------------------

    @operation("claim_fire")
    def claim_fire(self, execution: JobExecutionRecord) -> bool:
        """Insert the execution of a scheduled fire unless its ``(job_id, scheduled_for)`` exists.

        True: this caller owns the fire (and the row). False: another instance had it already.
        """
        return bool(self._claim([execution])[0])

    @operation("claim_fires")
    def claim_fires(self, executions: list[JobExecutionRecord]) -> list[JobExecutionRecord]:
        """:meth:`claim_fire` for many fires in one transaction (e.g. the missed fires of a long
        downtime); returns the executions this caller owns, in the order given."""
        return self._claim(executions)[0] if executions else []

    @operation("claim_fires_within")
    def claim_fires_within(self, executions: list[JobExecutionRecord]) -> tuple[list[JobExecutionRecord], JobRoom]:
        """:meth:`claim_fires` for fires of one job that are to run, within its
        ``max_concurrent`` (see the module's docstring): with no free slot, nothing is
        inserted. Returns the executions this caller owns, and the job's room before them."""
        landed, room = self._claim(executions, within=True)
        if room is None:
            # The job's row is gone: the insert of a fire of a deleted job fails the same way.
            raise PersistenceError(f"claim_fires_within failed: job {executions[0].job_id!r} does not exist")
        return landed, room

    def _claim(
        self, executions: list[JobExecutionRecord], *, within: bool = False
    ) -> tuple[list[JobExecutionRecord], JobRoom | None]:
        for execution in executions:
            if execution.job_id is None or execution.scheduled_for is None:
                raise ValueError("a scheduled fire needs job_id and scheduled_for")
        now = utcnow()
        landed: set[int] = set()
        prepared = self.db.prepare("claim_fire", self._insert_unless_claimed, COLUMNS)
        # Inserted in run-key order: two instances claiming overlapping fires take the keys'
        # locks in the same order, so neither waits for the other in a deadlock.
        ordered = sorted(executions, key=lambda e: (e.job_id or "", e.scheduled_for))
        room = None
        with self.db.raw_write() as tx:
            if within:
                if len({e.job_id for e in executions}) != 1:
                    raise ValueError("claim_fires_within takes fires of one job")
                room = self._room(tx, executions[0].job_id, wait=True)
                if room is None or room.free <= 0:
                    return [], room
            for execution in ordered:
                execution.updated_at = now
                try:
                    if tx.execute(prepared, values_of(execution, EXECUTIONS)) == 1:
                        landed.add(id(execution))
                except Exception as exc:
                    if self.db.dialect.upsert or _error_code(exc) != _DUPLICATE_KEY:
                        raise
        return [e for e in executions if id(e) in landed], room

    @operation("claim_batch")
    def claim_batch(
        self,
        fires: dict[str, FireBatch],
        overlap: Callable[[str, JobRoom], list[JobExecutionRecord]],
    ) -> dict[str, BatchClaim]:
        """Every due fire of a tick's jobs in one transaction (:meth:`claim_fires` for the
        ``missed`` of each job, :meth:`claim_fires_within` for its ``run``), and the jobs'
        fire times of those that got a row. Per job: the executions this caller owns, and the
        job's room (None: its row is gone, and nothing of it was written).

        1. The jobs' rows are locked in id order (``FOR UPDATE SKIP LOCKED``; SQLite's write
           transaction is one at a time), so a job's ``max_concurrent`` holds as in
           :meth:`claim_fires_within`. A row another transaction holds (a peer claiming the
           same job) is skipped, not waited for: its job's claim is ``held`` and nothing of
           it is written, so instances sharing a burst claim different jobs side by side.
        2. One ``GROUP BY`` counts their runs in flight. A job with no free slot has its
           ``run`` fires recorded missed instead (``overlap(job_id, room)`` makes those
           records).
        3. One multi-row insert that skips the fires someone claimed already (run key taken);
           which rows are this caller's is read back by id when some were skipped (always on
           MySQL, whose count of changed rows cannot tell).
        4. One ``UPDATE`` per job (sent in one driver call) writes ``next_run`` and
           ``last_run`` of the jobs that got a row.

        Taken from APScheduler 4's SQLAlchemy data store (``acquire_schedules``: the due rows
        locked in one statement, the schedules written back together with one executemany)
        and procrastinate's ``fetch_job`` (lock, check and write in one transaction, the
        database deciding who owns what)."""
        for batch in fires.values():
            for execution in (*batch.missed, *batch.run):
                if execution.job_id is None or execution.scheduled_for is None:
                    raise ValueError("a scheduled fire needs job_id and scheduled_for")
        out: dict[str, BatchClaim] = {}
        if not fires:
            return out
        now = utcnow()
        job_ids = sorted(fires)
        with self.db.raw_write() as tx:
            limits: dict[str, int] = {}
            active: dict[str, int] = {}
            for chunk in _chunks(job_ids):
                values = _padded(chunk)
                limits.update((job_id, int(limit)) for job_id, limit in tx.fetch(self._lock_jobs(len(values)), values))
                active.update((job_id, int(n)) for job_id, n in tx.fetch(self._count_active(len(values)), values))
            held: set[str] = set()  # skipped: locked by another transaction, not gone
            skipped = [job_id for job_id in job_ids if job_id not in limits]
            if skipped and self.db.dialect.skip_locked:
                for chunk in _chunks(skipped):
                    values = _padded(chunk)
                    held.update(found for (found,) in tx.fetch(self._ids_present(JOBS, len(values)), values))
            rows: list[JobExecutionRecord] = []
            for job_id in job_ids:
                if job_id not in limits:
                    out[job_id] = BatchClaim([], [], None, held=job_id in held)
                    continue
                batch = fires[job_id]
                room = JobRoom(active.get(job_id, 0), limits[job_id])
                run = batch.run
                missed = list(batch.missed)
                if run and room.free <= 0:
                    missed.extend(overlap(job_id, room))
                    run = []
                out[job_id] = BatchClaim(missed, run, room)
                rows.extend(missed)
                rows.extend(run)
            # Inserted in run-key order, as in _claim.
            rows.sort(key=lambda e: (e.job_id or "", e.scheduled_for))
            for row in rows:
                row.updated_at = now
            inserted = tx.execute_many(
                self.db.prepare("claim_fires_batch", self._insert_skipping_claimed, COLUMNS),
                rows,
                lambda row: values_of(row, EXECUTIONS),
            )
            # MySQL counts a skipped row as changed (the driver's FOUND_ROWS flag counts the
            # row its no-op update matched): there, which rows landed is always read back.
            if inserted != len(rows) or not self.db.dialect.upsert:
                ours: set[str] = set()
                for chunk in _chunks([row.id for row in rows]):
                    values = _padded(chunk)
                    ours.update(found for (found,) in tx.fetch(self._ids_present(EXECUTIONS, len(values)), values))
                for job_id, claim in out.items():
                    out[job_id] = claim._replace(
                        missed=[e for e in claim.missed if e.id in ours], run=[e for e in claim.run if e.id in ours]
                    )
            times = [
                {
                    "job_id": job_id,
                    "next_run": fires[job_id].next_run,
                    "last_run": max((e.scheduled_for for e in claim.run if e.scheduled_for is not None), default=None),
                }
                for job_id, claim in out.items()
                if claim.missed or claim.run
            ]
            tx.execute_many(self._write_times(), times)
        return out

    @operation("next_runs")
    def next_runs(self, job_ids: list[str]) -> dict[str, datetime | None]:
        """The stored ``next_run`` of the jobs ``job_ids`` that exist (what their last claim,
        by any instance, wrote), in one read per 512 ids."""
        out: dict[str, datetime | None] = {}
        for chunk in _chunks(job_ids):
            values = _padded(chunk)
            rows = self.db.fetch(self._ids_present(JOBS, len(values), JOBS.c.next_run), values)
            out.update((job_id, as_utc(next_run)) for job_id, next_run in rows)
        return out

    def _lock_jobs(self, count: int) -> Any:
        def build() -> Any:
            query = (
                select(JOBS.c.id, JOBS.c.max_concurrent)
                .where(JOBS.c.id.in_([bindparam(f"k{i}") for i in range(count)]))
                .order_by(JOBS.c.id)
            )
            return query.with_for_update(skip_locked=True) if self.db.dialect.skip_locked else query

        return self.db.prepare(("lock_jobs", count), build)

    def _count_active(self, count: int) -> Any:
        """Two statements, as in _room: on PostgreSQL a count in the locking statement would
        read the snapshot taken before the locks were granted."""

        def build() -> Any:
            return (
                select(EXECUTIONS.c.job_id, func.count())
                .where(
                    EXECUTIONS.c.job_id.in_([bindparam(f"k{i}") for i in range(count)]),
                    one_of(EXECUTIONS.c.status, UNFINISHED),
                )
                .group_by(EXECUTIONS.c.job_id)
            )

        return self.db.prepare(("count_active", count), build)

    def _ids_present(self, table: Any, count: int, *columns: Any) -> Any:
        """The ids (and ``columns``) of the rows of ``table`` among ``count`` ids k0, k1..."""
        return self.db.prepare(
            ("ids_present", table.name, count, *(c.name for c in columns)),
            lambda: select(table.c.id, *columns).where(table.c.id.in_([bindparam(f"k{i}") for i in range(count)])),
        )

    def _write_times(self) -> Any:
        """A job's ``next_run`` (kept NULL while it is disabled, as ``JobStore.set_schedule``
        does) and its ``last_run`` (unchanged when NULL is given: no fire of it ran)."""

        def build() -> Any:
            return (
                update(JOBS)
                .where(JOBS.c.id == bindparam("job_id"))
                .values(
                    next_run=case(
                        (JOBS.c.enabled == true(), bindparam("next_run", type_=JOBS.c.next_run.type)), else_=None
                    ),
                    last_run=func.coalesce(bindparam("last_run", type_=JOBS.c.last_run.type), JOBS.c.last_run),
                )
            )

        return self.db.prepare("write_job_times", build)

    def _room(self, tx: RawTransaction, job_id: str | None, *, wait: bool) -> JobRoom | None:
        """Lock the job's row and count its runs in flight, inside the claim's transaction.
        None: the row is gone, or (``wait`` False) another claim of the job holds it now."""

        def lock() -> Any:
            query = select(JOBS.c.max_concurrent).where(JOBS.c.id == bindparam("job_id"))
            return query.with_for_update(skip_locked=not wait) if self.db.dialect.skip_locked else query

        # Two statements: on PostgreSQL a count in the locking statement would read the snapshot
        # taken before the lock was granted, without the runs its holder has just inserted.
        rows = tx.fetch(self.db.prepare(("lock_job", wait), lock), {"job_id": job_id})
        if not rows:
            return None
        active = tx.fetch(self.db.prepare("count_running", active_runs), {"job_id": job_id})[0][0]
        return JobRoom(int(active), int(rows[0][0]))

    def _insert_skipping_claimed(self) -> Any:
        """The INSERT of a batch: a fire claimed already is skipped, on MySQL too (where a
        duplicate key would fail the whole multi-row statement): its "update" sets the row's
        id to itself, which changes nothing."""
        if self.db.dialect.upsert:
            return self._insert_unless_claimed()
        from sqlalchemy.dialects import mysql

        return mysql.insert(EXECUTIONS).on_duplicate_key_update(id=EXECUTIONS.c.id)

    def _insert_unless_claimed(self) -> Any:
        if not self.db.dialect.upsert:
            return insert(EXECUTIONS)  # MySQL: a duplicate key error says "claimed already"
        return self.db.dialect.insert(EXECUTIONS).on_conflict_do_nothing()

    # -- the queue ---------------------------------------------------------------------

    @operation("enqueue")
    def enqueue(self, request: RunRequest) -> RunRequest:
        """Queue a run. Its times are the database's (as the schedulers' clocks are): a run
        asked for from a machine whose clock is off is available at once all the same, unless
        ``available_at`` was given."""
        request.created_at = self.db.now()
        given = "available_at" in request.model_fields_set and request.available_at is not None
        request.available_at = as_utc(request.available_at) if given else request.created_at
        with self.db.write() as conn:
            if request.job_id is not None:
                # The job's queue as it is now (the row locked: an edit moving the job to another
                # queue, which moves its queued runs, comes wholly before or after this insert).
                query = select(JOBS.c.queue).where(JOBS.c.id == request.job_id)
                if self.db.dialect.skip_locked:
                    query = query.with_for_update()
                queue = conn.execute(query).scalar()
                if queue is not None:
                    request.queue = queue
            conn.execute(insert(QUEUE), values_of(request, QUEUE))
        return request

    @operation("list_queue")
    def list_queue(self) -> list[RunRequest]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(QUEUE).order_by(QUEUE.c.priority.desc(), QUEUE.c.available_at, QUEUE.c.id)
            ).mappings()
            return [RunRequest.model_construct(**r) for r in rows]

    @operation("claim_request")
    def claim_request(
        self,
        worker_id: str,
        *,
        now: datetime | None = None,
        request_id: str | None = None,
        queues: Iterable[str] | None = None,
    ) -> tuple[RunRequest, JobExecutionRecord] | None:
        """Take the most urgent available request (or the one named) and turn it into a
        ``running`` execution owned by ``worker_id``, in one transaction. None: nothing to do.
        ``queues``: take only a request of one of these (None: of any). A request whose job
        has as many runs in flight as its ``max_concurrent`` waits in the queue (see the
        module's docstring)."""
        when = as_utc(now) or utcnow()
        names = None if queues is None else sorted(queues)
        if names == []:
            return None
        if request_id is not None:
            query = self._locked(select(QUEUE).where(QUEUE.c.id == request_id))
            return self._claim_request_with(query, worker_id, when)
        if not self._anything_available(when, names):
            # An empty queue (every poll, twice a second, when idle) costs a read, not a write lock.
            return None
        if self.db.dialect.name == "mysql":
            return self._claim_request_mysql(worker_id, when, names)
        busy: list[str] = []  # jobs another claim holds right now: their requests wait
        for _ in range(5):
            query = select(QUEUE).where(QUEUE.c.available_at <= when, _job_has_room())
            if names is not None:
                query = query.where(QUEUE.c.queue.in_(names))
            if busy:
                query = query.where(or_(QUEUE.c.job_id.is_(None), QUEUE.c.job_id.notin_(busy)))
            query = self._locked(query.order_by(*_URGENT).limit(1))
            try:
                return self._claim_request_with(query, worker_id, when, busy=busy)
            except _JobBusy:
                continue
        return None

    def _locked(self, query: Any) -> Any:
        return query.with_for_update(skip_locked=True) if self.db.dialect.skip_locked else query

    @operation("queue_next_available")
    def next_available(self, queues: Iterable[str] | None = None) -> datetime | None:
        """The earliest ``available_at`` of the requests of ``queues`` (None: of any), whether
        their jobs have room or not; None for an empty queue. An idle queue loop sleeps until
        then, or until the database changes."""
        names = None if queues is None else sorted(queues)
        if names == []:
            return None
        count = None if names is None else len(names)

        def build() -> Any:
            query = select(func.min(QUEUE.c.available_at, type_=QUEUE.c.available_at.type))
            if count is not None:
                query = query.where(QUEUE.c.queue.in_([bindparam(f"q{i}") for i in range(count)]))
            return query

        values = {f"q{i}": name for i, name in enumerate(names or ())}
        rows = self.db.fetch(self.db.prepare(("queue_next_available", count), build), values)
        return as_utc(rows[0][0]) if rows and rows[0][0] is not None else None

    def _anything_available(self, now: datetime, names: list[str] | None) -> bool:
        count = None if names is None else len(names)

        def build() -> Any:
            query = select(QUEUE.c.id).where(
                QUEUE.c.available_at <= bindparam("now", type_=QUEUE.c.available_at.type), _job_has_room()
            )
            if count is not None:
                query = query.where(QUEUE.c.queue.in_([bindparam(f"q{i}") for i in range(count)]))
            return query.limit(1)

        values: dict[str, Any] = {"now": now}
        values.update({f"q{i}": name for i, name in enumerate(names or ())})
        return bool(self.db.fetch(self.db.prepare(("queue_available", count), build), values))

    def _claim_request_mysql(
        self, worker_id: str, now: datetime, names: list[str] | None
    ) -> tuple[RunRequest, JobExecutionRecord] | None:
        """InnoDB locks every row a locking read examines: ``ORDER BY ... LIMIT 1 FOR UPDATE``
        sorts the whole queue and so locks all of it, and every other claimer, skipping locked
        rows, finds the queue empty. So: read the most urgent ids without locks, then lock them
        one at a time by primary key (SKIP LOCKED) until one is ours."""
        tried: list[str] = []
        busy: list[str] = []
        for _ in range(5):
            query = select(QUEUE.c.id, QUEUE.c.job_id).where(QUEUE.c.available_at <= now, _job_has_room())
            if names is not None:
                query = query.where(QUEUE.c.queue.in_(names))
            if tried:
                query = query.where(QUEUE.c.id.notin_(tried))
            with self.db.read() as conn:
                candidates = conn.execute(query.order_by(*_URGENT).limit(20)).all()
            for candidate, job_id in candidates:
                tried.append(candidate)
                if job_id in busy:
                    continue
                try:
                    got = self._claim_request_with(
                        select(QUEUE)
                        .where(and_(QUEUE.c.id == candidate, QUEUE.c.available_at <= now))
                        .with_for_update(skip_locked=True),
                        worker_id,
                        now,
                        busy=busy,
                    )
                except _JobBusy:
                    continue
                if got is not None:
                    return got
            if len(candidates) < 20:
                return None
        return None

    def _claim_request_with(
        self, query: Any, worker_id: str, now: datetime, *, busy: list[str] | None = None
    ) -> tuple[RunRequest, JobExecutionRecord] | None:
        """Claim the request ``query`` selects (and locks), if any. A request whose job has no
        room is left in the queue: None, or, with ``busy`` given, :class:`_JobBusy` after its
        job is added to ``busy`` (the caller looks for another request)."""
        with self.db.write() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            request = RunRequest.model_construct(**row)
            if request.job_id is not None:
                # Not waiting for the job's row: a claim holding it decides first (and this
                # transaction holds the request's row, which a job edit may be waiting for).
                cursor = conn.connection.cursor()
                try:
                    room = self._room(RawTransaction(cursor), request.job_id, wait=False)
                finally:
                    cursor.close()
                if room is None or room.free <= 0:
                    if busy is None:
                        return None  # left in the queue for when a run of its job has ended
                    busy.append(request.job_id)
                    raise _JobBusy()
            conn.execute(delete(QUEUE).where(QUEUE.c.id == request.id))
            execution = JobExecutionRecord(
                id=request.execution_id,
                job_id=request.job_id,
                pipeline=request.pipeline,
                start_time=now,
                status=Status.running.value,
                triggered_by=request.triggered_by,
                attempt=request.attempt,
                worker_id=worker_id,
                # A retry's fire keeps its run key on the first attempt; this row has none.
                context={},
                steps=[],
                updated_at=now,
            )
            conn.execute(insert(EXECUTIONS), values_of(execution, EXECUTIONS))
        return request, execution


class FireBatch(NamedTuple):
    """One job's part of :meth:`RunStore.claim_batch`: its fires to record missed, its fires to
    run, and its next fire time (the job's ``next_run`` once this is claimed)."""

    missed: list[JobExecutionRecord]
    run: list[JobExecutionRecord]
    next_run: datetime


class BatchClaim(NamedTuple):
    """What :meth:`RunStore.claim_batch` did for one job: the missed and to-run executions this
    caller owns, and the job's room when counted (None: the job is gone, or ``held``: another
    transaction had its row locked, and nothing of it was written)."""

    missed: list[JobExecutionRecord]
    run: list[JobExecutionRecord]
    room: JobRoom | None
    held: bool = False


#: Most ids in one ``IN`` list of a batch (a batch of more is read in several statements).
_CHUNK = 512


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _padded(ids: list[str]) -> dict[str, Any]:
    """``ids`` as the values of a statement with a power-of-two number of ``IN`` parameters,
    the last id repeated to fill it: a handful of prepared statements serve every batch size."""
    size = 1
    while size < len(ids):
        size *= 2
    return {f"k{i}": ids[min(i, len(ids) - 1)] for i in range(size)}


_URGENT = (QUEUE.c.priority.desc(), QUEUE.c.available_at, QUEUE.c.id)


class _JobBusy(Exception):
    """The request's job has no room now (its claim's transaction is rolled back)."""


def _job_has_room() -> Any:
    """A request's condition to be worth claiming: no job, or a job with fewer queued/running
    executions than its ``max_concurrent`` (checked again, locked, by the claim itself)."""
    active = (
        select(func.count())
        .where(and_(EXECUTIONS.c.job_id == JOBS.c.id, one_of(EXECUTIONS.c.status, UNFINISHED)))
        .scalar_subquery()
    )
    return ~select(JOBS.c.id).where(and_(JOBS.c.id == QUEUE.c.job_id, JOBS.c.max_concurrent <= active)).exists()


def _error_code(exc: BaseException) -> Any:
    args = getattr(getattr(exc, "orig", exc), "args", None)
    return args[0] if args else None
