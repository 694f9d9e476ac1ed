"""Prepared statements (one Core definition, compiled per dialect, run on the driver's
connection) bind what they are given, by name, on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select

from mimir_tui.persistence import PersistenceBackend, ScheduledJob
from mimir_tui.persistence.db import one_of
from mimir_tui.persistence.models import JOBS


def test_parameters_bind_by_name_and_fixed_values_stay(backend: PersistenceBackend) -> None:
    a = backend.save_job(ScheduledJob(name="a", pipeline="p", cron_expr="* * * * *", queue="gpu"))
    backend.save_job(ScheduledJob(name="b", pipeline="p", cron_expr="* * * * *", enabled=False))
    prepared = backend.db.prepare(
        "test_jobs_by_queue",
        lambda: (
            select(JOBS.c.id, JOBS.c.enabled)
            .where(JOBS.c.queue == bindparam("queue"), one_of(JOBS.c.pipeline, ["p", "q"]))
            .where(JOBS.c.name != bindparam("not_named"))
            .order_by(JOBS.c.name)
        ),
    )
    assert backend.db.fetch(prepared, {"not_named": "zzz", "queue": "gpu"}) == [[a.id, True]]
    assert backend.db.fetch(prepared, {"queue": "default", "not_named": "zzz"})[0][1] is False


def test_a_missing_parameter_is_an_error_not_null(backend: PersistenceBackend) -> None:
    prepared = backend.db.prepare("test_missing", lambda: select(JOBS.c.id).where(JOBS.c.id == bindparam("id")))
    with pytest.raises(KeyError, match="'id'"):
        prepared.params({"ident": "x"})
