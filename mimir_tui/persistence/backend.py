"""The seed's ``PersistenceBackend`` on SQLModel: one implementation for SQLite, PostgreSQL and
MySQL/MariaDB.

Every method is a plain synchronous call, safe from several threads (each call takes its own
pooled connection). Async code calls them in a thread. Every call is counted and timed in
:attr:`PersistenceBackend.metrics`; a failed call is logged with its operation name.

On SQLite the hot calls (save_execution, get_execution, list_executions,
delete_old_executions) run on plain sqlite3 connections with precompiled SQL (direct.py), and
this process's writers of one file queue on a FIFO lock; PostgreSQL and MySQL take the
SQLAlchemy path. Both paths write and read the same values (bench/store.py measures them).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from sqlalchemy import Connection, Engine, Table, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ..config import PersistenceSettings
from ..errors import Conflict, MimirError, NotFound, PersistenceError
from . import direct
from .engine import WRITE, display_url, restrict_file_modes, scrub
from .metrics import OperationMetrics
from .scheduling import QUEUE, SchedulingMixin
from .models import FINISHED, JobExecutionRecord, PipelineConfig, RunRequest, ScheduledJob
from .types import as_utc, sqlite_datetime_text, utcnow

log = logging.getLogger("mimir.persistence")

JOBS: Table = ScheduledJob.__table__  # type: ignore[attr-defined]
PIPELINES: Table = PipelineConfig.__table__  # type: ignore[attr-defined]
EXECUTIONS: Table = JobExecutionRecord.__table__  # type: ignore[attr-defined]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Executions still in flight are never removed by retention.
UNFINISHED = ("queued", "running")


def _operation(name: str) -> Callable[[F], F]:
    """Count and time the call; turn driver errors into one-line :class:`PersistenceError`."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(self: "PersistenceBackend", *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            ok = False
            try:
                result = fn(self, *args, **kwargs)
                ok = True
                return result
            except MimirError as exc:
                ok = isinstance(exc, NotFound)  # a lookup that finds nothing is not a failure
                if not ok:
                    log.warning("persistence operation %s failed: %s", name, exc)
                raise
            except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: the direct SQLite paths
                message = self._describe(exc)
                log.error("persistence operation %s failed: %s", name, message)
                raise PersistenceError(f"{name} failed: {message}") from None
            finally:
                self.metrics.record(name, time.perf_counter() - start, ok)

        return inner  # type: ignore[return-value]

    return wrap


def _model_factory(model: type[T]) -> Callable[[dict[str, Any]], T]:
    """Build model instances from row mappings without re-validating what the database returned.

    A SQLModel table model validates in ``__init__`` (about 90 us a row); rows from our own
    tables are already typed, so they go straight into an instance (about 1 us).
    """
    from sqlalchemy.orm import configure_mappers

    # Instances made without __init__ need configured mappers (else attribute access fails in a
    # process that reads rows before it ever built a model instance).
    configure_mappers()
    fields = frozenset(model.model_fields)  # type: ignore[attr-defined]
    new = object.__new__
    setattr_ = object.__setattr__

    def build(values: dict[str, Any]) -> T:
        obj = new(model)
        setattr_(obj, "__dict__", values)  # SQLAlchemy state comes on first write (_LazyState)
        setattr_(obj, "__pydantic_fields_set__", set(fields))
        setattr_(obj, "__pydantic_extra__", None)
        setattr_(obj, "__pydantic_private__", None)
        return obj

    return build


_job = _model_factory(ScheduledJob)
_pipeline = _model_factory(PipelineConfig)
_execution = _model_factory(JobExecutionRecord)
_request = _model_factory(RunRequest)


@contextmanager
def _sqlite_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on a plain sqlite3 connection; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        direct.rollback_quietly(conn)
        raise


#: Columns of ``scheduled_jobs`` that only the scheduler writes (``set_job_schedule``).
SCHEDULER_OWNED = ("last_run", "last_result")


