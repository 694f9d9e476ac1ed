"""Vocabulary the command line's parsers need, in a module that imports only the standard library.

``mimir-tui --help`` and a usage error must print without loading SQLAlchemy, SQLModel or
pydantic (issue 8, item 6), yet the parsers list the execution statuses and the misfire
policies. They read them from here; the persistence models are meant to import these enums
from here too, so that each list is written once (until then a unit test checks that both
agree: tests/unit/test_cli_imports.py).
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


class MisfirePolicy(str, Enum):
    """What a job does with fires later than its grace: skip them, run the latest once, or run all."""

    skip = "skip"
    once = "once"
    all = "all"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
MISFIRE_POLICIES: tuple[str, ...] = tuple(p.value for p in MisfirePolicy)
