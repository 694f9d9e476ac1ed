"""The seed's three tables as SQLModel models, with the columns Mimir's features add.

Column names and table names are the seed's. Everything added beyond the seed is listed in
the migration that adds it (``migrations/versions/0002_mimir_columns.py``).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import Column, ForeignKey, Index, String, Table
from sqlmodel import Field, SQLModel

# FINISHED and WorkerStatus are re-exported (their callers import them from here); the aliases say so.
from ..constants import FINISHED as FINISHED
from ..constants import NAME_LENGTH, MisfirePolicy, Status, TriggeredBy
from ..constants import WorkerStatus as WorkerStatus
from .types import JSONText, LongText, Seconds, UTCDateTime, as_utc, utcnow

M = TypeVar("M", bound=SQLModel)


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def queues_text(queues: Any) -> str | None:
    """``workers.queues`` as stored: the names comma-separated (None for none)."""
    return ",".join(sorted(queues)) or None


def check_queue_name(name: Any) -> str:
    """A queue name as given, or ValueError saying what is wrong with it."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"queue name {name!r}: use 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
        )
    return name


class ScheduledJob(SQLModel):
    """A job: a pipeline on a cron schedule (table ``scheduled_jobs``)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=NAME_LENGTH)
    name: str = Field(max_length=NAME_LENGTH)
    pipeline: str = Field(max_length=NAME_LENGTH)
    cron_expr: str = Field(max_length=NAME_LENGTH)
    enabled: bool = True
    next_run: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_run: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_result: str | None = Field(default=None, sa_type=LongText)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Mimir's additions (schema version 2)
    description: str | None = Field(default="", sa_type=LongText)
    timezone: str = Field(default="UTC", max_length=64)
    timeout_seconds: float | None = Field(default=None, sa_type=Seconds)
    max_retries: int = 0
    retry_backoff_seconds: float = Field(default=30.0, sa_type=Seconds)
    misfire_policy: str = Field(default=MisfirePolicy.once.value, max_length=16)
    misfire_grace_seconds: float = Field(default=60.0, sa_type=Seconds)
    misfire_cap: int = 10
    max_concurrent: int = 1
    priority: int = 0
    # The queue its runs go to: only instances serving it fire and run them (schema version 8).
    queue: str = Field(default=DEFAULT_QUEUE, max_length=64)


class PipelineConfig(SQLModel):
    """A pipeline definition as stored (table ``pipelines``)."""

    name: str = Field(primary_key=True, max_length=NAME_LENGTH)
    description: str | None = Field(default=None, sa_type=LongText)
    config: str = Field(sa_type=LongText)  # the pipeline definition, as JSON text
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Mimir's additions (schema version 2)
    enabled: bool = True
    source_path: str | None = Field(default=None, sa_type=LongText)
    checksum: str | None = Field(default=None, max_length=64)
    load_error: str | None = Field(default=None, sa_type=LongText)


class JobExecutionRecord(SQLModel):
    """One run of a pipeline, with its steps (table ``job_executions``)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    # NULL for a pipeline run outside any job (``mimir-tui pipelines run``).
    job_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(NAME_LENGTH),
            ForeignKey("scheduled_jobs.id", ondelete="CASCADE", name="fk_job_executions_job_id"),
            nullable=True,
        ),
    )
    pipeline: str = Field(max_length=NAME_LENGTH)
    start_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    end_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration: int | None = None  # milliseconds
    status: str = Field(default=Status.running.value, max_length=16)
    error: str | None = Field(default=None, sa_type=LongText)
    context: dict[str, Any] | None = Field(default=None, sa_type=JSONText)
    steps: list[dict[str, Any]] | None = Field(default=None, sa_type=JSONText)
    triggered_by: str = Field(default=TriggeredBy.manual.value, max_length=16)
    # Mimir's additions (schema version 2)
    scheduled_for: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempt: int = 1
    worker_id: str | None = Field(default=None, max_length=128)
    cancel_requested: bool = False
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def step_records(self) -> list[StepRecord]:
        return [StepRecord.model_validate(s) for s in (self.steps or [])]


class StepRecord(BaseModel):
    """One step of an execution, kept in ``job_executions.steps`` as JSON."""

    step_name: str
    plugin: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None  # milliseconds
    status: str = Status.queued.value
    error: str | None = None
    input: Any = None
    output: Any = None

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("start_time", "end_time"):
            value = getattr(self, key)
            data[key] = as_utc(value).isoformat() if value else None
        return data


class Worker(SQLModel):
    """An instance of Mimir that fires schedules and claims queued runs (table ``workers``, schema
    version 3)."""

    id: str = Field(primary_key=True, max_length=128)
    host: str = Field(max_length=255)
    pid: int
    version: str = Field(max_length=32)
    # None when registered: the database's clock sets them (register_worker).
    started_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    heartbeat_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    status: str = Field(default="running", max_length=16)  # running, stopping, stopped, dead
    # Kernel boot and pid namespace (schema version 6): a pid means something only to a process
    # with the same key, so two containers sharing a hostname never judge each other's pids.
    instance_key: str | None = Field(default=None, max_length=128)
    # Its run slots and how many are taken, as of its last heartbeat (schema version 7).
    capacity: int | None = None
    running: int | None = None
    # The queues it serves, comma-separated (schema version 8); None: none (a command that
    # runs one execution itself).
    queues: str | None = Field(default=None, max_length=1024)


