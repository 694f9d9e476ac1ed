"""Records read back behave as the records saved, on every backend, in every way that reads them.

On SQLite a page of executions keeps the values that need converting (timestamps, JSON,
flags) as the database returned them until they are first read (``models.ConvertOnRead``).
Each test here takes records fresh from the database, never read before, so that whatever it
does (attribute, serialisation, equality, copy, pickle, save) is the first thing to touch them.
"""

from __future__ import annotations

import copy
import json
import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from mimir_tui.commands import to_jsonable
from mimir_tui.persistence import JobExecutionRecord, PersistenceBackend, ScheduledJob, open_backend
from mimir_tui.persistence.models import PendingRow

UTC = timezone.utc
T0 = datetime(2024, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
CONTEXT = {"trigger": "scheduler", "params": {"batch": 7, "name": "Ærøskøbing ✓"}, "list": [1, 2.5, None, True]}
STEPS = [
    {"step_name": "extract", "plugin": "Input.api", "start_time": T0.isoformat(), "status": "success",
     "output": {"rows": 3}},
    {"step_name": "load", "plugin": "Output.json", "start_time": None, "status": "failed", "error": "boom"},
]


def saved(backend: PersistenceBackend) -> JobExecutionRecord:
    job = backend.save_job(ScheduledJob(name="nightly", pipeline="etl", cron_expr="0 2 * * *"))
    record = JobExecutionRecord(
        job_id=job.id, pipeline="etl", start_time=T0, end_time=T0 + timedelta(seconds=2), duration=2000,
        status="failed", error="step load: boom", context=CONTEXT, steps=STEPS, triggered_by="scheduler",
        scheduled_for=T0.replace(microsecond=0), attempt=2, worker_id="host:1", cancel_requested=True,
    )
    backend.save_execution(record)
    return record


def fresh(backend: PersistenceBackend, record: JobExecutionRecord) -> JobExecutionRecord:
    (got,) = backend.list_executions(record.job_id, 10)
    return got


EXPECTED = {
    "pipeline": "etl", "start_time": T0, "end_time": T0 + timedelta(seconds=2), "duration": 2000,
    "status": "failed", "error": "step load: boom", "context": CONTEXT, "steps": STEPS,
    "triggered_by": "scheduler", "scheduled_for": T0.replace(microsecond=0), "attempt": 2,
    "worker_id": "host:1", "cancel_requested": True,
}


def test_attributes(backend: PersistenceBackend) -> None:
    record = saved(backend)
    got = fresh(backend, record)
    for name, value in EXPECTED.items():
        assert getattr(got, name) == value, name
    assert got.start_time.tzinfo is not None and got.cancel_requested is True
    assert got.updated_at == record.updated_at
    # read twice: the same object (a converted value is kept, so edits in place stick)
    assert got.context is got.context and got.steps is got.steps
    assert fresh(backend, record).step_records()[1].error == "boom"


def test_values_the_database_holds_as_null(backend: PersistenceBackend) -> None:
    job = backend.save_job(ScheduledJob(name="n", pipeline="etl", cron_expr="0 2 * * *"))
    backend.save_execution(JobExecutionRecord(job_id=job.id, pipeline="etl", start_time=T0, status="running"))
    (got,) = backend.list_executions(job.id)
    assert (got.end_time, got.context, got.steps, got.scheduled_for, got.error) == (None, None, None, None, None)
    assert got.cancel_requested is False


def test_serialisation(backend: PersistenceBackend) -> None:
    record = saved(backend)
    dumped = fresh(backend, record).model_dump()
    assert {k: dumped[k] for k in EXPECTED} == EXPECTED
    as_json = json.loads(fresh(backend, record).model_dump_json())
    assert as_json["context"] == CONTEXT and as_json["steps"] == STEPS
    assert as_json["start_time"] == "2024-03-10T12:00:00.123456Z"
    assert fresh(backend, record).model_dump(mode="json", include={"end_time"}) == {"end_time": "2024-03-10T12:00:02.123456Z"}
    # inside something else that pydantic serialises
    (listed,) = TypeAdapter(list[JobExecutionRecord]).dump_python([fresh(backend, record)], mode="json")
    assert listed == as_json
    # the CLI's --json
    assert to_jsonable(fresh(backend, record))["context"] == CONTEXT


def test_equality_repr_dict_copy_and_pickle(backend: PersistenceBackend) -> None:
    record = saved(backend)  # built in Python: every value converted
    assert fresh(backend, record) == record
    assert record == fresh(backend, record)
    assert fresh(backend, record) == fresh(backend, record)
    assert fresh(backend, record) == backend.get_execution(record.id)
    assert fresh(backend, record) != JobExecutionRecord(**{**fresh(backend, record).model_dump(), "context": {}})
    shown = repr(fresh(backend, record))
    assert "PendingRow" not in shown and "context={'trigger': 'scheduler'" in shown
    assert dict(fresh(backend, record))["steps"] == STEPS
    state = fresh(backend, record).__getstate__()["__dict__"]  # what pickle carries to another process
    assert {k: state[k] for k in EXPECTED} == EXPECTED
    for clone in (copy.copy, copy.deepcopy, lambda r: r.model_copy(), lambda r: pickle.loads(pickle.dumps(r))):
        got = clone(fresh(backend, record))
        assert {name: getattr(got, name) for name in EXPECTED} == EXPECTED
    # a shallow copy shares the values (as a copy of any pydantic model does); a deep one does not
    original = fresh(backend, record)
    copy.copy(original).context["params"]["batch"] = 8
    assert original.context["params"]["batch"] == 8
    copy.deepcopy(original).context["params"]["batch"] = 9
    assert original.context["params"]["batch"] == 8


def test_sqlalchemys_view_of_a_record(backend: PersistenceBackend) -> None:
    """The first write gives a record SQLAlchemy's state; it holds values, never a pending row."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import attributes

    record = saved(backend)
    got = fresh(backend, record)
    got.status = "success"
    assert inspect(got).attrs.context.value == CONTEXT
    assert attributes.get_history(got, "status").deleted == ["failed"]
    got.context = {"new": 1}
    assert attributes.get_history(got, "context").deleted == [CONTEXT]


def test_json_schema_of_serialised_records() -> None:
    schema = JobExecutionRecord.model_json_schema(mode="serialization")
    assert set(EXPECTED) <= set(schema["properties"])


def test_saving_a_record_never_read(backend: PersistenceBackend) -> None:
    """Only status changes; everything the record holds unread goes back as it was."""
    record = saved(backend)
    got = fresh(backend, record)
    got.status = "success"
    backend.save_execution(got)
    again = fresh(backend, record)
    assert {name: getattr(again, name) for name in EXPECTED} == {**EXPECTED, "status": "success"}


def test_edits_in_place_and_assignments_are_saved(backend: PersistenceBackend) -> None:
    record = saved(backend)
    got = fresh(backend, record)
    got.steps.append({"step_name": "notify", "plugin": "Output.json", "status": "success"})
    got.context = {"replaced": True}
    got.end_time = T0 + timedelta(minutes=1)
    assert got.context == {"replaced": True}  # assigned before it was ever read: the new value
    backend.save_execution(got)
    again = fresh(backend, record)
    assert [s["step_name"] for s in again.steps] == ["extract", "load", "notify"]
    assert again.context == {"replaced": True}
    assert again.end_time == T0 + timedelta(minutes=1)


def test_a_record_read_from_sqlite_saves_into_any_backend(backend: PersistenceBackend, sqlite_settings,
                                                         tmp_path: Path) -> None:
    """What a copy between databases does (``migrate --to``): read on SQLite, save elsewhere."""
    settings = sqlite_settings.model_copy(deep=True)
    settings.persistence.database_path = str(tmp_path / "source" / "mimir.db")
    source = open_backend(settings)
    try:
        record = saved(source)
        got = fresh(source, record)
        backend.save_job(source.get_job(record.job_id))
        backend.save_execution(got)
    finally:
        source.close()
    again = backend.get_execution(record.id)
    assert {name: getattr(again, name) for name in EXPECTED} == EXPECTED


def test_sqlite_pages_convert_values_on_first_read(sqlite_settings) -> None:
    """The mechanism itself: the timestamp and JSON columns wait in the row until read."""
    backend = open_backend(sqlite_settings)
    try:
        record = saved(backend)
        got = fresh(backend, record)
        pending = {k for k, v in got.__dict__.items() if isinstance(v, PendingRow)}
        assert pending == {"start_time", "end_time", "context", "steps", "scheduled_for", "cancel_requested",
                           "updated_at"}
        assert got.start_time == T0
        assert isinstance(got.__dict__["start_time"], datetime)
        assert isinstance(got.__dict__["context"], PendingRow)
    finally:
        backend.close()


@pytest.mark.parametrize("name", ["context", "start_time"])
def test_class_level_attributes_are_sqlalchemys(name: str) -> None:
    from sqlalchemy.orm.attributes import InstrumentedAttribute

    assert isinstance(getattr(JobExecutionRecord, name), InstrumentedAttribute)
