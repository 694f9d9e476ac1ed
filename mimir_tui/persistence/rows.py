"""The read model for pages: lean rows of executions, jobs and workers.

A page (the dashboard's panes, ``executions list``, ``jobs list``) shows a few columns of many
rows. Its rows are plain slotted objects made straight from the driver's row: no validation, no
conversion up front. Times are parsed and JSON decoded when an attribute is read (each read
parses again: a page is drawn once per refresh). Full records, with every field converted, come
from ``get_execution`` and ``list_executions`` as the models of :mod:`.models`.

The raw values are what the driver returned: text on SQLite, naive UTC datetimes on the servers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from .types import as_utc, json_value, sqlite_datetime_value


def utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime, from any driver."""
    if value is None:
        return None
    if isinstance(value, str):
        return sqlite_datetime_value(value)
    return as_utc(value)


class LeanRow:
    """Columns in ``COLUMNS`` order, in slots; ``as_dict()`` for JSON output."""

    __slots__: ClassVar[tuple[str, ...]] = ()
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    #: Columns held raw and converted when read (times, JSON, flags): slot ``_<name>``.
    TIMES: ClassVar[frozenset[str]] = frozenset()
    JSON: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, row: Any) -> None:
        for slot, value in zip(self.__slots__, row):
            object.__setattr__(self, slot, value)

    @classmethod
    def slots_for(cls, columns: tuple[str, ...], times: frozenset[str], json: frozenset[str]) -> tuple[str, ...]:
        return tuple(f"_{c}" if c in times or c in json else c for c in columns)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.COLUMNS[:3])})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


def _converted(cls: type[LeanRow]) -> type[LeanRow]:
    """Add a property per time or JSON column that converts its slot when read."""
    for name in cls.TIMES:
        setattr(cls, name, property(lambda self, s=f"_{name}": utc(getattr(self, s)), doc=f"{name} (UTC)"))
    for name in cls.JSON:
        setattr(cls, name, property(lambda self, s=f"_{name}": json_value(getattr(self, s)), doc=f"{name} (JSON)"))
    return cls


@_converted
class ExecutionRow(LeanRow):
    """A row of the execution history: everything but the run's context."""

    COLUMNS = ("id", "job_id", "pipeline", "start_time", "end_time", "duration", "status", "error",
               "steps", "triggered_by", "scheduled_for", "attempt", "worker_id", "updated_at")
    TIMES = frozenset({"start_time", "end_time", "scheduled_for", "updated_at"})
    JSON = frozenset({"steps"})
    __slots__ = LeanRow.slots_for(COLUMNS, TIMES, JSON)

    id: str
    job_id: str | None
    pipeline: str
    duration: int | None
    status: str
    error: str | None
    triggered_by: str
    attempt: int
    worker_id: str | None


@_converted
class JobRow(LeanRow):
    """A row of the jobs list."""

    COLUMNS = ("id", "name", "pipeline", "cron_expr", "timezone", "enabled", "next_run", "last_run",
               "last_result", "queue", "priority", "updated_at")
    TIMES = frozenset({"next_run", "last_run", "updated_at"})
    __slots__ = LeanRow.slots_for(COLUMNS, TIMES, frozenset())

    id: str
    name: str
    pipeline: str
    cron_expr: str
    timezone: str
    enabled: bool
    last_result: str | None
    queue: str
    priority: int

    def __init__(self, row: Any) -> None:
        super().__init__(row)
        object.__setattr__(self, "enabled", bool(self.enabled))  # 0/1 on SQLite and MySQL


@_converted
class WorkerRow(LeanRow):
    """A row of the workers table: an instance and its last heartbeat."""

    COLUMNS = ("id", "host", "pid", "version", "started_at", "heartbeat_at", "status", "instance_key",
               "capacity", "running", "queues")
    TIMES = frozenset({"started_at", "heartbeat_at"})
    __slots__ = LeanRow.slots_for(COLUMNS, TIMES, frozenset())

    id: str
    host: str
    pid: int
    version: str
    status: str
    instance_key: str | None
    capacity: int | None
    running: int | None
    queues: str | None

    def serves(self) -> set[str]:
        """The queues this instance serves."""
        return set(filter(None, (self.queues or "").split(",")))
