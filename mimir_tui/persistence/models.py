"""The seed's three tables as SQLModel models, with the columns Mimir's features add.

Column names and table names are the seed's. Everything added beyond the seed is listed in
the migration that adds it (``migrations/versions/0002_mimir_columns.py``).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from enum import Enum
from typing import Any, Optional

from pydantic import BaseModel, model_serializer
from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from .types import JSONText, LongText, UTCDateTime, as_utc, utcnow


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


class Status(str, Enum):
    queued = "queued"
    running = "running"
    success = "success"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"
    interrupted = "interrupted"
    missed = "missed"


DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def queues_text(queues: Any) -> Optional[str]:
    """``workers.queues`` as stored: the names comma-separated (None for none)."""
    return ",".join(sorted(queues)) or None


def serves(worker: dict[str, Any]) -> set[str]:
    """The queues a row of the workers table serves."""
    return set(filter(None, (worker.get("queues") or "").split(",")))


def check_queue_name(name: Any) -> str:
    """A queue name as given, or ValueError saying what is wrong with it."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise ValueError(f"queue name {name!r}: use 1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit")
    return name


FINISHED = frozenset({"success", "failed", "cancelled", "timed_out", "interrupted", "missed"})


class TriggeredBy(str, Enum):
    scheduler = "scheduler"
    manual = "manual"
    api = "api"
    retry = "retry"


class MisfirePolicy(str, Enum):
    skip = "skip"
    once = "once"
    all = "all"


