"""The read model for pages: lean rows of executions, jobs and workers.

A page (the dashboard's panes, ``executions list``, ``jobs list``) shows a few columns of many
rows. Its rows are the driver's rows themselves, as tuples with named properties (the way
``namedtuple`` does it): no validation, no conversion up front. Times are parsed and JSON decoded when
an attribute is read (each read parses again: a page is drawn once per refresh). Full records, with every
field converted, come from ``get_execution`` and ``list_executions`` as the models of :mod:`.models`.

The raw values are what the driver returned: text on SQLite, naive UTC datetimes on the servers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar

from .types import as_utc, json_value, sqlite_datetime_value


def utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime, from any driver."""
    if value is None:
        return None
    if isinstance(value, str):
        return sqlite_datetime_value(value)
    return as_utc(value)


class LeanRow(tuple):
    """A row as the driver returned it (a tuple: made at C speed), its columns named by
    properties; times and JSON converted when read. ``as_dict()`` for JSON output."""

    __slots__ = ()
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    TIMES: ClassVar[frozenset[str]] = frozenset()
    JSON: ClassVar[frozenset[str]] = frozenset()
    FLAGS: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.COLUMNS[:3])})"


def _columns(cls: type[LeanRow]) -> type[LeanRow]:
    """A property per column, as namedtuple makes them; times, JSON and flags converted."""
    for index, name in enumerate(cls.COLUMNS):
        get = itemgetter(index)
        convert = utc if name in cls.TIMES else json_value if name in cls.JSON else bool if name in cls.FLAGS else None
        setattr(cls, name, property(get if convert is None else _converted(get, convert), doc=name))
    return cls


def _converted(get: Callable[[Any], Any], convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def read(row: Any) -> Any:
        return convert(get(row))

    return read


@_columns
class ExecutionRow(LeanRow):
    """A row of the execution history: everything but the run's context."""

    COLUMNS = (
        "id",
        "job_id",
        "pipeline",
        "start_time",
        "end_time",
        "duration",
        "status",
        "error",
        "steps",
        "triggered_by",
        "scheduled_for",
        "attempt",
        "worker_id",
        "updated_at",
    )
    TIMES = frozenset({"start_time", "end_time", "scheduled_for", "updated_at"})
    JSON = frozenset({"steps"})
    __slots__ = ()

    if TYPE_CHECKING:  # the properties _columns makes
        id: str
        job_id: str | None
        pipeline: str
        start_time: datetime
        end_time: datetime | None
        duration: int | None
        status: str
        error: str | None
        steps: list[dict[str, Any]] | None
        triggered_by: str
        scheduled_for: datetime | None
        attempt: int
        worker_id: str | None
        updated_at: datetime | None


@_columns
class JobRow(LeanRow):
    """A row of the jobs list."""

    COLUMNS = (
        "id",
        "name",
        "pipeline",
        "cron_expr",
        "timezone",
        "enabled",
        "next_run",
        "last_run",
        "last_result",
        "queue",
        "priority",
        "updated_at",
    )
    TIMES = frozenset({"next_run", "last_run", "updated_at"})
    FLAGS = frozenset({"enabled"})  # 0/1 on SQLite and MySQL
    __slots__ = ()

    if TYPE_CHECKING:
        id: str
        name: str
        pipeline: str
        cron_expr: str
        timezone: str
        enabled: bool
        next_run: datetime | None
        last_run: datetime | None
        last_result: str | None
        queue: str
        priority: int
        updated_at: datetime


@_columns
class WorkerRow(LeanRow):
    """A row of the workers table: an instance and its last heartbeat."""

    COLUMNS = (
        "id",
        "host",
        "pid",
        "version",
        "started_at",
        "heartbeat_at",
        "status",
        "instance_key",
        "capacity",
        "running",
        "queues",
    )
    TIMES = frozenset({"started_at", "heartbeat_at"})
    __slots__ = ()

    if TYPE_CHECKING:
        id: str
        host: str
        pid: int
        version: str
        started_at: datetime
        heartbeat_at: datetime
        status: str
        instance_key: str | None
        capacity: int | None
        running: int | None
        queues: str | None

    def serves(self) -> set[str]:
        """The queues this instance serves."""
        return set(filter(None, (self.queues or "").split(",")))