def _values(obj: Any, table: Table) -> dict[str, Any]:
    return {c.name: getattr(obj, c.name) for c in table.columns}


class PersistenceBackend(SchedulingMixin):
    """Jobs, pipelines and execution history in one relational database."""

    def __init__(self, engine: Engine, settings: PersistenceSettings) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(**WRITE)
        self.settings = settings
        self.backend = settings.backend
        self.dialect = engine.dialect.name
        self.url = display_url(settings)
        self.metrics = OperationMetrics()
        self._closed = False
        self._lock = threading.Lock()
        # Batches of retention deletes are sized to hold the write lock about this long each
        # (commit included), so a concurrent SQLite writer waits about that long at most
        # (bench/store.py: under 250 ms). Smaller batches cost more commits.
        self.delete_batch_target_s = 0.08
        # SQLite: the hot paths on plain sqlite3 connections (see direct.py), and one FIFO
        # queue for this process's writers of the file.
        self._direct: direct.Connections | None = None
        self._write_lock: direct.FairLock | None = None
        if self.dialect == "sqlite":
            self._direct = direct.Connections(engine, settings.pool_size)
            self._write_lock = direct.write_lock(settings.database_path, settings.busy_timeout_ms)
            self._sqlite_sql: dict[Any, str] = {}
            self._execution_params = direct.bind_params(EXECUTIONS, engine.dialect)
            self._execution_rows = direct.row_builder(JobExecutionRecord, EXECUTIONS, engine.dialect)

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
        if self._write_lock is not None:
            with self._write_lock:
                if not self._write_lock.deferring:
                    with self._write_engine.begin() as conn:
                        yield conn
                    return
                with self._write_engine.connect() as conn:  # a retention run checkpoints for us
                    with direct.autocheckpoint_off(conn.connection.driver_connection), conn.begin():
                        yield conn
            return
        with self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _sqlite_write(self) -> Iterator[sqlite3.Connection]:
        """The direct path's write transaction: BEGIN IMMEDIATE on a plain sqlite3 connection,
        committed on success, rolled back on any error."""
        assert self._direct is not None and self._write_lock is not None
        with self._write_lock:
            conn = self._direct.acquire()
            try:
                if self._write_lock.deferring:  # a retention run checkpoints for us
                    with direct.autocheckpoint_off(conn), _sqlite_transaction(conn):
                        yield conn
                else:
                    with _sqlite_transaction(conn):
                        yield conn
            finally:
                self._direct.release(conn)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _describe(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None) or exc
        text_ = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return scrub(text_, self.settings)

    # -- jobs -----------------------------------------------------------------------------

    @_operation("save_job")
    def save_job(self, job: ScheduledJob) -> ScheduledJob:
        # The database's clock: the schedulers see an edit by the latest updated_at, which a
        # machine whose clock runs slow would otherwise write in the past.
        now = self.database_now()
        job.created_at = as_utc(job.created_at) or now
        job.updated_at = now
        try:
            with self._write() as conn:
                conn.execute(insert(JOBS), _values(job, JOBS))
        except IntegrityError:
            raise Conflict(f"job {job.id!r} already exists") from None
        return job

    @_operation("get_job")
    def get_job(self, job_id: str) -> ScheduledJob:
        with self._read() as conn:
            row = conn.execute(select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found")
        return _job(dict(row))

    @_operation("list_jobs")
    def list_jobs(self, *, enabled: bool | None = None) -> list[ScheduledJob]:
        query = select(JOBS).order_by(JOBS.c.name, JOBS.c.id)
        if enabled is not None:
            query = query.where(JOBS.c.enabled == enabled)
        with self._read() as conn:
            return [_job(dict(r)) for r in conn.execute(query).mappings()]

    @_operation("delete_job")
    def delete_job(self, job_id: str) -> None:
        with self._write() as conn:
            result = conn.execute(delete(JOBS).where(JOBS.c.id == job_id))
        if result.rowcount == 0:
            raise NotFound(f"job {job_id!r} not found")

    @_operation("update_job")
    def update_job(self, job: ScheduledJob, *, fields: Iterable[str] | None = None) -> ScheduledJob:
        """Write an edit of the job (and a new ``updated_at``).

        ``last_run`` and ``last_result`` belong to the scheduler and are never written here
        (only by :meth:`set_job_schedule`): an edit made from a copy loaded before a fire must
        not put back the older values. ``fields`` limits the write to those columns; give it
        whenever the job was loaded earlier, so that ``next_run`` (which the scheduler also
        writes) is written only if the caller changed it. Without ``fields`` every other
        column is written, ``next_run`` included. A new ``queue`` moves the job's queued runs
        with it (in the same transaction)."""
        job.updated_at = self.database_now()  # see save_job
        values = _values(job, JOBS)
        for key in ("id", "created_at", *SCHEDULER_OWNED):
            values.pop(key)
        if fields is not None:
            wanted = set(fields)
            owned = wanted & set(SCHEDULER_OWNED)
            if owned:
                raise ValueError(f"{', '.join(sorted(owned))}: written only by set_job_schedule")
            unknown = wanted - set(values)
            if unknown:
                raise ValueError(f"not an editable job column: {', '.join(sorted(unknown))}")
            values = {k: v for k, v in values.items() if k in wanted or k == "updated_at"}
        with self._write() as conn:
            result = conn.execute(update(JOBS).where(JOBS.c.id == job.id).values(**values))
            if result.rowcount and "queue" in values:
                conn.execute(update(QUEUE).where(QUEUE.c.job_id == job.id).values(queue=values["queue"]))
        if result.rowcount == 0:
            raise NotFound(f"job {job.id!r} not found")
        return job

    # -- pipelines ------------------------------------------------------------------------

    @_operation("save_pipeline")
    def save_pipeline(self, pipeline: PipelineConfig) -> PipelineConfig:
        now = utcnow()
        pipeline.created_at = as_utc(pipeline.created_at) or now
        pipeline.updated_at = now
        try:
            with self._write() as conn:
                conn.execute(insert(PIPELINES), _values(pipeline, PIPELINES))
        except IntegrityError:
            raise Conflict(f"pipeline {pipeline.name!r} already exists") from None
        return pipeline

    @_operation("get_pipeline")
    def get_pipeline(self, name: str) -> PipelineConfig:
        with self._read() as conn:
            row = conn.execute(select(PIPELINES).where(PIPELINES.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"pipeline {name!r} not found")
        return _pipeline(dict(row))

    @_operation("list_pipelines")
    def list_pipelines(self) -> list[PipelineConfig]:
        with self._read() as conn:
            rows = conn.execute(select(PIPELINES).order_by(PIPELINES.c.name)).mappings()
            return [_pipeline(dict(r)) for r in rows]

    @_operation("delete_pipeline")
    def delete_pipeline(self, name: str) -> None:
        with self._write() as conn:
            result = conn.execute(delete(PIPELINES).where(PIPELINES.c.name == name))
        if result.rowcount == 0:
            raise NotFound(f"pipeline {name!r} not found")

    @_operation("update_pipeline")
    def update_pipeline(self, pipeline: PipelineConfig) -> PipelineConfig:
        pipeline.updated_at = utcnow()
        values = _values(pipeline, PIPELINES)
        values.pop("name")
        values.pop("created_at")
        with self._write() as conn:
            result = conn.execute(update(PIPELINES).where(PIPELINES.c.name == pipeline.name).values(**values))
        if result.rowcount == 0:
            raise NotFound(f"pipeline {pipeline.name!r} not found")
        return pipeline

    # -- executions -----------------------------------------------------------------------

    @_operation("save_execution")
    def save_execution(self, execution: JobExecutionRecord, *, only_unfinished: bool = False) -> Any:
        """Insert the record, or replace it if its id exists (the engine saves a run as it goes).

        ``cancel_requested`` is never cleared by a save: it belongs to whoever asked to cancel.

        ``only_unfinished``: replace the stored row only while it is still ``queued`` or
        ``running`` (a run must not overwrite the end another instance gave it, e.g. a reaper's
        ``interrupted`` whose retry is queued already); returns True if the record was written,
        False if the row had finished. Without it, returns the record.
        """
        execution.updated_at = utcnow()
        if self._direct is not None:
            applied = self._sqlite_save_execution(execution, only_unfinished)
            return applied if only_unfinished else execution
        values = _values(execution, EXECUTIONS)
        applied = True
        try:
            with self._write() as conn:  # PostgreSQL or MySQL (SQLite took the direct path)
                if self.dialect == "postgresql":
                    result = conn.execute(self._upsert_execution(only_unfinished), values)
                    applied = result.rowcount != 0
                else:
                    changed = {k: v for k, v in values.items() if k not in ("id", "cancel_requested")}
                    condition = EXECUTIONS.c.id == execution.id
                    if only_unfinished:
                        condition = and_(condition, EXECUTIONS.c.status.in_(UNFINISHED))
                    result = conn.execute(update(EXECUTIONS).where(condition).values(**changed))
                    if result.rowcount == 0:
                        exists = only_unfinished and conn.execute(
                            select(EXECUTIONS.c.id).where(EXECUTIONS.c.id == execution.id)
                        ).first() is not None
                        if exists:
                            applied = False  # the row has finished: left as it is
                        else:
                            conn.execute(insert(EXECUTIONS), values)
        except IntegrityError as exc:
            raise Conflict(self._integrity_message(exc, execution)) from None
        return applied if only_unfinished else execution

    def _sqlite_save_execution(self, execution: JobExecutionRecord, only_unfinished: bool = False) -> bool:
        try:
            params = self._execution_params(execution)
        except (TypeError, ValueError, AttributeError) as exc:  # what SQLAlchemy's processors raise
            raise PersistenceError(f"save_execution failed: {exc}") from None
        key = "upsert_unfinished" if only_unfinished else "upsert"
        sql = self._sqlite_sql.get(key)
        if sql is None:
            sql = direct.upsert_sql(EXECUTIONS, "id", keep=("cancel_requested",))
            if only_unfinished:
                sql += f" WHERE {EXECUTIONS.name}.status IN ('queued', 'running')"
            self._sqlite_sql[key] = sql
        try:
            with self._sqlite_write() as conn:
                return conn.execute(sql, params).rowcount != 0
        except sqlite3.IntegrityError as exc:
            raise Conflict(self._integrity_message(exc, execution)) from None

    def _upsert_execution(self, only_unfinished: bool = False):
        cache = self.__dict__.setdefault("_upsert_stmts", {})
        cached = cache.get(only_unfinished)
        if cached is not None:
            return cached
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(EXECUTIONS)
        stmt = stmt.on_conflict_do_update(
            index_elements=[EXECUTIONS.c.id],
            set_={c.name: stmt.excluded[c.name] for c in EXECUTIONS.columns if c.name not in ("id", "cancel_requested")},
            where=EXECUTIONS.c.status.in_(UNFINISHED) if only_unfinished else None,
        ).execution_options(preserve_rowcount=True)
        cache[only_unfinished] = stmt
        return stmt

    def _integrity_message(self, exc: IntegrityError, execution: JobExecutionRecord) -> str:
        message = self._describe(exc)
        lowered = message.lower()
        if "foreign key" in lowered:
            return f"execution {execution.id!r}: job {execution.job_id!r} does not exist"
        if "scheduled_for" in lowered or "run_key" in lowered or "duplicate" in lowered or "unique" in lowered:
            return (
                f"execution {execution.id!r}: job {execution.job_id!r} already has a run scheduled for "
                f"{execution.scheduled_for.isoformat() if execution.scheduled_for else None}"
            )
        return f"execution {execution.id!r}: {message}"

    @_operation("get_execution")
    def get_execution(self, execution_id: str) -> JobExecutionRecord:
        if self._direct is not None:
            sql = self._sqlite_sql.get("get")
            if sql is None:
                sql = self._sqlite_sql["get"] = (
                    f"SELECT {direct.column_list(EXECUTIONS)} FROM {EXECUTIONS.name} WHERE id = ?"
                )
            rows = self._direct.read(sql, (execution_id,))
            if not rows:
                raise NotFound(f"execution {execution_id!r} not found")
            return self._execution_rows(rows)[0]
        with self._read() as conn:
            row = conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id)).mappings().first()
        if row is None:
            raise NotFound(f"execution {execution_id!r} not found")
        return _execution(dict(row))

    @_operation("list_executions")
    def list_executions(
        self,
        job_id: str | None = None,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[JobExecutionRecord]:
        """Newest first. ``job_id`` None lists every job's. ``before`` is a keyset cursor
        ``(start_time, id)`` of the last row of the previous page: paging a million rows stays
        as fast as the first page."""
        if self._direct is not None:
            return self._sqlite_list_executions(job_id, limit, status, before)
        query = select(EXECUTIONS)
        if job_id is not None:
            query = query.where(EXECUTIONS.c.job_id == job_id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            query = query.where(EXECUTIONS.c.status.in_(statuses))
        if before is not None:
            start, last_id = before
            query = query.where(
                or_(
                    EXECUTIONS.c.start_time < start,
                    and_(EXECUTIONS.c.start_time == start, EXECUTIONS.c.id < last_id),
                )
            )
        query = query.order_by(EXECUTIONS.c.start_time.desc(), EXECUTIONS.c.id.desc()).limit(max(0, int(limit)))
        with self._read() as conn:
            return [_execution(dict(r)) for r in conn.execute(query).mappings()]

    def _sqlite_list_executions(
        self, job_id: str | None, limit: int, status: str | Sequence[str] | None, before: tuple[datetime, str] | None
    ) -> list[JobExecutionRecord]:
        """list_executions on SQLite: the same query as the SQLAlchemy one, as a prepared string."""
        params: list[Any] = []
        if job_id is not None:
            params.append(job_id)
        statuses: list[Any] | None = None
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            if not statuses:
                return []  # IN () matches nothing
            params.extend(statuses)
        if before is not None:
            start, last_id = before
            start_text = sqlite_datetime_text(start)
            params.extend((start_text, start_text, last_id))
        params.append(max(0, int(limit)))
        key = (job_id is not None, None if statuses is None else len(statuses), before is not None)
        sql = self._sqlite_sql.get(key)
        if sql is None:
            where = []
            if job_id is not None:
                where.append("job_id = ?")
            if statuses is not None:
                where.append(f"status IN ({', '.join('?' * len(statuses))})")
            if before is not None:
                where.append("(start_time < ? OR (start_time = ? AND id < ?))")
            sql = self._sqlite_sql[key] = (
                f"SELECT {direct.column_list(EXECUTIONS)} FROM {EXECUTIONS.name}"
                + (f" WHERE {' AND '.join(where)}" if where else "")
                + " ORDER BY start_time DESC, id DESC LIMIT ?"
            )
        assert self._direct is not None
        return self._execution_rows(self._direct.read(sql, params))

    @_operation("delete_old_executions")
    def delete_old_executions(self, older_than: datetime, *, batch_size: int = 2000) -> int:
        """Delete finished executions that started before ``older_than``, in short batches.

        Each batch is its own transaction, sized to take about :attr:`delete_batch_target_s`,
        so a concurrent writer waits at most one batch. Returns the number of rows removed.
        """
        cutoff = as_utc(older_than)
        if self._direct is not None:
            return self._sqlite_delete_old_executions(cutoff, max(1, batch_size))
        old = and_(EXECUTIONS.c.start_time < cutoff, EXECUTIONS.c.status.notin_(UNFINISHED))
        total = 0
        size = max(1, batch_size)
        while True:
            started = time.perf_counter()
            with self._write() as conn:
                if self.dialect == "mysql":
                    # DELETE ... LIMIT (MySQL cannot delete from a table it selects from).
                    stmt = delete(EXECUTIONS).where(old).with_dialect_options(mysql_limit=size)
                else:
                    ids = select(EXECUTIONS.c.id).where(old).order_by(EXECUTIONS.c.start_time).limit(size)
                    stmt = delete(EXECUTIONS).where(EXECUTIONS.c.id.in_(ids.scalar_subquery()))
                removed = conn.execute(stmt).rowcount
            total += removed
            if removed < size:
                return total
            elapsed = time.perf_counter() - started
            # Aim each batch at the target duration: grow when fast, shrink when slow.
            size = self._next_batch_size(size, elapsed)

    def _sqlite_delete_old_executions(self, cutoff: datetime, size: int) -> int:
        """Retention on SQLite: each batch is the oldest ``size`` finished rows (by rowid, off
        the start_time index), deleted in its own BEGIN IMMEDIATE transaction on the fair write
        lock, so this process's writers wait at most one batch. WAL checkpoints are this
        call's job while it runs: every four batches and at the end, between two batches (see
        :func:`direct.autocheckpoint_off`)."""
        assert self._direct is not None and self._write_lock is not None
        table = EXECUTIONS.name
        sql = (
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE start_time < ? "
            f"AND status NOT IN ({', '.join('?' * len(UNFINISHED))}) ORDER BY start_time LIMIT ?)"
        )
        params = [sqlite_datetime_text(cutoff), *UNFINISHED, size]
        lock = self._write_lock
        total = batches = 0
        with lock._mutex:  # this process's own counter: no need to wait for other processes
            lock.deferring += 1
        conn = None
        try:
            conn = self._direct.acquire()
            with direct.autocheckpoint_off(conn):
                while True:
                    with lock:
                        started = time.perf_counter()
                        with _sqlite_transaction(conn):
                            removed = conn.execute(sql, params).rowcount
                        elapsed = time.perf_counter() - started
                    total += removed
                    batches += 1
                    if removed < size:
                        break
                    if lock.between_processes is not None:
                        time.sleep(0.002)  # a writer of another Mimir process (it polls) gets in now
                    if batches % 4 == 0:
                        with lock:  # a writer waits for this or for a batch, never both
                            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    size = self._next_batch_size(size, elapsed)
                    params[-1] = size
        finally:
            try:
                if conn is not None:
                    with lock:  # the backlog: before the writers checkpoint again (they would copy it)
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (sqlite3.Error, PersistenceError):  # the writers' own checkpoints take it over
                pass
            finally:
                with lock._mutex:
                    lock.deferring -= 1
                if conn is not None:
                    self._direct.release(conn)
        return total

    def _next_batch_size(self, size: int, elapsed: float) -> int:
        """Aim each batch (the time it holds the write lock) at the target: grow when fast,
        shrink when slow, at most 4x either way."""
        factor = self.delete_batch_target_s / max(elapsed, 1e-4)
        return int(min(max(size * min(max(factor, 0.25), 4.0), 100), 50_000))

    @_operation("request_cancel")
    def request_cancel(self, execution_id: str) -> JobExecutionRecord:
        """Ask the process running an execution to stop it; it records ``cancelled``.

        A run still waiting in the queue (``jobs run`` printed its execution id) is taken out of
        the queue and recorded ``cancelled`` at once."""
        from .scheduling import QUEUE

        for _ in range(2):  # a second look if an instance claims the queued run meanwhile
            with self._write() as conn:
                row = conn.execute(select(EXECUTIONS.c.status).where(EXECUTIONS.c.id == execution_id)).first()
                if row is not None:
                    if row.status in FINISHED:
                        raise Conflict(f"execution {execution_id!r} has already finished ({row.status})")
                    conn.execute(
                        update(EXECUTIONS).where(EXECUTIONS.c.id == execution_id).values(cancel_requested=True)
                    )
                    break
                queued = conn.execute(select(QUEUE).where(QUEUE.c.execution_id == execution_id)).mappings().first()
                if queued is None:
                    raise NotFound(f"execution {execution_id!r} not found")
                if conn.execute(delete(QUEUE).where(QUEUE.c.id == queued["id"])).rowcount == 0:
                    continue  # claimed meanwhile: its execution row exists now; cancel that
                now = utcnow()
                record = JobExecutionRecord(
                    id=execution_id, job_id=queued["job_id"], pipeline=queued["pipeline"], start_time=now,
                    end_time=now, duration=0, status="cancelled", error="cancelled while waiting in the queue",
                    triggered_by=queued["triggered_by"], attempt=queued["attempt"], context={}, steps=[],
                    updated_at=now,
                )
                conn.execute(insert(EXECUTIONS), _values(record, EXECUTIONS))
                return record
        return self.get_execution(execution_id)

    # -- health and lifecycle -------------------------------------------------------------

    @_operation("health")
    def health(self) -> float:
        """One round trip to the database; returns its latency in seconds."""
        start = time.perf_counter()
        with self._read() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
        return time.perf_counter() - start

    @_operation("stats")
    def stats(self) -> dict[str, Any]:
        """Size on disk and row counts, for the health command and the DB health pane."""
        with self._read() as conn:
            counts = {
                "scheduled_jobs": conn.execute(select(func.count()).select_from(JOBS)).scalar_one(),
                "pipelines": conn.execute(select(func.count()).select_from(PIPELINES)).scalar_one(),
                "job_executions": conn.execute(select(func.count()).select_from(EXECUTIONS)).scalar_one(),
            }
            size = self._database_size(conn)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return {"row_counts": counts, "size_bytes": size, "schema_version": version}

    def _database_size(self, conn: Connection) -> int | None:
        if self.dialect == "sqlite":
            path = Path(self.settings.database_path)
            return sum(
                p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()
            )
        if self.dialect == "postgresql":
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        size = conn.execute(
            text(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            )
        ).scalar()
        return int(size or 0)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._direct is not None:
            self._direct.close()
        self.engine.dispose()
        if self.dialect == "sqlite":
            restrict_file_modes(Path(self.settings.database_path))

    def __enter__(self) -> "PersistenceBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


for _name in (
    "claim_fire", "claim_fires", "count_running", "set_job_schedule", "jobs_signature", "register_worker", "heartbeat",
    "list_workers", "interrupt_runs", "reap_stale_workers", "prune_workers", "enqueue", "list_queue",
    "claim_request", "interrupt_executions", "unfinished_run_ids", "sweep_orphaned_runs", "database_now",
):
    setattr(PersistenceBackend, _name, _operation(_name)(getattr(SchedulingMixin, _name)))


def open_backend(settings: Any) -> PersistenceBackend:
    """Open the configured database and bring its schema up to date.

    ``settings`` is a :class:`~mimir_tui.config.Settings` or its ``persistence`` section.
    Raises :class:`PersistenceError` with one line (no password) when the database cannot be
    reached or is not ours.
    """
    from .engine import make_engine
    from .migrate import upgrade

    persistence: PersistenceSettings = getattr(settings, "persistence", settings)
    engine = make_engine(persistence)
    try:
        upgrade(engine)
    except MimirError:
        engine.dispose()
        raise
    except (SQLAlchemyError, DBAPIError, OSError) as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        raise PersistenceError(
            f"cannot open {display_url(persistence)}: {scrub(first, persistence)}"
        ) from None
    if persistence.backend == "sqlite":
        restrict_file_modes(Path(persistence.database_path))
    return PersistenceBackend(engine, persistence)


__all__ = ["PersistenceBackend", "open_backend", "UNFINISHED"]
