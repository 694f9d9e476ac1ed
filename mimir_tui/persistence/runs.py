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

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select

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
