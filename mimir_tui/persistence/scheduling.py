"""What the scheduler needs of the database: exactly-once fires, workers and heartbeats,
stale-run recovery, and the run queue. Mixed into :class:`PersistenceBackend`.

- A fire is claimed by inserting its execution with the run key ``(job_id, scheduled_for)``
  and "on conflict do nothing": the instance whose insert lands runs it; the others see 0 rows.
- Queued runs are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and
  MariaDB, and inside ``BEGIN IMMEDIATE`` on SQLite (one writer at a time).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Table, and_, case, delete, func, insert, literal, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError

from .models import JobExecutionRecord, RunRequest, ScheduledJob, Worker
from .types import as_utc, sqlite_datetime_text, utcnow

WORKERS: Table = Worker.__table__  # type: ignore[attr-defined]
QUEUE: Table = RunRequest.__table__  # type: ignore[attr-defined]
EXECUTIONS: Table = JobExecutionRecord.__table__  # type: ignore[attr-defined]
JOBS: Table = ScheduledJob.__table__  # type: ignore[attr-defined]

LIVE_WORKER = ("running", "stopping")
UNFINISHED = ("queued", "running")

#: ``set_job_schedule(next_run=UNCHANGED)``: leave the column as it is.
UNCHANGED = object()


def _is_duplicate(exc: IntegrityError) -> bool:
    code = getattr(getattr(exc, "orig", None), "args", [None])[0]
    return code == 1062  # MySQL/MariaDB ER_DUP_ENTRY


class SchedulingMixin:
    """Requires ``_write``, ``_read``, ``dialect`` and the ``_operation`` decorator's metrics."""

    # The decorator lives in backend.py; methods here are wrapped there (see backend.py).

    # -- fires ----------------------------------------------------------------------------

    def claim_fire(self, execution: JobExecutionRecord) -> bool:
        """Insert the execution of a scheduled fire unless its ``(job_id, scheduled_for)`` exists.

        True: this caller owns the fire (and the row). False: another instance had it already.
        """
        if getattr(self, "_direct", None) is not None:
            return bool(self._sqlite_insert_fires([execution]))
        with self._write() as conn:  # type: ignore[attr-defined]
            return bool(self._insert_fires(conn, [execution]))

    def claim_fires(self, executions: list[JobExecutionRecord]) -> list[JobExecutionRecord]:
        """:meth:`claim_fire` for many fires in one transaction (e.g. the missed fires of a long
        downtime); returns the executions this caller owns, in the order given."""
        if not executions:
            return []
        if getattr(self, "_direct", None) is not None:
            return self._sqlite_insert_fires(executions)
        with self._write() as conn:  # type: ignore[attr-defined]
            return self._insert_fires(conn, executions)

    # SQLite: the scheduler's per-fire statements on the direct sqlite3 path (direct.py), a
    # few tens of microseconds each instead of some 300-400 us through SQLAlchemy Core: with
    # 1,000 jobs due at once, that is the difference between a fire lag of seconds and of
    # a few hundred milliseconds (bench/scheduler.py).

    def _sqlite_insert_fires(self, executions: list[JobExecutionRecord]) -> list[JobExecutionRecord]:
        for execution in executions:
            if execution.job_id is None or execution.scheduled_for is None:
                raise ValueError("a scheduled fire needs job_id and scheduled_for")
        sql = self._sqlite_sql.get("claim_fire")  # type: ignore[attr-defined]
        if sql is None:
            names = [c.name for c in EXECUTIONS.columns]
            sql = self._sqlite_sql["claim_fire"] = (  # type: ignore[attr-defined]
                f"INSERT INTO {EXECUTIONS.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
                f"ON CONFLICT DO NOTHING"
            )
        now = utcnow()
        rows = []
        for execution in executions:
            execution.updated_at = now
            rows.append(self._execution_params(execution))  # type: ignore[attr-defined]
        landed: list[JobExecutionRecord] = []
        with self._sqlite_write() as conn:  # type: ignore[attr-defined]
            for execution, row in zip(executions, rows):
                if conn.execute(sql, row).rowcount == 1:
                    landed.append(execution)
        return landed

    def _insert_fires(self, conn: Any, executions: list[JobExecutionRecord]) -> list[JobExecutionRecord]:
        for execution in executions:
            if execution.job_id is None or execution.scheduled_for is None:
                raise ValueError("a scheduled fire needs job_id and scheduled_for")
        now = utcnow()
        landed: list[JobExecutionRecord] = []
        if self.dialect in ("sqlite", "postgresql"):  # type: ignore[attr-defined]
            if self.dialect == "sqlite":  # type: ignore[attr-defined]
                from sqlalchemy.dialects.sqlite import insert as dialect_insert
            else:
                from sqlalchemy.dialects.postgresql import insert as dialect_insert
            # preserve_rowcount: SQLAlchemy 2 keeps an INSERT's rowcount only when asked (without
            # it psycopg reports -1, and a fire this instance won would look lost).
            stmt = dialect_insert(EXECUTIONS).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
            for execution in executions:
                execution.updated_at = now
                values = {c.name: getattr(execution, c.name) for c in EXECUTIONS.columns}
                if conn.execute(stmt, values).rowcount == 1:
                    landed.append(execution)
            return landed
        for execution in executions:
            execution.updated_at = now
            values = {c.name: getattr(execution, c.name) for c in EXECUTIONS.columns}
            try:
                with conn.begin_nested():
                    conn.execute(insert(EXECUTIONS), values)
            except IntegrityError as exc:
                if _is_duplicate(exc):
                    continue
                raise
            landed.append(execution)
        return landed

    def count_running(self, job_id: str) -> int:
        """Executions of the job that are queued or running, on any instance."""
        if getattr(self, "_direct", None) is not None:
            sql = (f"SELECT count(*) FROM {EXECUTIONS.name} WHERE job_id = ? "
                   f"AND status IN ('queued', 'running')")
            return int(self._direct.read(sql, (job_id,))[0][0])  # type: ignore[attr-defined]
        with self._read() as conn:  # type: ignore[attr-defined]
            return conn.execute(
                select(func.count()).select_from(EXECUTIONS).where(
                    and_(EXECUTIONS.c.job_id == job_id, EXECUTIONS.c.status.in_(("queued", "running")))
                )
            ).scalar_one()

    def set_job_schedule(
        self,
        job_id: str,
        *,
        next_run: datetime | None | object = UNCHANGED,
        last_run: datetime | None = None,
        last_result: str | None = None,
    ) -> bool:
        """Record fire times without touching ``updated_at`` (which signals an edit).

        ``next_run`` is written only while the job is enabled (a job disabled meanwhile keeps
        NULL: the scheduler's write never undoes an operator's disable)."""
        if getattr(self, "_direct", None) is not None:
            if next_run is UNCHANGED and last_run is None and last_result is None:
                return False
            return self._sqlite_set_job_schedule(job_id, next_run, last_run, last_result)
        values: dict[str, Any] = {}
        if next_run is not UNCHANGED:
            when = as_utc(next_run)  # type: ignore[arg-type]
            values["next_run"] = (
                case((JOBS.c.enabled == true(), literal(when, JOBS.c.next_run.type)), else_=None)
                if when is not None else None
            )
        if last_run is not None:
            values["last_run"] = as_utc(last_run)
        if last_result is not None:
            values["last_result"] = last_result
        if not values:
            return False
        with self._write() as conn:  # type: ignore[attr-defined]
            return conn.execute(update(JOBS).where(JOBS.c.id == job_id).values(**values)).rowcount == 1

    def _sqlite_set_job_schedule(self, job_id: str, next_run: Any, last_run: datetime | None,
                                 last_result: str | None) -> bool:
        """set_job_schedule on the direct path: the same UPDATE as a prepared string."""
        sets: list[str] = []
        params: list[Any] = []
        if next_run is not UNCHANGED:
            if next_run is None:
                sets.append("next_run = NULL")
            else:
                sets.append("next_run = CASE WHEN enabled = 1 THEN ? ELSE NULL END")
                params.append(sqlite_datetime_text(as_utc(next_run)))  # type: ignore[arg-type]
        if last_run is not None:
            sets.append("last_run = ?")
            params.append(sqlite_datetime_text(as_utc(last_run)))
        if last_result is not None:
            sets.append("last_result = ?")
            params.append(last_result)
        sql = f"UPDATE {JOBS.name} SET {', '.join(sets)} WHERE id = ?"
        with self._sqlite_write() as conn:  # type: ignore[attr-defined]
            return conn.execute(sql, (*params, job_id)).rowcount == 1

    def jobs_signature(self) -> tuple[int, datetime | None]:
        """``(count, latest updated_at)`` of the jobs table: it changes whenever a job is added,
        edited, enabled, disabled or deleted, by anyone."""
        with self._read() as conn:  # type: ignore[attr-defined]
            row = conn.execute(select(func.count(), func.max(JOBS.c.updated_at)).select_from(JOBS)).one()
        latest = row[1]
        if isinstance(latest, str):  # SQLite's MAX() loses the column type
            latest = datetime.fromisoformat(latest)
        return int(row[0]), as_utc(latest)

    # -- workers --------------------------------------------------------------------------

    def database_now(self) -> datetime:
        """The database server's clock, in UTC. Heartbeats are written and judged on it, so
        instances on machines whose clocks disagree do not take each other for dead. (SQLite:
        this machine's clock; every instance runs on this machine.)"""
        if self.dialect == "sqlite":  # type: ignore[attr-defined]
            return utcnow()
        sql = "SELECT CURRENT_TIMESTAMP" if self.dialect == "postgresql" else "SELECT UTC_TIMESTAMP(6)"  # type: ignore[attr-defined]
        with self._read() as conn:  # type: ignore[attr-defined]
            return as_utc(conn.execute(text(sql)).scalar())

    def register_worker(self, worker: Worker) -> Worker:
        now = None if worker.started_at and worker.heartbeat_at else self.database_now()
        worker.started_at = as_utc(worker.started_at) or now
        worker.heartbeat_at = as_utc(worker.heartbeat_at) or now
        with self._write() as conn:  # type: ignore[attr-defined]
            conn.execute(insert(WORKERS), {c.name: getattr(worker, c.name) for c in WORKERS.columns})
        return worker

    def heartbeat(self, worker_id: str, *, now: datetime | None = None, status: str | None = None,
                  revive: bool = False, load: tuple[int, int] | None = None) -> bool:
        """Refresh the heartbeat. False if the row is gone or was declared dead by a peer.

        ``revive``: also bring back a row a peer declared dead (its runs stay interrupted).
        ``load``: (run slots, slots taken), for peers deciding who takes a fire."""
        values: dict[str, Any] = {"heartbeat_at": as_utc(now) or self.database_now()}
        if status is not None:
            values["status"] = status
        if load is not None:
            values["capacity"], values["running"] = load
        condition = WORKERS.c.id == worker_id
        if not revive:
            condition = and_(condition, WORKERS.c.status.in_(LIVE_WORKER))
        with self._write() as conn:  # type: ignore[attr-defined]
            result = conn.execute(update(WORKERS).where(condition).values(**values))
        return result.rowcount == 1

    def list_workers(self) -> list[dict[str, Any]]:
        with self._read() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(select(WORKERS).order_by(WORKERS.c.started_at)).mappings()
            return [dict(r) for r in rows]

    def live_workers(self, *, stale_after: float, now: datetime | None = None) -> list[dict[str, Any]]:
        cutoff = (as_utc(now) or self.database_now()) - timedelta(seconds=stale_after)
        return [
            w for w in self.list_workers()
            if w["status"] in LIVE_WORKER and as_utc(w["heartbeat_at"]) >= cutoff
        ]

    def interrupt_runs(self, worker_ids: list[str], reason: str, *, now: datetime | None = None) -> list[JobExecutionRecord]:
        """Mark the ``queued``/``running`` executions of these workers ``interrupted``; returns
        those this call changed (not a run that finished meanwhile: its retry must not be
        queued)."""
        if not worker_ids:
            return []
        return self._interrupt_where(EXECUTIONS.c.worker_id.in_(worker_ids), reason, now)

    def interrupt_executions(self, execution_ids: list[str], reason: str, *,
                             now: datetime | None = None) -> list[JobExecutionRecord]:
        """Mark these executions ``interrupted`` if they are still queued or running; returns
        those this call changed."""
        if not execution_ids:
            return []
        return self._interrupt_where(EXECUTIONS.c.id.in_(execution_ids), reason, now)

    def _interrupt_where(self, condition: Any, reason: str, now: datetime | None) -> list[JobExecutionRecord]:
        now = as_utc(now) or utcnow()
        with self._write() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                select(EXECUTIONS).where(and_(condition, EXECUTIONS.c.status.in_(UNFINISHED)))
            ).mappings().all()
            return self._interrupt_rows(conn, rows, reason, now)

    def unfinished_run_ids(self, worker_id: str) -> list[str]:
        """Ids of the executions of ``worker_id`` that are queued or running."""
        with self._read() as conn:  # type: ignore[attr-defined]
            return list(conn.execute(
                select(EXECUTIONS.c.id).where(
                    and_(EXECUTIONS.c.worker_id == worker_id, EXECUTIONS.c.status.in_(UNFINISHED))
                )
            ).scalars().all())

    def sweep_orphaned_runs(self, *, stale_after: float, now: datetime | None = None) -> list[JobExecutionRecord]:
        """Interrupt queued/running executions that no live worker owns: no ``worker_id`` (a
        process that ran them without registering), an unknown one, or a worker that is
        ``dead`` or ``stopped`` (e.g. a reaper that crashed between marking a worker dead and
        interrupting its runs), untouched for ``stale_after`` seconds. Returns those changed.

        Runs of a live worker (status running/stopping) are never touched here; a live worker
        whose heartbeat went stale is :meth:`reap_stale_workers`' business."""
        now = as_utc(now) or self.database_now()
        cutoff = now - timedelta(seconds=stale_after)
        live = select(WORKERS.c.id).where(WORKERS.c.status.in_(LIVE_WORKER))
        orphan = and_(
            EXECUTIONS.c.status.in_(UNFINISHED),
            or_(EXECUTIONS.c.worker_id.is_(None), EXECUTIONS.c.worker_id.not_in(live)),
            func.coalesce(EXECUTIONS.c.updated_at, EXECUTIONS.c.start_time, type_=EXECUTIONS.c.updated_at.type) < cutoff,
        )
        with self._read() as conn:  # type: ignore[attr-defined]
            # A read first: on SQLite the common case (nothing to sweep) takes no write lock.
            if not conn.execute(select(EXECUTIONS.c.id).where(orphan).limit(1)).first():
                return []
        with self._write() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(select(EXECUTIONS).where(orphan)).mappings().all()
            return self._interrupt_rows(
                conn, rows, "interrupted: no live instance was running it", now, guard=orphan
            )

    def _interrupt_rows(self, conn: Any, rows: Any, reason: str, now: datetime,
                        guard: Any = None) -> list[JobExecutionRecord]:
        """The guarded UPDATE of each row to ``interrupted``; the rows it changed, as records.
        A row that finished since it was read (its UPDATE matches nothing) is left out."""
        from .backend import _execution  # the fast row -> model factory

        out = []
        for row in rows:
            start = as_utc(row["start_time"])
            condition = and_(EXECUTIONS.c.id == row["id"], EXECUTIONS.c.status.in_(UNFINISHED))
            if guard is not None:
                condition = and_(condition, guard)
            changed = conn.execute(
                update(EXECUTIONS)
                .where(condition)
                .values(
                    status="interrupted",
                    end_time=now,
                    # capped to the column's 32 bits: a run stuck for weeks must not break the sweep
                    duration=min(max(0, int((now - start).total_seconds() * 1000)), 2**31 - 1) if start else None,
                    error=reason,
                    updated_at=now,
                )
                .execution_options(preserve_rowcount=True)
            ).rowcount
            if changed != 1:
                continue
            record = _execution(dict(row))
            record.status = "interrupted"
            record.error = reason
            record.end_time = now
            out.append(record)
        return out

    def reap_stale_workers(self, *, stale_after: float, now: datetime | None = None,
                           also: list[str] | None = None) -> tuple[list[str], list[JobExecutionRecord]]:
        """Declare workers whose heartbeat is older than ``stale_after`` seconds dead (plus the
        ids in ``also``, e.g. this host's crashed predecessors) and interrupt their runs.

        A live worker's runs are never touched: the status change is a compare-and-set on the
        stale heartbeat, so a worker that heartbeats meanwhile keeps its runs.

        Two transactions (mark dead, then interrupt): if the reaper dies in between, the dead
        worker's runs are picked up by :meth:`sweep_orphaned_runs` (Scheduler.beat calls both)."""
        now = as_utc(now) or self.database_now()
        cutoff = now - timedelta(seconds=stale_after)
        dead: list[str] = []
        with self._write() as conn:  # type: ignore[attr-defined]
            candidates = conn.execute(
                select(WORKERS.c.id, WORKERS.c.heartbeat_at).where(WORKERS.c.status.in_(LIVE_WORKER))
            ).all()
            for worker_id, beat in candidates:
                if as_utc(beat) < cutoff or (also and worker_id in also):
                    condition = WORKERS.c.id == worker_id
                    if not (also and worker_id in also):
                        condition = and_(condition, WORKERS.c.heartbeat_at < cutoff)
                    changed = conn.execute(
                        update(WORKERS).where(and_(condition, WORKERS.c.status.in_(LIVE_WORKER))).values(status="dead")
                    ).rowcount
                    if changed:
                        dead.append(worker_id)
        interrupted = self.interrupt_runs(
            dead, "interrupted: the instance running it stopped heartbeating", now=now
        ) if dead else []
        return dead, interrupted

    def prune_workers(self, *, older_than: datetime) -> int:
        """Forget stopped and dead workers last seen before ``older_than``."""
        with self._write() as conn:  # type: ignore[attr-defined]
            return conn.execute(
                delete(WORKERS).where(
                    and_(WORKERS.c.status.notin_(LIVE_WORKER), WORKERS.c.heartbeat_at < as_utc(older_than))
                )
            ).rowcount

    # -- the queue ------------------------------------------------------------------------

    def enqueue(self, request: RunRequest) -> RunRequest:
        """Queue a run. Its times are the database's (as the schedulers' clocks are): a run
        asked for from a machine whose clock is off is available at once all the same, unless
        ``available_at`` was given."""
        request.created_at = self.database_now()
        given = "available_at" in request.model_fields_set and request.available_at is not None
        request.available_at = as_utc(request.available_at) if given else request.created_at
        with self._write() as conn:  # type: ignore[attr-defined]
            if request.job_id is not None:
                # The job's queue as it is now (the row locked: an edit moving the job to another
                # queue, which moves its queued runs, comes wholly before or after this insert).
                query = select(JOBS.c.queue).where(JOBS.c.id == request.job_id)
                if self.dialect != "sqlite":  # type: ignore[attr-defined]
                    query = query.with_for_update()
                queue = conn.execute(query).scalar()
                if queue is not None:
                    request.queue = queue
            conn.execute(insert(QUEUE), {c.name: getattr(request, c.name) for c in QUEUE.columns})
        return request

    def list_queue(self) -> list[RunRequest]:
        from .backend import _request

        with self._read() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                select(QUEUE).order_by(QUEUE.c.priority.desc(), QUEUE.c.available_at, QUEUE.c.id)
            ).mappings()
            return [_request(dict(r)) for r in rows]

    def claim_request(
        self, worker_id: str, *, now: datetime | None = None, request_id: str | None = None,
        queues: Iterable[str] | None = None,
    ) -> tuple[RunRequest, JobExecutionRecord] | None:
        """Take the most urgent available request (or the one named) and turn it into a
        ``running`` execution owned by ``worker_id``, in one transaction. None: nothing to do.
        ``queues``: take only a request of one of these (None: of any)."""
        now = as_utc(now) or utcnow()
        order = (QUEUE.c.priority.desc(), QUEUE.c.available_at, QUEUE.c.id)
        names = None if queues is None else sorted(queues)
        if names == []:
            return None
        if request_id is not None:
            query = select(QUEUE).where(QUEUE.c.id == request_id)
        elif self.dialect == "mysql":  # type: ignore[attr-defined]
            return self._claim_request_mysql(worker_id, now, order, names)
        else:
            if getattr(self, "_direct", None) is not None and not self._direct.read(  # type: ignore[attr-defined]
                f"SELECT 1 FROM {QUEUE.name} WHERE available_at <= ?"
                + ("" if names is None else f" AND queue IN ({', '.join('?' * len(names))})") + " LIMIT 1",
                (sqlite_datetime_text(now), *(names or ())),
            ):
                # SQLite: an empty queue (every poll, twice a second, when idle) costs a read,
                # not the database's one write lock.
                return None
            query = select(QUEUE).where(QUEUE.c.available_at <= now)
            if names is not None:
                query = query.where(QUEUE.c.queue.in_(names))
            query = query.order_by(*order).limit(1)
        if self.dialect != "sqlite":  # type: ignore[attr-defined]
            query = query.with_for_update(skip_locked=True)
        return self._claim_request_with(query, worker_id, now)

    def _claim_request_mysql(self, worker_id: str, now: datetime, order: tuple,
                             names: list[str] | None) -> tuple[RunRequest, JobExecutionRecord] | None:
        """InnoDB locks every row a locking read examines: ``ORDER BY ... LIMIT 1 FOR UPDATE``
        sorts the whole queue and so locks all of it, and every other claimer, skipping locked
        rows, finds the queue empty. So: read the most urgent ids without locks, then lock them
        one at a time by primary key (SKIP LOCKED) until one is ours."""
        tried: list[str] = []
        for _ in range(5):
            query = select(QUEUE.c.id).where(QUEUE.c.available_at <= now)
            if names is not None:
                query = query.where(QUEUE.c.queue.in_(names))
            if tried:
                query = query.where(QUEUE.c.id.notin_(tried))
            with self._read() as conn:  # type: ignore[attr-defined]
                candidates = conn.execute(query.order_by(*order).limit(20)).scalars().all()
            for candidate in candidates:
                got = self._claim_request_with(
                    select(QUEUE).where(and_(QUEUE.c.id == candidate, QUEUE.c.available_at <= now))
                    .with_for_update(skip_locked=True),
                    worker_id, now,
                )
                if got is not None:
                    return got
                tried.append(candidate)
            if len(candidates) < 20:
                return None
        return None

    def _claim_request_with(self, query: Any, worker_id: str, now: datetime) -> tuple[RunRequest, JobExecutionRecord] | None:
        from .backend import _request

        with self._write() as conn:  # type: ignore[attr-defined]
            row = conn.execute(query).mappings().first()
            if row is None:
                return None
            request = _request(dict(row))
            conn.execute(delete(QUEUE).where(QUEUE.c.id == request.id))
            execution = JobExecutionRecord(
                id=request.execution_id,
                job_id=request.job_id,
                pipeline=request.pipeline,
                start_time=now,
                status="running",
                triggered_by=request.triggered_by,
                attempt=request.attempt,
                worker_id=worker_id,
                # A retry's fire keeps its run key on the first attempt; this row has none.
                context={},
                steps=[],
                updated_at=now,
            )
            conn.execute(insert(EXECUTIONS), {c.name: getattr(execution, c.name) for c in EXECUTIONS.columns})
        return request, execution