class _LazyState:
    """Rows read from the database become instances without SQLAlchemy's per-object state
    (a third of the cost of reading a row); it is made on the first attribute write, which
    is the only thing that needs it here (Mimir uses Core, never an ORM session)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_sa_instance_state" and "_sa_instance_state" not in self.__dict__:
            if isinstance(self, _ConvertsOnRead):
                materialize(self)  # SQLAlchemy's state (history, inspect) sees values
            type(self)._sa_class_manager.setup_instance(self)  # type: ignore[attr-defined]
        super().__setattr__(name, value)


class PendingRow(tuple):
    """``(row, converters)``: a row as the database returned it, for the attributes of an
    instance that are converted on first read (see :class:`ConvertOnRead`). Immutable, so
    copies of an instance share it."""

    __slots__ = ()

    def __copy__(self) -> "PendingRow":
        return self

    def __deepcopy__(self, memo: dict) -> "PendingRow":
        return self


class ConvertOnRead:
    """The class attribute of a column whose value an instance may still hold unconverted.

    A page of executions read on SQLite keeps the timestamps, the JSON context and steps and
    the flags as the database returned them (a :class:`PendingRow` in the instance's
    ``__dict__``), because converting them is most of the cost of a read and most readers
    (the dashboard's history, ``executions list``) look at a few of them. The first read of
    such an attribute converts it and keeps the result in the instance. Writes, class-level
    access (``JobExecutionRecord.context`` in a query) and unloaded attributes go to
    SQLAlchemy's attribute as before. (Two threads reading one fresh instance at the same
    moment may each convert a value; the instance keeps one of the two equal results.)
    """

    __slots__ = ("attr", "key", "index")

    def __init__(self, attr: Any, index: int) -> None:
        self.attr = attr  # SQLAlchemy's InstrumentedAttribute
        self.key = attr.key
        self.index = index  # the column's position in the rows of the PendingRow

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self.attr
        values = obj.__dict__
        try:
            value = values[self.key]
        except KeyError:  # not loaded: SQLAlchemy's business
            return self.attr.__get__(obj, owner)
        if value.__class__ is PendingRow:
            value = values[self.key] = _convert(value, self.index)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        self.attr.__set__(obj, value)

    def __delete__(self, obj: Any) -> None:
        self.attr.__delete__(obj)


def _convert(pending: PendingRow, index: int) -> Any:
    row, converters = pending
    raw = row[index]
    return None if raw is None else converters[index](raw)


def convert_on_read(model: type, columns: list[tuple[str, int]]) -> None:
    """Let ``model`` instances hold these columns as a :class:`PendingRow` (name, position in
    the row). Idempotent; the model must be one of those that takes :class:`_ConvertsOnRead`."""
    if not issubclass(model, _ConvertsOnRead):
        raise TypeError(f"{model.__name__} does not convert values on read")
    if [(d.key, d.index) for d in model._converted_on_read] == list(columns):
        return  # every backend opened installs the same
    installed = []
    for name, index in columns:
        current = model.__dict__[name]
        attr = current.attr if isinstance(current, ConvertOnRead) else current
        descriptor = ConvertOnRead(attr, index)
        type.__setattr__(model, name, descriptor)  # not DeclarativeMeta's: this is no new column
        installed.append(descriptor)
    type.__setattr__(model, "_converted_on_read", tuple(installed))


def materialize(obj: Any) -> Any:
    """Convert every value of ``obj`` still pending; returns ``obj``."""
    values = obj.__dict__
    for descriptor in type(obj)._converted_on_read:
        value = values.get(descriptor.key)
        if value.__class__ is PendingRow:
            values[descriptor.key] = _convert(value, descriptor.index)
    return obj


class _ConvertsOnRead:
    """What reads ``__dict__`` directly (equality, repr, ``dict(obj)``, copies, pickling, and
    SQLAlchemy's state, made on the first write) sees converted values. (Serialisation does
    too, through the model serializer of the model itself.) ``vars(obj)`` does not."""

    _converted_on_read: tuple[ConvertOnRead, ...] = ()

    def __eq__(self, other: object) -> bool:
        materialize(self)
        if isinstance(other, _ConvertsOnRead):
            materialize(other)
        return super().__eq__(other)  # type: ignore[misc]

    __hash__ = None  # type: ignore[assignment]  # as pydantic models: mutable, unhashable

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        materialize(self)
        return super().__repr_args__()  # type: ignore[misc]

    def __iter__(self):  # type: ignore[no-untyped-def]
        materialize(self)
        return super().__iter__()  # type: ignore[misc]

    def __getstate__(self) -> dict[Any, Any]:
        materialize(self)
        return super().__getstate__()  # type: ignore[misc]

    def __copy__(self):  # type: ignore[no-untyped-def]
        # A shallow copy shares the converted values, as a copy of any record does.
        materialize(self)
        return super().__copy__()  # type: ignore[misc]


class ScheduledJob(_LazyState, SQLModel, table=True):
    __tablename__ = "scheduled_jobs"
    __table_args__ = (Index("idx_scheduled_jobs_enabled_next_run", "enabled", "next_run"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=255)
    name: str = Field(max_length=255)
    pipeline: str = Field(max_length=255)
    cron_expr: str = Field(max_length=255)
    enabled: bool = True
    next_run: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    last_run: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    last_result: Optional[str] = Field(default=None, sa_type=LongText)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Mimir's additions (schema version 2)
    description: Optional[str] = Field(default="", sa_type=LongText)
    timezone: str = Field(default="UTC", max_length=64)
    timeout_seconds: Optional[float] = None
    max_retries: int = 0
    retry_backoff_seconds: float = 30.0
    misfire_policy: str = Field(default=MisfirePolicy.once.value, max_length=16)
    misfire_grace_seconds: float = 60.0
    misfire_cap: int = 10
    max_concurrent: int = 1
    priority: int = 0
    # The queue its runs go to: only instances serving it fire and run them (schema version 8).
    queue: str = Field(default=DEFAULT_QUEUE, max_length=64)


class PipelineConfig(_LazyState, SQLModel, table=True):
    __tablename__ = "pipelines"

    name: str = Field(primary_key=True, max_length=255)
    description: Optional[str] = Field(default=None, sa_type=LongText)
    config: str = Field(sa_type=LongText)  # the pipeline definition, as JSON text
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Mimir's additions (schema version 2)
    enabled: bool = True
    source_path: Optional[str] = Field(default=None, sa_type=LongText)
    checksum: Optional[str] = Field(default=None, max_length=64)
    load_error: Optional[str] = Field(default=None, sa_type=LongText)


class JobExecutionRecord(_ConvertsOnRead, _LazyState, SQLModel, table=True):
    __tablename__ = "job_executions"
    __table_args__ = (
        # With id last, newest-first pages (ORDER BY start_time DESC, id DESC) read the index
        # in order: no sort step (schema version 4).
        Index("idx_job_executions_job_id_start_time_id", "job_id", "start_time", "id"),
        Index("idx_job_executions_start_time_id", "start_time", "id"),
        Index("idx_job_executions_status", "status"),
        # Counting a job's queued/running runs reads only those rows (schema version 5).
        Index("idx_job_executions_job_id_status", "job_id", "status"),
        Index("ux_job_executions_run_key", "job_id", "scheduled_for", unique=True),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    # NULL for a pipeline run outside any job (``mimir-tui pipelines run``).
    job_id: Optional[str] = Field(
        default=None,
        sa_column=Column(
            String(255), ForeignKey("scheduled_jobs.id", ondelete="CASCADE", name="fk_job_executions_job_id"),
            nullable=True,
        ),
    )
    pipeline: str = Field(max_length=255)
    start_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    end_time: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    duration: Optional[int] = None  # milliseconds
    status: str = Field(default=Status.running.value, max_length=16)
    error: Optional[str] = Field(default=None, sa_type=LongText)
    context: Optional[dict[str, Any]] = Field(default=None, sa_type=JSONText)
    steps: Optional[list[dict[str, Any]]] = Field(default=None, sa_type=JSONText)
    triggered_by: str = Field(default=TriggeredBy.manual.value, max_length=16)
    # Mimir's additions (schema version 2)
    scheduled_for: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    attempt: int = 1
    worker_id: Optional[str] = Field(default=None, max_length=128)
    cancel_requested: bool = False
    updated_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)

    @model_serializer(mode="wrap")
    def _serialize(self, handler):  # type: ignore[no-untyped-def]  # no return type: keeps the JSON schema
        return handler(materialize(self))

    def step_records(self) -> list["StepRecord"]:
        return [StepRecord.model_validate(s) for s in (self.steps or [])]


class StepRecord(BaseModel):
    """One step of an execution, kept in ``job_executions.steps`` as JSON."""

    step_name: str
    plugin: str
    start_time: Optional[datetime] = None
    end_time: Optional[datetime] = None
    duration: Optional[int] = None  # milliseconds
    status: str = Status.queued.value
    error: Optional[str] = None
    input: Any = None
    output: Any = None

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("start_time", "end_time"):
            value = getattr(self, key)
            data[key] = as_utc(value).isoformat() if value else None
        return data




class Worker(_LazyState, SQLModel, table=True):
    """An instance of Mimir that fires schedules and claims queued runs (schema version 3)."""

    __tablename__ = "workers"
    __table_args__ = (Index("idx_workers_heartbeat_at", "heartbeat_at"),)

    id: str = Field(primary_key=True, max_length=128)
    host: str = Field(max_length=255)
    pid: int
    version: str = Field(max_length=32)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    status: str = Field(default="running", max_length=16)  # running, stopping, stopped, dead
    # Kernel boot and pid namespace (schema version 6): a pid means something only to a process
    # with the same key, so two containers sharing a hostname never judge each other's pids.
    instance_key: Optional[str] = Field(default=None, max_length=128)
    # Its run slots and how many are taken, as of its last heartbeat (schema version 7).
    capacity: Optional[int] = None
    running: Optional[int] = None
    # The queues it serves, comma-separated (schema version 8); None: none (a command that
    # runs one execution itself).
    queues: Optional[str] = Field(default=None, max_length=1024)


class RunRequest(_LazyState, SQLModel, table=True):
    """A run waiting in the queue: manual runs and retries (schema version 3).

    Any instance claims it (SKIP LOCKED on PostgreSQL/MariaDB, BEGIN IMMEDIATE on SQLite);
    claiming deletes the request and creates its execution, with the id chosen at enqueue time
    (so whoever enqueued can follow it)."""

    __tablename__ = "run_queue"
    __table_args__ = (Index("idx_run_queue_claim", "priority", "available_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    job_id: Optional[str] = Field(
        default=None,
        sa_column=Column(
            String(255), ForeignKey("scheduled_jobs.id", ondelete="CASCADE", name="fk_run_queue_job_id"),
            nullable=True,
        ),
    )
    pipeline: str = Field(max_length=255)
    priority: int = 0
    available_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    triggered_by: str = Field(default=TriggeredBy.manual.value, max_length=16)
    attempt: int = 1
    execution_id: str = Field(default_factory=new_id, max_length=64)
    scheduled_for: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)
    requested_by: Optional[str] = Field(default=None, max_length=255)
    queue: str = Field(default=DEFAULT_QUEUE, max_length=64)  # its job's (schema version 8)


MODELS = (ScheduledJob, PipelineConfig, JobExecutionRecord, Worker, RunRequest)
