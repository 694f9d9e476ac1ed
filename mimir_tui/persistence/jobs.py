"""Jobs and pipelines: the definitions the scheduler runs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any, Final, NamedTuple

from sqlalchemy import bindparam, case, delete, func, insert, or_, select, true, update

from ..errors import Conflict, NotFound
from .db import Database, Prepared, operation
from .models import EXECUTIONS, JOBS, PIPELINES, QUEUE, PipelineConfig, ScheduledJob, every_field, values_of
from .rows import JobRow
from .types import as_utc, utcnow

#: Columns of ``scheduled_jobs`` that only the scheduler writes (``set_schedule``).
SCHEDULER_OWNED = ("last_run", "last_result")


#: The columns that tell one stored version of a pipeline from another (see PipelineStore.version).
_VERSION = (PIPELINES.c.updated_at, PIPELINES.c.checksum, PIPELINES.c.source_path, PIPELINES.c.load_error)


def schedule_statement(db: Database, shape: tuple[str, ...]) -> Prepared:
    """The prepared UPDATE of a job's ``shape`` columns (sorted names among ``next_run``,
    ``last_run``, ``last_result``; parameters of those names and ``job_id``), which leaves
    ``updated_at`` alone: see :meth:`JobStore.set_schedule`. A run's end writes ``last_result``
    with it, in the transaction that saves the run (``ExecutionStore.save``)."""

    def build() -> Any:
        sets: dict[str, Any] = {name: bindparam(name, type_=JOBS.c[name].type) for name in shape}
        if "next_run" in sets:
            sets["next_run"] = case((JOBS.c.enabled == true(), sets["next_run"]), else_=None)
        return update(JOBS).where(JOBS.c.id == bindparam("job_id")).values(**sets)

    return db.prepare(("set_job_schedule", shape), build)


class Unchanged(Enum):
    """``set_schedule(next_run=UNCHANGED)``: leave the column as it is. A one-member enum rather
    than an ``object()``, so that type checkers narrow ``next_run is not UNCHANGED``."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED


class JobDeletion(NamedTuple):
    """What went with a deleted job."""

    execution_ids: list[str]
    queued_runs: int