class RunRequest(SQLModel):
    """A run waiting in the queue: manual runs and retries (table ``run_queue``, schema version 3).

    Any instance claims it (SKIP LOCKED on PostgreSQL/MariaDB, BEGIN IMMEDIATE on SQLite);
    claiming deletes the request and creates its execution, with the id chosen at enqueue time
    (so whoever enqueued can follow it)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    job_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(NAME_LENGTH),
            ForeignKey("scheduled_jobs.id", ondelete="CASCADE", name="fk_run_queue_job_id"),
            nullable=True,
        ),
    )
    pipeline: str = Field(max_length=NAME_LENGTH)
    priority: int = 0
    available_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    triggered_by: str = Field(default=TriggeredBy.manual.value, max_length=16)
    attempt: int = 1
    execution_id: str = Field(default_factory=new_id, max_length=64)
    scheduled_for: datetime | None = Field(default=None, sa_type=UTCDateTime)
    requested_by: str | None = Field(default=None, max_length=NAME_LENGTH)
    queue: str = Field(default=DEFAULT_QUEUE, max_length=64)  # its job's (schema version 8)


def text_limits(table: Table) -> dict[str, int]:
    """The most characters each length-limited text column of ``table`` holds (VARCHAR(n)),
    by column name: what input is checked against, on every backend alike."""
    limits = {c.name: getattr(c.type, "length", None) for c in table.columns}  # String, or SQLModel's AutoString
    return {name: length for name, length in limits.items() if isinstance(length, int)}


def values_of(record: Any, table: Table) -> dict[str, Any]:
    """A record's values by column name: what an INSERT or UPDATE of ``table`` binds."""
    return {c.name: getattr(record, c.name) for c in table.columns}


def records(model: type[M], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[M]:
    """Instances of ``model`` from rows of converted values, in ``columns`` order, without
    validation (they are our own rows). Each is a copy of one blank instance with the row's
    values (``model_copy(update=...)``): pydantic's cheapest public way to make a model, about
    half the cost of ``model_construct``, which looks at every field's alias and default."""
    blank: M | None = _BLANKS.get(model)
    if blank is None:
        # A cast: pydantic's mypy plugin types ``model_construct`` on a ``type[M]`` as returning the bound, SQLModel.
        blank = _BLANKS[model] = cast(M, model.model_construct())
    copy = blank.model_copy
    return [copy(update=dict(zip(columns, row, strict=True))) for row in rows]


_BLANKS: dict[type, Any] = {}


@functools.cache
def every_field(model: type[BaseModel]) -> set[str]:
    """The names of ``model``'s fields, one set per model: the "fields set" of instances built
    with ``model_construct(_fields_set=every_field(model), ...)`` from a whole row, shared.
    pydantic's own set, made per instance, costs 0.7-2.2 KiB (2.2 MiB for the 1,000 jobs a
    scheduler keeps); pydantic only ever adds a field's name to it, which it holds already."""
    return set(model.model_fields)


# -- the tables ----------------------------------------------------------------------------
# The records above are plain pydantic models (SQLModel without ``table=True``): built from a
# row with ``model_construct`` they cost a few microseconds, and nothing reads or writes them
# through SQLAlchemy's ORM (Mimir runs Core statements). Each table is declared by a model that
# inherits the record's fields, SQLModel's pattern for "data model + table model".


class ScheduledJobTable(ScheduledJob, table=True):
    __tablename__ = "scheduled_jobs"
    __table_args__ = (Index("idx_scheduled_jobs_enabled_next_run", "enabled", "next_run"),)


class PipelineTable(PipelineConfig, table=True):
    __tablename__ = "pipelines"


class JobExecutionTable(JobExecutionRecord, table=True):
    __tablename__ = "job_executions"
    __table_args__ = (
        # With id last, newest-first pages (ORDER BY start_time DESC, id DESC) read the index
        # in order: no sort step (schema version 4).
        Index("idx_job_executions_job_id_start_time_id", "job_id", "start_time", "id"),
        Index("idx_job_executions_start_time_id", "start_time", "id"),
        # A page filtered by status reads that status's rows newest first, in order, however
        # many runs have it; the prefix serves counts by status (schema version 10).
        Index("idx_job_executions_status_start_time_id", "status", "start_time", "id"),
        # Counting a job's queued/running runs reads only those rows (schema version 5), and a
        # job's page filtered by status reads them in order (version 10).
        Index("idx_job_executions_job_id_status_start_time_id", "job_id", "status", "start_time", "id"),
        Index("ux_job_executions_run_key", "job_id", "scheduled_for", unique=True),
    )


class WorkerTable(Worker, table=True):
    __tablename__ = "workers"
    __table_args__ = (Index("idx_workers_heartbeat_at", "heartbeat_at"),)


class RunRequestTable(RunRequest, table=True):
    __tablename__ = "run_queue"
    __table_args__ = (
        Index("idx_run_queue_claim", "priority", "available_at"),
        Index("idx_run_queue_execution_id", "execution_id"),  # schema version 10
    )


def _table(model: type[SQLModel]) -> Table:
    """A table model's Core table, found in the metadata it registered in by its name: SQLModel sets
    ``__table__`` on table models but does not declare it, so type checkers do not know it."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


JOBS = _table(ScheduledJobTable)
PIPELINES = _table(PipelineTable)
EXECUTIONS = _table(JobExecutionTable)
WORKERS = _table(WorkerTable)
QUEUE = _table(RunRequestTable)

MODELS = (ScheduledJob, PipelineConfig, JobExecutionRecord, Worker, RunRequest)
