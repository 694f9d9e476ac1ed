"""Fixtures of the scheduler tests (helpers: sched_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sched_helpers import T0, Services, add_pipelines

from mimir_tui.persistence import open_backend
from mimir_tui.scheduler.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = Services(tmp_path)
    try:
        yield svc
    finally:
        svc.stop_all()


@pytest.fixture
def store(sqlite_settings):
    """A SQLite backend with the test pipelines imported."""
    backend = open_backend(sqlite_settings)
    add_pipelines(backend)
    try:
        yield backend
    finally:
        backend.close()