class JobStore:
    """``scheduled_jobs``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @operation("save_job")
    def save(self, job: ScheduledJob) -> ScheduledJob:
        # The database's clock: the schedulers see an edit by the latest updated_at, which a
        # machine whose clock runs slow would otherwise write in the past.
        now = self.db.now()
        job.created_at = as_utc(job.created_at) or now
        job.updated_at = now
        try:
            with self.db.write() as conn:
                conn.execute(insert(JOBS), values_of(job, JOBS))
        except Exception as exc:
            if self.db.is_integrity_error(exc):
                raise Conflict(f"job {job.id!r} already exists") from None
            raise
        return job

    @operation("get_job")
    def get(self, job_id: str) -> ScheduledJob:
        with self.db.read() as conn:
            row = conn.execute(select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found")
        return ScheduledJob.model_construct(every_field(ScheduledJob), **row)

    @operation("list_jobs")
    def all(self, *, enabled: bool | None = None) -> list[ScheduledJob]:
        query = select(JOBS).order_by(JOBS.c.name, JOBS.c.id)
        if enabled is not None:
            query = query.where(JOBS.c.enabled == enabled)
        fields = every_field(ScheduledJob)
        with self.db.read() as conn:
            return [ScheduledJob.model_construct(fields, **r) for r in conn.execute(query).mappings()]

    @operation("page_jobs")
    def page(self, text: str = "", *, offset: int = 0, limit: int | None = None) -> list[JobRow]:
        """Jobs as lean rows, by name (the jobs pane, ``jobs list``): those whose name, id,
        pipeline, cron, zone or last result holds ``text`` (case-insensitive), ``limit`` of
        them from ``offset`` (every one when ``limit`` is None)."""
        shape = ("page_jobs", bool(text.strip()), limit is not None)

        def build() -> Any:
            query = _matching(select(*(JOBS.c[n] for n in JobRow.COLUMNS)), bool(text.strip()))
            query = query.order_by(JOBS.c.name, JOBS.c.id)
            return query.limit(bindparam("limit")).offset(bindparam("offset")) if limit is not None else query

        values = {"pattern": _pattern(text), "limit": max(0, limit or 0), "offset": max(0, offset)}
        return [JobRow(r) for r in self.db.fetch(self.db.prepare(shape, build), values, convert=False)]

    @operation("count_jobs")
    def count(self, text: str = "") -> tuple[int, int]:
        """``(jobs, enabled jobs)`` among those :meth:`page` shows for ``text``."""
        enabled = func.coalesce(func.sum(case((JOBS.c.enabled == true(), 1), else_=0)), 0)
        prepared = self.db.prepare(
            ("count_jobs", bool(text.strip())), lambda: _matching(select(func.count(), enabled), bool(text.strip()))
        )
        total, on = self.db.fetch(prepared, {"pattern": _pattern(text)}, convert=False)[0]
        return int(total), int(on)

    @operation("job_counts_by_pipeline")
    def counts_by_pipeline(self) -> dict[str, int]:
        """``{pipeline: number of jobs that run it}`` (the pipelines pane), counted by the database."""
        return self._counts("job_counts_by_pipeline", JOBS.c.pipeline)

    @operation("job_counts_by_queue")
    def counts_by_queue(self) -> dict[str, int]:
        """``{queue: number of enabled jobs in it}`` (the health report), counted by the database."""
        return self._counts("job_counts_by_queue", JOBS.c.queue, JOBS.c.enabled == true())

    def _counts(self, key: str, column: Any, *where: Any) -> dict[str, int]:
        prepared = self.db.prepare(key, lambda: select(column, func.count()).where(*where).group_by(column))
        return {name: int(count) for name, count in self.db.fetch(prepared, convert=False)}

    @operation("delete_job")
    def delete(self, job_id: str) -> JobDeletion:
        """Delete the job; its executions and queued runs go with it (ON DELETE CASCADE), and
        the result says which. They are read in the delete's transaction, the job's row locked
        first (``FOR UPDATE``; SQLite's write transaction is one at a time anyway): a run
        claimed or queued meanwhile, whose insert checks that row, comes wholly before (and is
        counted) or fails after."""
        with self.db.write() as conn:
            query = select(JOBS.c.id).where(JOBS.c.id == job_id)
            if self.db.dialect.skip_locked:
                query = query.with_for_update()
            if conn.execute(query).first() is None:
                raise NotFound(f"job {job_id!r} not found")
            executions = list(conn.execute(select(EXECUTIONS.c.id).where(EXECUTIONS.c.job_id == job_id)).scalars())
            queued = conn.execute(select(func.count()).select_from(QUEUE).where(QUEUE.c.job_id == job_id)).scalar_one()
            conn.execute(delete(JOBS).where(JOBS.c.id == job_id))
        return JobDeletion(executions, int(queued))

    @operation("job_dependents")
    def dependents(self, job_id: str) -> tuple[int, int]:
        """``(executions, queued runs)`` of the job: what deleting it would take with it (read
        before asking an operator to confirm; the delete itself says what it took)."""
        with self.db.read() as conn:
            executions = conn.execute(select(func.count()).where(EXECUTIONS.c.job_id == job_id)).scalar_one()
            queued = conn.execute(select(func.count()).select_from(QUEUE).where(QUEUE.c.job_id == job_id)).scalar_one()
        return int(executions), int(queued)

    @operation("update_job")
    def update(
        self, job: ScheduledJob, *, fields: Iterable[str] | None = None, if_updated_at: datetime | None = None
    ) -> ScheduledJob:
        """Write an edit of the job (and a new ``updated_at``).

        ``last_run`` and ``last_result`` belong to the scheduler and are never written here
        (only by :meth:`set_schedule`): an edit made from a copy loaded before a fire must not
        put back the older values. ``fields`` limits the write to those columns; give it
        whenever the job was loaded earlier, so that ``next_run`` (which the scheduler also
        writes) is written only if the caller changed it. Without ``fields`` every other column
        is written, ``next_run`` included. A new ``queue`` moves the job's queued runs with it
        (in the same transaction). With ``if_updated_at`` the edit is written only if the job
        was not changed since (its ``updated_at`` is still that): else :class:`Conflict`, nothing
        written (an editor's copy never overwrites another instance's edit)."""
        job.updated_at = self.db.now()  # see save
        values = values_of(job, JOBS)
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
        where = [JOBS.c.id == job.id]
        if if_updated_at is not None:
            where.append(JOBS.c.updated_at == as_utc(if_updated_at))
        with self.db.write() as conn:
            result = conn.execute(update(JOBS).where(*where).values(**values))
            if result.rowcount and "queue" in values:
                conn.execute(update(QUEUE).where(QUEUE.c.job_id == job.id).values(queue=values["queue"]))
            changed = None
            if result.rowcount == 0 and if_updated_at is not None:
                changed = conn.execute(select(JOBS.c.updated_at).where(JOBS.c.id == job.id)).scalar_one_or_none()
        if changed is not None:
            raise Conflict(
                f"job {job.id!r} was changed by another instance at {as_utc(changed).isoformat(timespec='seconds')}"
                " after it was loaded: nothing written"
            )
        if result.rowcount == 0:
            raise NotFound(f"job {job.id!r} not found")
        return job

    @operation("set_job_schedule")
    def set_schedule(
        self,
        job_id: str,
        *,
        next_run: datetime | None | Unchanged = UNCHANGED,
        last_run: datetime | None = None,
        last_result: str | None = None,
    ) -> bool:
        """Record fire times without touching ``updated_at`` (which signals an edit).

        ``next_run`` is written only while the job is enabled (a job disabled meanwhile keeps
        NULL: the scheduler's write never undoes an operator's disable)."""
        values: dict[str, Any] = {}
        if next_run is not UNCHANGED:
            values["next_run"] = as_utc(next_run)
        if last_run is not None:
            values["last_run"] = as_utc(last_run)
        if last_result is not None:
            values["last_result"] = last_result
        if not values:
            return False
        prepared = schedule_statement(self.db, tuple(sorted(values)))
        with self.db.raw_write() as tx:
            return tx.execute(prepared, {**values, "job_id": job_id}) == 1

    @operation("jobs_signature")
    def signature(self) -> tuple[int, datetime | None]:
        """``(count, latest updated_at)`` of the jobs table: it changes whenever a job is added,
        edited, enabled, disabled or deleted, by anyone."""
        prepared = self.db.prepare(
            "jobs_signature",
            lambda: select(
                func.count().label("n"), func.max(JOBS.c.updated_at, type_=JOBS.c.updated_at.type).label("latest")
            ),
        )
        count, latest = self.db.fetch(prepared)[0]
        return int(count), as_utc(latest)


def _pattern(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere, its wildcards taken literally."""
    escaped = text.strip().casefold().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


def _matching(query: Any, filtered: bool) -> Any:
    """``query`` limited to the jobs whose text columns hold ``:pattern`` (when ``filtered``)."""
    if not filtered:
        return query
    pattern: Any = bindparam("pattern")
    columns = (JOBS.c.name, JOBS.c.id, JOBS.c.pipeline, JOBS.c.cron_expr, JOBS.c.timezone, JOBS.c.last_result)
    return query.where(or_(*(func.lower(c).like(pattern, escape="!") for c in columns)))


class PipelineStore:
    """``pipelines``: the definitions as stored (the YAML's parsed form, as JSON)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @operation("save_pipeline")
    def save(self, pipeline: PipelineConfig) -> PipelineConfig:
        now = utcnow()
        pipeline.created_at = as_utc(pipeline.created_at) or now
        pipeline.updated_at = now
        try:
            with self.db.write() as conn:
                conn.execute(insert(PIPELINES), values_of(pipeline, PIPELINES))
        except Exception as exc:
            if self.db.is_integrity_error(exc):
                raise Conflict(f"pipeline {pipeline.name!r} already exists") from None
            raise
        return pipeline

    @operation("get_pipeline")
    def get(self, name: str) -> PipelineConfig:
        with self.db.read() as conn:
            row = conn.execute(select(PIPELINES).where(PIPELINES.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"pipeline {name!r} not found")
        return PipelineConfig.model_construct(**row)

    @operation("pipeline_version")
    def version(self, name: str) -> tuple[Any, ...] | None:
        """What tells one stored version of pipeline ``name`` from another (its ``updated_at``,
        checksum, file and load error: a runner keeps the parsed spec under it); None if there
        is no such pipeline. One indexed read of a few columns."""
        prepared = self.db.prepare(
            "pipeline_version", lambda: select(*_VERSION).where(PIPELINES.c.name == bindparam("name"))
        )
        rows = self.db.fetch(prepared, {"name": name})
        return tuple(rows[0]) if rows else None

    @operation("pipeline_versions")
    def versions(self, names: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        """:meth:`version` of each of ``names`` that exists, in one read (a tick's fires)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(PIPELINES.c.name, *_VERSION).where(PIPELINES.c.name.in_(wanted))).all()
        return {row[0]: tuple(row[1:]) for row in rows}

    @operation("list_pipelines")
    def all(self) -> list[PipelineConfig]:
        with self.db.read() as conn:
            rows = conn.execute(select(PIPELINES).order_by(PIPELINES.c.name)).mappings()
            return [PipelineConfig.model_construct(**r) for r in rows]

    @operation("delete_pipeline")
    def delete(self, name: str) -> None:
        with self.db.write() as conn:
            result = conn.execute(delete(PIPELINES).where(PIPELINES.c.name == name))
        if result.rowcount == 0:
            raise NotFound(f"pipeline {name!r} not found")

    @operation("apply_pipeline_changes")
    def apply(self, changes: Iterable[tuple[str, Any]]) -> None:
        """Make ``changes`` in one transaction, in their order: ``("delete", name)`` (a name
        already gone is no error), ``("insert", row)``, ``("update", row)`` (the stored row of
        its name replaced). A folder's sync is one such call, so no reader sees the table
        half-synced (a name between the file that gave it up and the copy that takes it). A
        name inserted meanwhile by someone else, or updated after it went, is :class:`Conflict`
        and nothing is changed."""
        now = utcnow()
        try:
            with self.db.write() as conn:
                for kind, item in changes:
                    if kind == "delete":
                        conn.execute(delete(PIPELINES).where(PIPELINES.c.name == item))
                        continue
                    item.updated_at = now
                    if kind == "insert":
                        item.created_at = as_utc(item.created_at) or now
                        conn.execute(insert(PIPELINES), values_of(item, PIPELINES))
                    elif self._update(conn, item) == 0:
                        raise Conflict(f"pipeline {item.name!r} was removed meanwhile")
        except Exception as exc:
            if self.db.is_integrity_error(exc):
                raise Conflict(f"pipelines were changed meanwhile: {self.db.describe(exc)}") from None
            raise

    @staticmethod
    def _update(conn: Any, pipeline: PipelineConfig) -> int:
        """Replace the stored row of ``pipeline.name``; the number of rows changed."""
        values = values_of(pipeline, PIPELINES)
        values.pop("name")
        values.pop("created_at")
        return conn.execute(update(PIPELINES).where(PIPELINES.c.name == pipeline.name).values(**values)).rowcount

    @operation("update_pipeline")
    def update(self, pipeline: PipelineConfig) -> PipelineConfig:
        pipeline.updated_at = utcnow()
        with self.db.write() as conn:
            changed = self._update(conn, pipeline)
        if changed == 0:
            raise NotFound(f"pipeline {pipeline.name!r} not found")
        return pipeline
