"""Execution history: saving runs as they go, reading them whole or as pages, cancelling,
interrupting what a dead instance left, and retention."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    type_coerce,
    update,
)

from ..errors import Conflict, NotFound, PersistenceError
from .db import Database, one_of, operation
from .jobs import schedule_statement
from .models import (
    EXECUTIONS,
    FINISHED,
    QUEUE,
    WORKERS,
    JobExecutionRecord,
    Status,
    WorkerStatus,
    records,
    values_of,
)
from .rows import ExecutionRow, utc
from .types import as_utc, utcnow

#: Executions still in flight: never removed by retention, interrupted when their owner dies.
UNFINISHED = (Status.queued.value, Status.running.value)
LIVE_WORKER = (WorkerStatus.running.value, WorkerStatus.stopping.value)

#: Retention checkpoints the WAL itself every this many batches (SQLite; see Database).
CHECKPOINT_EVERY = 4
#: The most rows a retention batch deletes: their ids are bound parameters (SQLite takes 32,766).
MAX_BATCH = 20_000

COLUMNS = [c.name for c in EXECUTIONS.columns]
#: ``save``: every column is written but these (``cancel_requested`` belongs to whoever asked).
SAVED = [name for name in COLUMNS if name not in ("id", "cancel_requested")]


def active_runs() -> Any:
    """``SELECT count(*)``: the queued or running executions of the job ``:job_id``, on any
    instance (what its ``max_concurrent`` limits)."""
    return select(func.count()).where(
        and_(EXECUTIONS.c.job_id == bindparam("job_id"), one_of(EXECUTIONS.c.status, UNFINISHED))
    )


def _orphaned(cutoff: Any) -> Any:
    """Queued or running executions that no live worker owns, untouched since ``cutoff`` (a
    time, or a parameter of a prepared statement): see ExecutionStore.sweep_orphaned_runs."""
    live = select(WORKERS.c.id).where(one_of(WORKERS.c.status, LIVE_WORKER))
    return and_(
        one_of(EXECUTIONS.c.status, UNFINISHED),
        or_(EXECUTIONS.c.worker_id.is_(None), EXECUTIONS.c.worker_id.not_in(live)),
        func.coalesce(EXECUTIONS.c.updated_at, EXECUTIONS.c.start_time, type_=EXECUTIONS.c.updated_at.type) < cutoff,
    )


def _records(rows: list[Any]) -> list[JobExecutionRecord]:
    return records(JobExecutionRecord, COLUMNS, rows)


#: A run waiting in the queue (``run_queue``) read as an execution: the request is its only
#: row until an instance claims it (claiming deletes the request and inserts the execution in
#: one transaction), so readers of the history see it through this view. Status ``queued``,
#: its time in the queue as its start, no worker and no steps yet; a column not named here is
#: NULL. Constants are SQL literals: no parameters to bind at each read.
_WAITING: dict[str, Any] = {
    "id": QUEUE.c.execution_id,
    "job_id": QUEUE.c.job_id,
    "pipeline": QUEUE.c.pipeline,
    "start_time": QUEUE.c.created_at,
    "updated_at": QUEUE.c.created_at,
    "triggered_by": QUEUE.c.triggered_by,
    "attempt": QUEUE.c.attempt,
    "status": literal_column(f"'{Status.queued.value}'"),
    "cancel_requested": false(),
    "context": literal_column("'{}'"),
    "steps": literal_column("'[]'"),
}


def _waiting_column(name: str) -> Any:
    """The column ``name`` of ``job_executions`` as a waiting run has it, typed as that column
    (its values convert as the stored ones do)."""
    column = EXECUTIONS.c[name]
    return type_coerce(_WAITING.get(name, null()), column.type).label(name)


#: The columns a page of history is filtered and ordered by: (job, start, id).
_RUN_KEYS = (EXECUTIONS.c.job_id, EXECUTIONS.c.start_time, EXECUTIONS.c.id)
_WAITING_KEYS = (QUEUE.c.job_id, QUEUE.c.created_at, QUEUE.c.execution_id)


def _page_of(query: Any, keys: tuple[Any, Any, Any], job_id: str | None, before: Any) -> Any:
    """``query`` as a page of history: the job's rows (``job_id`` given), older than the
    keyset cursor ``before`` (given), newest first, at most ``:limit``."""
    job, start, ident = keys
    if job_id is not None:
        query = query.where(job == bindparam("job_id"))
    if before is not None:
        at = bindparam("start", type_=start.type)
        last: Any = bindparam("last")
        query = query.where(or_(start < at, and_(start == at, ident < last)))
    return query.order_by(start.desc(), ident.desc()).limit(bindparam("limit"))


def _page_values(job_id: str | None, limit: int, before: tuple[datetime, str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {"job_id": job_id, "limit": max(0, int(limit))}
    if before is not None:
        values["start"], values["last"] = as_utc(before[0]), before[1]
    return values


def _latest_per_job(slots: int) -> Any:
    """``job_id, status, start_time, id`` of the latest ``:per_job`` runs of each of the jobs
    ``:j0`` ... (NULL: none), one ``UNION ALL`` branch a job. Written as text: SQLAlchemy takes
    some 0.4 ms to compile each branch of a statement (95 ms for a page's), text a few µs."""
    branch = (
        "SELECT job_id, status, start_time, id FROM (SELECT job_id, status, start_time, id FROM job_executions"
        " WHERE job_id = :j{i} ORDER BY start_time DESC, id DESC LIMIT :per_job) AS r{i}"
    )
    return text(" UNION ALL ".join(branch.format(i=i) for i in range(slots)))


class ExecutionStore:
    """``job_executions``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Retention batches are sized to hold the write lock about this long each (commit
        #: included), so a concurrent writer waits about that long at most.
        self.delete_batch_target_s = 0.05

    # -- writing a run as it goes ------------------------------------------------------

    @operation("save_execution")
    def save(self, execution: JobExecutionRecord, *, only_unfinished: bool = False, job_result: bool = False) -> Any:
        """Insert the record, or replace it if its id exists (the engine saves a run as it goes).

        ``cancel_requested`` is never cleared by a save: it belongs to whoever asked to cancel.

        ``only_unfinished``: replace the stored row only while it is still ``queued`` or
        ``running`` (a run must not overwrite the end another instance gave it, e.g. a reaper's
        ``interrupted`` whose retry is queued already); returns True if the record was written,
        False if the row had finished. Without it, returns the record.

        ``job_result``: the record is a run's end; when it is written, its status becomes its
        job's ``last_result`` in the same transaction (one write for both, at every fire). The
        job's row is written first: a claim of the job's fires locks that row before it
        inserts executions (:meth:`RunStore.claim_batch`), and in the other order the two
        deadlock on a server (a claim's insert waits for this run's row, this save for the
        claim's lock on the job). When the record is not written, neither is the job's row.
        """
        execution.updated_at = utcnow()
        values = values_of(execution, EXECUTIONS)
        result = job_result and execution.job_id is not None
        try:
            with self.db.raw_write() as tx:
                if result:
                    tx.execute(
                        schedule_statement(self.db, ("last_result",)),
                        {"last_result": execution.status, "job_id": execution.job_id},
                    )
                if self.db.dialect.upsert:
                    applied = tx.execute(self._upsert(only_unfinished), values) != 0
                else:  # MySQL: update, else insert
                    applied = True
                    if tx.execute(self._update(only_unfinished), values) == 0:
                        exists = only_unfinished and bool(tx.fetch(self._exists(), values))
                        if exists:
                            applied = False  # the row has finished: left as it is
                        else:
                            tx.execute(self._insert(), values)
                if result and not applied:
                    raise _Unwritten  # the job's last_result is rolled back with it
        except _Unwritten:
            return False
        except Exception as exc:
            if self.db.is_integrity_error(exc):
                raise Conflict(self._integrity_message(exc, execution)) from None
            if isinstance(exc, (TypeError, ValueError, AttributeError)):  # a value no column takes
                raise PersistenceError(f"save_execution failed: {exc}") from None
            raise
        return applied if only_unfinished else execution

    def _upsert(self, only_unfinished: bool) -> Any:
        def build() -> Any:
            stmt = self.db.dialect.insert(EXECUTIONS)
            return stmt.on_conflict_do_update(
                index_elements=[EXECUTIONS.c.id],
                set_={name: stmt.excluded[name] for name in SAVED},
                where=one_of(EXECUTIONS.c.status, UNFINISHED) if only_unfinished else None,
            )

        return self.db.prepare(("save_execution", only_unfinished), build, COLUMNS)

    def _update(self, only_unfinished: bool) -> Any:
        def build() -> Any:
            condition = EXECUTIONS.c.id == bindparam("id")
            if only_unfinished:
                condition = and_(condition, one_of(EXECUTIONS.c.status, UNFINISHED))
            return (
                update(EXECUTIONS)
                .where(condition)
                .values({name: bindparam(name, type_=EXECUTIONS.c[name].type) for name in SAVED})
            )

        return self.db.prepare(("update_execution", only_unfinished), build)

    def _insert(self) -> Any:
        return self.db.prepare("insert_execution", lambda: insert(EXECUTIONS), COLUMNS)

    def _exists(self) -> Any:
        return self.db.prepare(
            "execution_exists", lambda: select(EXECUTIONS.c.id).where(EXECUTIONS.c.id == bindparam("id"))
        )

    def _integrity_message(self, exc: BaseException, execution: JobExecutionRecord) -> str:
        message = self.db.describe(exc)
        lowered = message.lower()
        if "foreign key" in lowered:
            return f"execution {execution.id!r}: job {execution.job_id!r} does not exist"
        if "scheduled_for" in lowered or "run_key" in lowered or "duplicate" in lowered or "unique" in lowered:
            return (
                f"execution {execution.id!r}: job {execution.job_id!r} already has a run scheduled for "
                f"{execution.scheduled_for.isoformat() if execution.scheduled_for else None}"
            )
        return f"execution {execution.id!r}: {message}"

    # -- reading -----------------------------------------------------------------------

    @operation("get_execution")
    def get(self, execution_id: str) -> JobExecutionRecord:
        prepared = self.db.prepare(
            "get_execution", lambda: select(EXECUTIONS).where(EXECUTIONS.c.id == bindparam("id"))
        )
        rows = self.db.fetch(prepared, {"id": execution_id})
        if not rows:
            # Still waiting in the queue; else claimed since the first read (the claim deletes
            # the request and inserts the execution in one transaction), or unknown.
            rows = self._waiting(COLUMNS, "get", None, 1, None, execution_id=execution_id, convert=True)
            rows = rows or self.db.fetch(prepared, {"id": execution_id})
        if not rows:
            raise NotFound(f"execution {execution_id!r} not found")
        return _records(rows)[0]

    @operation("list_executions")
    def history(
        self,
        job_id: str | None = None,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[JobExecutionRecord]:
        """Whole records, newest first. ``job_id`` None lists every job's. ``before`` is a
        keyset cursor ``(start_time, id)`` of the last row of the previous page: paging a
        million rows stays as fast as the first page."""
        found = self._history(COLUMNS, "list", job_id, limit, status, before, convert=True)
        return _records(found)

    @operation("page_executions")
    def page(
        self,
        job_id: str | None = None,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[ExecutionRow]:
        """Lean rows of the history (everything but the context), newest first; the same
        filters and cursor as :meth:`history`."""
        rows = self._history(ExecutionRow.COLUMNS, "page", job_id, limit, status, before, convert=False)
        return [ExecutionRow(r) for r in rows]

    def _history(
        self,
        names: Sequence[str],
        kind: str,
        job_id: str | None,
        limit: int,
        status: str | Sequence[str] | None,
        before: tuple[datetime, str] | None,
        *,
        convert: bool,
    ) -> list[Any]:
        """The executions, and the runs still waiting in the queue (read first: a request
        claimed between the two reads is then seen twice, as queued and as running, and kept
        once, never missed), merged newest first."""
        statuses = None if status is None else list(dict.fromkeys([status] if isinstance(status, str) else status))
        if statuses == []:
            return []  # no status asked for: nothing matches
        waiting = []
        if statuses is None or Status.queued.value in statuses:
            waiting = self._waiting(names, kind, job_id, limit, before, convert=convert)
        shape = (kind, job_id is not None, statuses is not None, before is not None)

        def build() -> Any:
            query = _page_of(select(*(EXECUTIONS.c[name] for name in names)), _RUN_KEYS, job_id, before)
            if statuses is not None:
                query = query.where(EXECUTIONS.c.status == bindparam("status"))
            return query

        prepared = self.db.prepare(shape, build)
        values = _page_values(job_id, limit, before)
        if statuses is None:
            found = self.db.fetch(prepared, values, convert=convert)
        else:
            # A page per status, each read in order through (job_id,) status, start_time, id
            # (schema version 10), merged here. No index gives ``status IN (...)`` that order,
            # and a planner that takes every status for a common one (SQLite after ANALYZE)
            # then walked the whole history by start_time looking for a few running runs.
            found = []
            for value in statuses:
                found += self.db.fetch(prepared, {**values, "status": value}, convert=convert)
        if not waiting and (statuses is None or len(statuses) == 1):
            return found  # one page, in order already
        ident, start = names.index("id"), names.index("start_time")
        seen = {row[ident] for row in found}
        merged = [*found, *(row for row in waiting if row[ident] not in seen)]
        merged.sort(key=lambda row: (utc(row[start]), row[ident]), reverse=True)
        return merged[: max(0, int(limit))]

    def _waiting(
        self,
        names: Sequence[str],
        kind: str,
        job_id: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        *,
        execution_id: str | None = None,
        convert: bool,
    ) -> list[Any]:
        """The runs waiting in the queue, as rows of the columns ``names`` of executions (see
        :data:`_WAITING`), newest first: a page of them (the filters of :meth:`_history`), or
        the one whose execution id is ``execution_id``."""
        shape = ("waiting", kind, job_id is not None, before is not None, execution_id is not None)

        def build() -> Any:
            query = select(*(_waiting_column(name) for name in names))
            if execution_id is not None:
                query = query.where(QUEUE.c.execution_id == bindparam("execution_id"))
            return _page_of(query, _WAITING_KEYS, job_id, before)

        values = _page_values(job_id, limit, before)
        values["execution_id"] = execution_id
        return self.db.fetch(self.db.prepare(shape, build), values, convert=convert)

    @operation("executions_per_day")
    def per_day(self, since: datetime) -> dict[str, int]:
        """``{"YYYY-MM-DD": runs started that day (UTC)}`` from ``since`` on: one grouped query
        over the start-time range (the health pane's executions per day), not the history."""

        def build() -> Any:
            day = func.date(EXECUTIONS.c.start_time)
            since_ = bindparam("since", type_=EXECUTIONS.c.start_time.type)
            return select(day, func.count()).where(EXECUTIONS.c.start_time >= since_).group_by(day)

        rows = self.db.fetch(self.db.prepare("executions_per_day", build), {"since": as_utc(since)})
        return {str(d)[:10]: int(n) for d, n in rows}

    @operation("recent_statuses")
    def recent_statuses(self, job_ids: Sequence[str], per_job: int) -> dict[str, list[str]]:
        """``{job id: the statuses of its latest ``per_job`` executions, newest first}`` for
        ``job_ids`` (the jobs pane's page); a job without runs is left out.

        One query whose cost is the page's, whatever the history holds: per job, its latest
        runs along the (job, start, id) index, ``LIMIT per_job`` (a ``UNION ALL`` of one such
        branch per job; each backend reads it as so many short backward index scans). Ranking
        with ``ROW_NUMBER() OVER (PARTITION BY job_id ...)`` reads every run of each job (75
        ms for a page of 200 jobs of 100 runs each on SQLite, against 5 ms); a join on each
        job's cutoff time was read through a hash join or a filter on PostgreSQL and MariaDB;
        the three have no ``LATERAL`` in common."""
        ids = list(dict.fromkeys(job_ids))
        if not ids or per_job <= 0:
            return {}
        # Padded to a power of two with NULLs (which match no job): a few statement shapes,
        # prepared once, serve every page size.
        slots = 1 << (len(ids) - 1).bit_length()
        values: dict[str, Any] = {f"j{i}": ids[i] if i < len(ids) else None for i in range(slots)}
        values["per_job"] = int(per_job)
        prepared = self.db.prepare(("recent_statuses", slots), lambda: _latest_per_job(slots))
        out: dict[str, list[str]] = {}
        for job_id, status, _, _ in sorted(
            self.db.fetch(prepared, values, convert=False), key=lambda row: (utc(row[2]), row[3]), reverse=True
        ):
            out.setdefault(job_id, []).append(status)
        return out

    @operation("count_running")
    def count_running(self, job_id: str) -> int:
        """Executions of the job that are queued or running, on any instance."""
        return int(self.db.fetch(self.db.prepare("count_running", active_runs), {"job_id": job_id})[0][0])

    @operation("cancel_requested")
    def cancel_requested(self, execution_id: str) -> bool:
        """Whether someone asked to cancel the run: one indexed read of one column, cheap
        enough to poll a few times a second."""
        prepared = self.db.prepare(
            "cancel_requested", lambda: select(EXECUTIONS.c.cancel_requested).where(EXECUTIONS.c.id == bindparam("id"))
        )
        rows = self.db.fetch(prepared, {"id": execution_id})
        return bool(rows and rows[0][0])

    # -- cancelling --------------------------------------------------------------------

    @operation("request_cancel")
    def request_cancel(self, execution_id: str) -> JobExecutionRecord:
        """Ask the process running an execution to stop it; it records ``cancelled``.

        A run still waiting in the queue (``jobs run`` printed its execution id) is taken out of
        the queue and recorded ``cancelled`` at once."""
        for _ in range(2):  # a second look if an instance claims the queued run meanwhile
            with self.db.write() as conn:
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
                    id=execution_id,
                    job_id=queued["job_id"],
                    pipeline=queued["pipeline"],
                    start_time=now,
                    end_time=now,
                    duration=0,
                    status=Status.cancelled.value,
                    error="cancelled while waiting in the queue",
                    triggered_by=queued["triggered_by"],
                    attempt=queued["attempt"],
                    context={},
                    steps=[],
                    updated_at=now,
                )
                conn.execute(insert(EXECUTIONS), values_of(record, EXECUTIONS))
                return record
        return self.get(execution_id)

    # -- runs whose instance is gone ---------------------------------------------------

    @operation("interrupt_runs")
    def interrupt_runs(
        self, worker_ids: list[str], reason: str, *, now: datetime | None = None
    ) -> list[JobExecutionRecord]:
        """Mark the ``queued``/``running`` executions of these workers ``interrupted``; returns
        those this call changed (not a run that finished meanwhile: its retry must not be
        queued)."""
        if not worker_ids:
            return []
        return self._interrupt_where(EXECUTIONS.c.worker_id.in_(worker_ids), reason, now)

    @operation("interrupt_executions")
    def interrupt_executions(
        self, execution_ids: list[str], reason: str, *, now: datetime | None = None
    ) -> list[JobExecutionRecord]:
        """Mark these executions ``interrupted`` if they are still queued or running; returns
        those this call changed."""
        if not execution_ids:
            return []
        return self._interrupt_where(EXECUTIONS.c.id.in_(execution_ids), reason, now)

    def _interrupt_where(self, condition: Any, reason: str, now: datetime | None) -> list[JobExecutionRecord]:
        when = as_utc(now) or utcnow()
        with self.db.write() as conn:
            rows = conn.execute(select(EXECUTIONS).where(and_(condition, EXECUTIONS.c.status.in_(UNFINISHED)))).all()
            return self._interrupt_rows(conn, rows, reason, when)

    @operation("unfinished_run_ids")
    def unfinished_run_ids(self, worker_id: str) -> list[str]:
        """Ids of the executions of ``worker_id`` that are queued or running (every heartbeat
        asks: a prepared statement)."""
        prepared = self.db.prepare(
            "unfinished_run_ids",
            lambda: select(EXECUTIONS.c.id).where(
                EXECUTIONS.c.worker_id == bindparam("worker_id"), one_of(EXECUTIONS.c.status, UNFINISHED)
            ),
        )
        return [row[0] for row in self.db.fetch(prepared, {"worker_id": worker_id})]

    @operation("sweep_orphaned_runs")
    def sweep_orphaned_runs(self, *, stale_after: float, now: datetime | None = None) -> list[JobExecutionRecord]:
        """Interrupt queued/running executions that no live worker owns: no ``worker_id`` (a
        process that ran them without registering), an unknown one, or a worker that is
        ``dead`` or ``stopped`` (e.g. a reaper that crashed between marking a worker dead and
        interrupting its runs), untouched for ``stale_after`` seconds. Returns those changed.

        Runs of a live worker (status running/stopping) are never touched here; a live worker
        whose heartbeat went stale is ``WorkerStore.reap_stale_workers``' business."""
        when = as_utc(now) or self.db.now()
        cutoff = when - timedelta(seconds=stale_after)
        # A read first, prepared (every heartbeat asks): on SQLite the common case (nothing to
        # sweep) takes no write lock.
        anything = self.db.prepare(
            "any_orphaned_run",
            lambda: (
                select(EXECUTIONS.c.id)
                .where(_orphaned(bindparam("cutoff", type_=EXECUTIONS.c.updated_at.type)))
                .limit(1)
            ),
        )
        if not self.db.fetch(anything, {"cutoff": cutoff}):
            return []
        orphan = _orphaned(cutoff)
        with self.db.write() as conn:
            rows = conn.execute(select(EXECUTIONS).where(orphan)).all()
            return self._interrupt_rows(conn, rows, "interrupted: no live instance was running it", when, guard=orphan)

    def _interrupt_rows(
        self, conn: Any, rows: Any, reason: str, now: datetime, guard: Any = None
    ) -> list[JobExecutionRecord]:
        """The guarded UPDATE of each row to ``interrupted``; the rows it changed, as records.
        A row that finished since it was read (its UPDATE matches nothing) is left out."""
        out = []
        for row in rows:
            record = JobExecutionRecord.model_construct(**row._mapping)
            start = as_utc(record.start_time)
            condition = and_(EXECUTIONS.c.id == record.id, EXECUTIONS.c.status.in_(UNFINISHED))
            if guard is not None:
                condition = and_(condition, guard)
            changed = conn.execute(
                update(EXECUTIONS)
                .where(condition)
                .values(
                    status=Status.interrupted.value,
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
            record.status = Status.interrupted.value
            record.error = reason
            record.end_time = now
            out.append(record)
        return out

    # -- retention ---------------------------------------------------------------------

    def _retention_targets(self, cutoff: datetime | None, keep_last: int) -> list[tuple[Any, dict[str, Any]]]:
        """What retention removes, as (condition, values) pairs: finished runs that started
        before ``cutoff``; with ``keep_last`` K > 0, one pair per job that has more than K runs,
        sparing its K latest (by start time, then id), and one for the runs of no job (run by
        hand: age alone decides)."""
        old = and_(
            EXECUTIONS.c.start_time < bindparam("cutoff", type_=EXECUTIONS.c.start_time.type),
            ~one_of(EXECUTIONS.c.status, UNFINISHED),
        )
        if keep_last <= 0:
            return [(old, {"cutoff": cutoff})]
        targets: list[tuple[Any, dict[str, Any]]] = [(and_(old, EXECUTIONS.c.job_id.is_(None)), {"cutoff": cutoff})]
        start, ident = EXECUTIONS.c.start_time, EXECUTIONS.c.id
        at = bindparam("kept_start", type_=start.type)
        kept: Any = bindparam("kept_id")
        per_job = and_(
            old, EXECUTIONS.c.job_id == bindparam("job_id"), or_(start < at, and_(start == at, ident < kept))
        )
        with self.db.read() as conn:
            jobs = (
                conn.execute(
                    select(EXECUTIONS.c.job_id).where(and_(old, EXECUTIONS.c.job_id.is_not(None))).distinct(),
                    {"cutoff": cutoff},
                )
                .scalars()
                .all()
            )
            for job_id in sorted(jobs):
                # The K-th latest run of the job: it and the runs after it stay.
                row = conn.execute(
                    select(start, ident)
                    .where(EXECUTIONS.c.job_id == job_id)
                    .order_by(start.desc(), ident.desc())
                    .offset(keep_last - 1)
                    .limit(1)
                ).first()
                if row is not None:
                    targets.append(
                        (per_job, {"cutoff": cutoff, "job_id": job_id, "kept_start": row[0], "kept_id": row[1]})
                    )
        return targets

    @operation("plan_retention")
    def retention_plan(self, older_than: datetime, *, keep_last: int = 0) -> list[dict[str, Any]]:
        """What :meth:`delete_old` would remove, changing nothing: ``[{"job_id", "count",
        "oldest", "newest"}]`` per job (``job_id`` None: runs of no job)."""
        out: dict[Any, dict[str, Any]] = {}
        with self.db.read() as conn:
            for condition, values in self._retention_targets(as_utc(older_than), keep_last):
                query = (
                    select(
                        EXECUTIONS.c.job_id,
                        func.count(),
                        func.min(EXECUTIONS.c.start_time),
                        func.max(EXECUTIONS.c.start_time),
                    )
                    .where(condition)
                    .group_by(EXECUTIONS.c.job_id)
                )
                for job_id, count, oldest, newest in conn.execute(query, values):
                    entry = out.setdefault(job_id, {"job_id": job_id, "count": 0, "oldest": None, "newest": None})
                    entry["count"] += int(count)
                    oldest, newest = as_utc(oldest), as_utc(newest)
                    entry["oldest"] = oldest if entry["oldest"] is None else min(entry["oldest"], oldest)
                    entry["newest"] = newest if entry["newest"] is None else max(entry["newest"], newest)
        return sorted(out.values(), key=lambda e: (e["job_id"] is None, e["job_id"] or ""))

    def retention_ids(self, older_than: datetime, *, keep_last: int = 0, chunk: int = 10_000) -> Iterator[list[str]]:
        """The ids :meth:`delete_old` would remove, ``chunk`` at a time (a dry run's log sizes)."""
        for condition, values in self._retention_targets(as_utc(older_than), keep_last):
            last: str | None = None
            while True:
                query = select(EXECUTIONS.c.id).where(condition)
                if last is not None:
                    query = query.where(EXECUTIONS.c.id > last)
                with self.db.read() as conn:
                    ids = list(conn.execute(query.order_by(EXECUTIONS.c.id).limit(chunk), values).scalars())
                if ids:
                    yield ids
                if len(ids) < chunk:
                    break
                last = ids[-1]

    @operation("delete_old_executions")
    def delete_old(
        self,
        older_than: datetime,
        *,
        batch_size: int = 2000,
        keep_last: int = 0,
        on_deleted: Callable[[list[tuple[str, str | None, datetime]]], None] | None = None,
    ) -> int:
        """Delete finished executions that started before ``older_than``, in short batches;
        never a queued or running one. ``keep_last`` K > 0 spares the K latest runs of each job
        (see :meth:`_retention_targets`). ``on_deleted(rows)`` is called after each batch's
        commit with ``(id, job_id, start_time)`` of the rows it removed (retention deletes their
        log files and counts them per job).

        Each batch is its own transaction, sized to hold the write lock about
        :attr:`delete_batch_target_s`, so a concurrent writer (of this process or another, on
        SQLite through the write gate) waits at most one batch. Returns the number of rows
        removed."""
        cutoff = as_utc(older_than)
        size = max(1, batch_size)
        total = batches = 0
        gate = self.db.gate
        with gate.bulk() if gate is not None else nullcontext() as run:
            for condition, values in self._retention_targets(cutoff, keep_last):
                while True:
                    with run.batch() if run is not None else nullcontext():
                        started = time.perf_counter()
                        rows, removed = self._delete_batch(condition, values, size)
                        elapsed = time.perf_counter() - started
                    self.db.metrics.record("retention_batch", elapsed, True)  # what a writer may wait
                    total += removed
                    batches += 1
                    if on_deleted is not None and rows:
                        on_deleted(rows)
                    if batches % CHECKPOINT_EVERY == 0:
                        # The WAL checkpoints the writers leave to us while a bulk run goes (see
                        # Database). PASSIVE: it waits for no one, and holds no writer up.
                        self.db.checkpoint()
                    if len(rows) < size:
                        break
                    size = self._next_batch_size(size, elapsed)
            self.db.checkpoint()
        return total

    def _delete_batch(
        self, condition: Any, values: dict[str, Any], size: int
    ) -> tuple[list[tuple[str, str | None, datetime]], int]:
        """The oldest ``size`` rows of ``condition``, read and deleted in one transaction, by
        their keys (SQLite's rowid; the condition checked again: a row deleted meanwhile by
        another instance's retention is not counted twice). Returns ``(id, job_id,
        start_time)`` of each row read, and how many went."""
        key = literal_column(self.db.dialect.row_key) if self.db.dialect.row_key else EXECUTIONS.c.id
        with self.db.write(bulk=True) as conn:
            found = conn.execute(
                select(key, EXECUTIONS.c.id, EXECUTIONS.c.job_id, EXECUTIONS.c.start_time)
                .where(condition)
                .order_by(EXECUTIONS.c.start_time)
                .limit(size),
                values,
            ).all()
            if not found:
                return [], 0
            removed = conn.execute(
                delete(EXECUTIONS)
                .where(and_(key.in_([row[0] for row in found]), condition))
                .execution_options(preserve_rowcount=True),
                values,
            ).rowcount
        return [(row[1], row[2], row[3]) for row in found], int(removed)

    def _next_batch_size(self, size: int, elapsed: float) -> int:
        """Aim each batch (the time it holds the write lock) at the target: grow when fast,
        shrink when slow, at most 4x either way; at most :data:`MAX_BATCH` rows (one bound
        parameter each)."""
        factor = self.delete_batch_target_s / max(elapsed, 1e-4)
        return int(min(max(size * min(max(factor, 0.25), 4.0), 100), MAX_BATCH))


class _Unwritten(Exception):
    """A run's end not written (its row had finished): its job's ``last_result`` is undone."""
