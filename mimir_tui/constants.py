"""Vocabulary the command line's parsers need, in a module that imports only the standard library.

``mimir-tui --help`` and a usage error must print without loading SQLAlchemy, SQLModel or
pydantic, yet the parsers list the execution statuses and the misfire policies. They read them
from here, and so does everything else (the persistence models re-export them): each list is
written once.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """The status of an execution (and of a step)."""

    queued = "queued"
    running = "running"
    success = "success"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"
    interrupted = "interrupted"
    missed = "missed"


#: A run that has ended, one way or another.
FINISHED = frozenset(
    {
        Status.success.value,
        Status.failed.value,
        Status.cancelled.value,
        Status.timed_out.value,
        Status.interrupted.value,
        Status.missed.value,
    }
)


class TriggeredBy(str, Enum):
    """What started a run."""

    scheduler = "scheduler"
    manual = "manual"
    api = "api"
    retry = "retry"


class WorkerStatus(str, Enum):
    """The state of an instance in the workers table."""

    running = "running"
    stopping = "stopping"  # draining: finishes its runs, takes no new work
    stopped = "stopped"
    dead = "dead"  # declared by a peer: its heartbeat went stale


class MisfirePolicy(str, Enum):
    """What a job does with fires later than its grace: skip them, run the latest once, or run all."""

    skip = "skip"
    once = "once"
    all = "all"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
MISFIRE_POLICIES: tuple[str, ...] = tuple(p.value for p in MisfirePolicy)

#: Characters a name or id column holds (VARCHAR(255): job ids, names, pipeline names, cron
#: expressions). The models declare those columns with it, and input is checked against it
#: before it reaches a database (SQLite would store more; PostgreSQL and MariaDB refuse).
NAME_LENGTH = 255
