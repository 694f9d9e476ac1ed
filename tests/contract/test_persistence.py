"""The PersistenceBackend contract, run on SQLite, PostgreSQL and MariaDB alike."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from mimir_tui.errors import BadInput, Conflict, MimirError, NotFound, PersistenceError
from mimir_tui.persistence import (
    JobExecutionRecord,
    PersistenceBackend,
    PipelineConfig,
    ScheduledJob,
    StepRecord,
    open_backend,
)
from mimir_tui.persistence.migrate import head_revision

T0 = datetime(2024, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)


def job(name: str = "nightly", **kw) -> ScheduledJob:
    kw.setdefault("pipeline", "etl")
    kw.setdefault("cron_expr", "0 2 * * *")
    return ScheduledJob(name=name, **kw)


def execution(job_id: str | None, start: datetime = T0, status: str = "success", **kw) -> JobExecutionRecord:
    kw.setdefault("pipeline", "etl")
    return JobExecutionRecord(job_id=job_id, start_time=start, status=status, **kw)


def saved_job(backend: PersistenceBackend, name: str = "nightly", **kw) -> ScheduledJob:
    return backend.save_job(job(name, **kw))


# -- jobs -------------------------------------------------------------------------------------


def test_job_crud(backend: PersistenceBackend) -> None:
    next_run = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    original = job(
        "nightly",
        description="loads the warehouse",
        timezone="Europe/Oslo",
        timeout_seconds=3600.123,  # seven digits: MySQL's 4-byte FLOAT kept 3600.12 (schema version 9)
        max_retries=3,
        retry_backoff_seconds=12.5,
        misfire_policy="all",
        misfire_cap=4,
        priority=7,
        next_run=next_run,
    )
    backend.save_job(original)

    got = backend.get_job(original.id)
    assert got.name == "nightly"
    assert got.pipeline == "etl"
    assert got.cron_expr == "0 2 * * *"
    assert got.enabled is True
    assert got.description == "loads the warehouse"
    assert got.timezone == "Europe/Oslo"
    assert got.timeout_seconds == 3600.123
    assert (got.max_retries, got.retry_backoff_seconds, got.misfire_policy, got.misfire_cap, got.priority) == (
        3,
        12.5,
        "all",
        4,
        7,
    )
    assert got.next_run == next_run
    assert got.last_run is None
    assert got.created_at.tzinfo is not None and got.updated_at.tzinfo is not None

    got.enabled = False
    got.last_result = "ok"
    got.cron_expr = "*/5 * * * *"
    got.last_run = datetime(2024, 5, 1, 2, 0, 1, tzinfo=UTC)
    before_update = got.updated_at
    backend.update_job(got)
    again = backend.get_job(original.id)
    assert again.enabled is False
    assert again.cron_expr == "*/5 * * * *"
    # last_run and last_result are the scheduler's: written only by set_job_schedule
    assert (again.last_run, again.last_result) == (None, None)
    assert again.created_at == got.created_at
    assert again.updated_at >= before_update

    backend.delete_job(original.id)
    with pytest.raises(NotFound):
        backend.get_job(original.id)
    assert backend.list_jobs() == []


def test_edit_from_a_stale_copy_keeps_the_schedulers_writes(backend: PersistenceBackend) -> None:
    """``jobs edit --priority 5`` loads the job, the scheduler fires it meanwhile: the edit must
    not put back the last_run, last_result and next_run it loaded."""
    from mimir_tui.scheduler import jobs as job_ops

    loaded_next = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    fired, new_next = datetime(2024, 5, 1, 2, 0, 3, tzinfo=UTC), datetime(2024, 5, 2, 2, 0, tzinfo=UTC)
    original = saved_job(backend, next_run=loaded_next)

    def scheduler_fires(job_id: str) -> None:
        assert backend.jobs.set_schedule(job_id, last_run=fired, last_result="success", next_run=new_next)

    def assert_schedulers_values(job_id: str, priority: int) -> None:
        got = backend.get_job(job_id)
        assert got.priority == priority
        assert (got.last_run, got.last_result, got.next_run) == (fired, "success", new_next)

    # the edit path of `mimir-tui jobs edit`, with the fire between its load and its write
    real_get_job = backend.get_job

    def get_job_then_fire(job_id: str) -> ScheduledJob:
        stale = real_get_job(job_id)
        scheduler_fires(job_id)
        return stale

    backend.get_job = get_job_then_fire  # type: ignore[method-assign]
    try:
        job_ops.update_job(backend, original.id, priority=5)
    finally:
        del backend.get_job
    assert_schedulers_values(original.id, 5)

    # the backend call itself, with the fields that changed
    other = saved_job(backend, "other", next_run=loaded_next)
    stale = backend.get_job(other.id)
    scheduler_fires(other.id)
    stale.priority = 6
    backend.update_job(stale, fields={"priority"})
    assert_schedulers_values(other.id, 6)

    # without fields (the older call): last_run and last_result are still never written
    third = saved_job(backend, "third", next_run=loaded_next)
    stale = backend.get_job(third.id)
    scheduler_fires(third.id)
    stale.priority = 7
    backend.update_job(stale)
    got = backend.get_job(third.id)
    assert (got.priority, got.last_run, got.last_result) == (7, fired, "success")

    with pytest.raises(ValueError):
        backend.update_job(stale, fields={"last_result"})


def test_list_jobs_sorted_and_filtered(backend: PersistenceBackend) -> None:
    c = saved_job(backend, "charlie")
    a = saved_job(backend, "alpha", enabled=False)
    b = saved_job(backend, "bravo")
    assert [j.name for j in backend.list_jobs()] == ["alpha", "bravo", "charlie"]
    assert {j.id for j in backend.list_jobs(enabled=True)} == {b.id, c.id}
    assert [j.id for j in backend.list_jobs(enabled=False)] == [a.id]


def test_unknown_ids_are_not_found_with_exit_code_2(backend: PersistenceBackend) -> None:
    ghost_job = job("ghost")
    calls = [
        lambda: backend.get_job("nope"),
        lambda: backend.delete_job("nope"),
        lambda: backend.update_job(ghost_job),
        lambda: backend.get_pipeline("nope"),
        lambda: backend.delete_pipeline("nope"),
        lambda: backend.update_pipeline(PipelineConfig(name="nope", config="{}")),
        lambda: backend.get_execution("nope"),
        lambda: backend.request_cancel("nope"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as info:
            call()
        assert isinstance(info.value, BadInput)
        assert info.value.exit_code == 2
        assert "nope" in str(info.value) or ghost_job.id in str(info.value)
    # update of an unknown row must not have created it
    assert backend.list_jobs() == []
    assert backend.list_pipelines() == []


def test_duplicate_job_is_a_conflict(backend: PersistenceBackend) -> None:
    first = saved_job(backend, "one")
    with pytest.raises(Conflict) as info:
        backend.save_job(job("two", id=first.id))
    assert first.id in str(info.value)
    assert info.value.exit_code == 1
    assert backend.get_job(first.id).name == "one"


# -- pipelines --------------------------------------------------------------------------------


def test_pipeline_crud(backend: PersistenceBackend) -> None:
    definition = json.dumps({"name": "etl", "steps": [{"name": "get", "plugin": "Input.api"}]})
    p = backend.save_pipeline(PipelineConfig(name="etl", description="extract", config=definition))
    got = backend.get_pipeline("etl")
    assert got.config == definition
    assert json.loads(got.config)["steps"][0]["plugin"] == "Input.api"
    assert got.description == "extract"
    assert got.enabled is True
    assert got.created_at == p.created_at

    got.description = "extract, transform"
    got.enabled = False
    got.checksum = "ab" * 32
    got.load_error = "line 3: bad plugin"
    backend.update_pipeline(got)
    again = backend.get_pipeline("etl")
    assert (again.description, again.enabled, again.checksum, again.load_error) == (
        "extract, transform",
        False,
        "ab" * 32,
        "line 3: bad plugin",
    )

    backend.save_pipeline(PipelineConfig(name="alpha", config="{}"))
    assert [p.name for p in backend.list_pipelines()] == ["alpha", "etl"]
    with pytest.raises(Conflict):
        backend.save_pipeline(PipelineConfig(name="alpha", config='{"other": 1}'))
    assert backend.get_pipeline("alpha").config == "{}"

    backend.delete_pipeline("etl")
    with pytest.raises(NotFound):
        backend.get_pipeline("etl")
    assert [p.name for p in backend.list_pipelines()] == ["alpha"]


def test_pipeline_changes_are_made_together_or_not_at_all(backend: PersistenceBackend) -> None:
    """A folder's sync is one ``apply``: a name handed from one file to another is never
    missing, and a change that fails (a name someone else inserted meanwhile) leaves the table
    as it was, the changes before it included."""
    backend.save_pipeline(PipelineConfig(name="x", config='{"v": "a"}', source_path="/p/a.yaml"))
    backend.save_pipeline(PipelineConfig(name="y", config="{}", source_path="/p/a.yaml"))
    before = {p.name: (p.config, p.source_path, p.updated_at) for p in backend.list_pipelines()}

    y = backend.get_pipeline("y")
    y.load_error = "line 1: broken"
    with pytest.raises(Conflict, match="changed meanwhile"):
        backend.pipelines.apply(
            [
                ("delete", "x"),
                ("update", y),
                ("insert", PipelineConfig(name="z", config="{}")),
                ("insert", PipelineConfig(name="z", config="{}")),
            ]
        )
    assert {p.name: (p.config, p.source_path, p.updated_at) for p in backend.list_pipelines()} == before
    with pytest.raises(Conflict, match="'gone' was removed meanwhile"):
        backend.pipelines.apply([("delete", "y"), ("update", PipelineConfig(name="gone", config="{}"))])
    assert backend.get_pipeline("y").load_error is None

    backend.pipelines.apply(
        [
            ("delete", "x"),
            ("delete", "never-there"),
            ("insert", PipelineConfig(name="x", config='{"v": "b"}', source_path="/p/b.yaml")),
            ("update", y),
        ]
    )
    x = backend.get_pipeline("x")
    assert (x.config, x.source_path) == ('{"v": "b"}', "/p/b.yaml")
    assert x.created_at is not None and x.updated_at is not None
    assert backend.get_pipeline("y").load_error == "line 1: broken"


# -- executions -------------------------------------------------------------------------------


def test_execution_save_get_update(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    steps = [
        StepRecord(step_name="get", plugin="Input.api", start_time=T0, status="success", output={"n": 1}).to_json(),
    ]
    e = backend.save_execution(
        execution(
            j.id,
            status="running",
            context={"a": 1},
            steps=steps,
            triggered_by="scheduler",
            scheduled_for=T0,
            worker_id="host:1",
        )
    )
    got = backend.get_execution(e.id)
    assert got.job_id == j.id
    assert got.status == "running"
    assert got.context == {"a": 1}
    assert got.start_time == T0
    assert got.scheduled_for == T0
    assert got.triggered_by == "scheduler"
    assert got.attempt == 1
    assert got.worker_id == "host:1"
    assert got.cancel_requested is False
    assert got.updated_at is not None and got.updated_at.tzinfo is not None
    records = got.step_records()
    assert records[0].step_name == "get" and records[0].output == {"n": 1}
    assert records[0].start_time == T0

    # saving the same id again updates the row in place (the engine saves a run as it goes)
    got.status = "failed"
    got.end_time = T0 + timedelta(seconds=3)
    got.duration = 3000
    got.error = "step get: HTTP 500"
    got.context = {"a": 1, "b": [1, 2]}
    backend.save_execution(got)
    again = backend.get_execution(e.id)
    assert (again.status, again.duration, again.error) == ("failed", 3000, "step get: HTTP 500")
    assert again.end_time == T0 + timedelta(seconds=3)
    assert again.context == {"a": 1, "b": [1, 2]}
    assert len(backend.list_executions(j.id)) == 1


def test_execution_without_job(backend: PersistenceBackend) -> None:
    e = backend.save_execution(execution(None, pipeline="adhoc"))
    assert backend.get_execution(e.id).job_id is None
    assert [x.id for x in backend.list_executions()] == [e.id]


def test_execution_for_unknown_job_is_a_conflict(backend: PersistenceBackend) -> None:
    with pytest.raises(Conflict) as info:
        backend.save_execution(execution("no-such-job"))
    assert "no-such-job" in str(info.value)
    assert backend.list_executions() == []


def test_list_executions_newest_first_limit_and_filters(backend: PersistenceBackend) -> None:
    a = saved_job(backend, "a")
    b = saved_job(backend, "b")
    statuses = ["success", "failed", "success", "running", "cancelled"]
    rows_a = [
        backend.save_execution(execution(a.id, T0 + timedelta(minutes=i), status=statuses[i % 5])) for i in range(10)
    ]
    rows_b = [backend.save_execution(execution(b.id, T0 + timedelta(minutes=i, seconds=30))) for i in range(5)]

    listed = backend.list_executions(a.id, limit=50)
    assert [r.id for r in listed] == [r.id for r in reversed(rows_a)]
    assert all(x.start_time > y.start_time for x, y in pairwise(listed))

    assert [r.id for r in backend.list_executions(a.id, limit=3)] == [r.id for r in rows_a[::-1][:3]]
    assert backend.list_executions(a.id, limit=0) == []
    assert [r.id for r in backend.list_executions(b.id)] == [r.id for r in reversed(rows_b)]

    everything = backend.list_executions(None, limit=100)
    assert len(everything) == 15
    assert everything[0].id == rows_a[-1].id  # 09:00 > 04:30
    assert [r.start_time for r in everything] == sorted((r.start_time for r in everything), reverse=True)

    failed = backend.list_executions(a.id, status="failed")
    assert {r.id for r in failed} == {rows_a[1].id, rows_a[6].id}
    done = backend.list_executions(a.id, status=["cancelled", "running"])
    assert {r.status for r in done} == {"cancelled", "running"} and len(done) == 4


def test_list_executions_keyset_paging(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    # Several rows share a start time: the cursor must break ties by id, skipping and repeating none.
    made = []
    for i in range(23):
        made.append(backend.save_execution(execution(j.id, T0 + timedelta(seconds=i // 3))))
    expected = sorted(made, key=lambda r: (r.start_time, r.id), reverse=True)

    pages: list[list[str]] = []
    cursor = None
    while True:
        page = backend.list_executions(j.id, limit=5, before=cursor)
        if not page:
            break
        pages.append([r.id for r in page])
        cursor = (page[-1].start_time, page[-1].id)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == [r.id for r in expected]


def test_cascade_deletes_executions_of_a_deleted_job(backend: PersistenceBackend) -> None:
    doomed = saved_job(backend, "doomed")
    kept = saved_job(backend, "kept")
    for i in range(3):
        backend.save_execution(execution(doomed.id, T0 + timedelta(minutes=i)))
    survivor = backend.save_execution(execution(kept.id))
    adhoc = backend.save_execution(execution(None))
    backend.delete_job(doomed.id)
    assert backend.list_executions(doomed.id) == []
    assert {r.id for r in backend.list_executions()} == {survivor.id, adhoc.id}
    assert backend.stats()["row_counts"]["job_executions"] == 2


def test_delete_old_executions_boundary(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    cutoff = datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    at_cutoff = backend.save_execution(execution(j.id, cutoff))
    just_older = backend.save_execution(execution(j.id, cutoff - timedelta(microseconds=1)))
    much_older_failed = backend.save_execution(execution(j.id, cutoff - timedelta(days=40), status="failed"))
    newer = backend.save_execution(execution(j.id, cutoff + timedelta(microseconds=1)))
    old_running = backend.save_execution(execution(j.id, cutoff - timedelta(days=3), status="running"))
    old_queued = backend.save_execution(execution(j.id, cutoff - timedelta(days=3, seconds=1), status="queued"))

    removed = backend.delete_old_executions(cutoff)
    assert removed == 2
    left = {r.id for r in backend.list_executions(j.id, limit=100)}
    assert left == {at_cutoff.id, newer.id, old_running.id, old_queued.id}
    assert just_older.id not in left and much_older_failed.id not in left
    # a second pass finds nothing more
    assert backend.delete_old_executions(cutoff) == 0


def test_delete_old_executions_accepts_other_zones(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    backend.save_execution(execution(j.id, datetime(2024, 6, 1, 11, 59, tzinfo=UTC)))
    kept = backend.save_execution(execution(j.id, datetime(2024, 6, 1, 12, 0, tzinfo=UTC)))
    cutoff = datetime(2024, 6, 1, 8, 0, tzinfo=ZoneInfo("America/New_York"))  # 12:00 UTC
    assert backend.delete_old_executions(cutoff) == 1
    assert [r.id for r in backend.list_executions(j.id)] == [kept.id]


def test_delete_old_executions_in_several_batches(backend_settings) -> None:
    from sqlalchemy import insert

    from mimir_tui.persistence.models import EXECUTIONS

    with open_backend(backend_settings) as backend:
        j = saved_job(backend)
        old = [execution(j.id, T0 - timedelta(days=10, seconds=i)) for i in range(260)]
        with backend.engine.begin() as conn:  # bulk insert: the point is the delete, not the saves
            rows = [{c.name: getattr(e, c.name) for c in EXECUTIONS.columns} for e in old]
            conn.execute(insert(EXECUTIONS), rows)
        young = [backend.save_execution(execution(j.id, T0 + timedelta(minutes=i))) for i in range(4)]
        running = backend.save_execution(execution(j.id, T0 - timedelta(days=30), status="running"))
        at_cutoff = backend.save_execution(execution(j.id, T0))

        # Batches adapt to a time target; a tiny target keeps them at their smallest.
        backend.executions.delete_batch_target_s = 1e-9
        assert backend.delete_old_executions(T0, batch_size=5) == 260
        batches = backend.metrics.snapshot()["retention_batch"]["count"]
        assert batches >= 3, batches  # batched, not one statement (each batch is timed)
        left = {r.id for r in backend.list_executions(j.id, limit=1000)}
        assert left == {r.id for r in young} | {running.id, at_cutoff.id}
        assert backend.delete_old_executions(T0, batch_size=5) == 0


# -- content ----------------------------------------------------------------------------------


def test_unicode_round_trip(backend: PersistenceBackend) -> None:
    name = "Ночной ETL 夜间任务 🚀 — ü"
    j = saved_job(backend, name, description="Überprüfung ✓ 检查 🧪", pipeline="管道-π")
    backend.save_pipeline(
        PipelineConfig(name="管道-π", description="🐍", config=json.dumps({"t": "日本語"}, ensure_ascii=False))
    )
    context = {
        "emoji": "😀🎉👩‍💻",
        "cjk": "漢字かなカナ한국어",
        "rtl": "שלום مرحبا",
        "键": ["值", "🔑"],
        "nul": "a\u00e9b",
    }
    e = backend.save_execution(execution(j.id, context=context, error="失败: 💥", pipeline="管道-π"))

    assert backend.get_job(j.id).name == name
    assert backend.get_job(j.id).description == "Überprüfung ✓ 检查 🧪"
    p = backend.get_pipeline("管道-π")
    assert p.description == "🐍" and json.loads(p.config) == {"t": "日本語"}
    got = backend.get_execution(e.id)
    assert got.context == context
    assert got.error == "失败: 💥"
    assert got.pipeline == "管道-π"
    assert [x.name for x in backend.list_jobs()] == [name]


def test_large_json_context_round_trip(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    context = {
        "rows": [{"i": i, "text": f"row {i} ✓ データ", "values": list(range(10))} for i in range(12_000)],
        "blob": "x" * 300_000,
    }
    size = len(json.dumps(context, ensure_ascii=False).encode())
    assert size > 1024 * 1024
    e = backend.save_execution(execution(j.id, context=context))
    got = backend.get_execution(e.id)
    assert got.context == context
    assert got.context["rows"][11_999]["text"] == "row 11999 ✓ データ"


@pytest.mark.parametrize(
    "given",
    [
        datetime(2024, 7, 4, 18, 30, 15, 654321, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 11, 3, 1, 30, 0, 1, tzinfo=ZoneInfo("America/New_York")),  # ambiguous hour, fold=0
        datetime(2024, 11, 3, 1, 30, 0, 999999, tzinfo=ZoneInfo("America/New_York"), fold=1),
        datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
    ids=["plus0530", "new-york-fold0", "new-york-fold1", "berlin-gap", "utc"],
)
def test_timezone_aware_round_trip(backend: PersistenceBackend, given: datetime) -> None:
    j = saved_job(backend, next_run=given)
    e = backend.save_execution(execution(j.id, given, scheduled_for=given, end_time=given + timedelta(seconds=1)))
    got_job = backend.get_job(j.id)
    got = backend.get_execution(e.id)
    # Compare in UTC: PEP 495 makes a time in a fold or gap unequal to every other zone's.
    expected = given.astimezone(UTC)
    for value in (got_job.next_run, got.start_time, got.scheduled_for):
        assert value == expected
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert value.timestamp() == given.timestamp()
        assert value.microsecond == given.microsecond
    assert got.end_time == (given + timedelta(seconds=1)).astimezone(UTC)
    listed = backend.list_executions(j.id)
    assert listed[0].start_time == expected and listed[0].start_time.tzinfo is not None


def test_naive_datetimes_are_taken_as_utc(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    e = backend.save_execution(execution(j.id, datetime(2024, 1, 2, 3, 4, 5, 6)))
    assert backend.get_execution(e.id).start_time == datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_names_and_ids_are_exact(backend: PersistenceBackend) -> None:
    """A name or id matches itself only: case, accents and trailing spaces count (on MySQL and
    MariaDB too: their tables use a binary NO PAD collation)."""
    backend.save_pipeline(PipelineConfig(name="etl", config='{"v": 1}'))
    for other in ("ETL", "étl", "etl "):
        backend.save_pipeline(PipelineConfig(name=other, config="{}"))
    assert backend.get_pipeline("etl").config == '{"v": 1}'
    with pytest.raises(NotFound):
        backend.get_pipeline("Etl")
    backend.save_job(job("a", id="job-a"))
    backend.save_job(job("b", id="JOB-A"))
    assert backend.get_job("job-a").name == "a" and backend.get_job("JOB-A").name == "b"


# -- runs: cancel and the run key -------------------------------------------------------------


def test_save_execution_keeps_cancel_requested(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    e = backend.save_execution(execution(j.id, status="running"))
    stale = backend.get_execution(e.id)  # the runner's copy, cancel_requested False
    cancelled = backend.request_cancel(e.id)
    assert cancelled.cancel_requested is True
    stale.context = {"progress": 50}
    backend.save_execution(stale)  # the runner saves progress with its stale flag
    after = backend.get_execution(e.id)
    assert after.cancel_requested is True
    assert after.context == {"progress": 50}
    after.status = "cancelled"
    backend.save_execution(after)
    with pytest.raises(Conflict):
        backend.request_cancel(e.id)
    assert backend.get_execution(e.id).cancel_requested is True


def test_unique_run_key(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    other = saved_job(backend, "other")
    when = datetime(2024, 2, 2, 2, 0, tzinfo=UTC)
    first = backend.save_execution(execution(j.id, scheduled_for=when, triggered_by="scheduler"))
    with pytest.raises(Conflict) as info:
        backend.save_execution(execution(j.id, scheduled_for=when, triggered_by="scheduler"))
    assert j.id in str(info.value)
    assert [r.id for r in backend.list_executions(j.id)] == [first.id]
    # same time for another job, another time for this job, and manual runs (no key) are fine
    backend.save_execution(execution(other.id, scheduled_for=when))
    backend.save_execution(execution(j.id, scheduled_for=when + timedelta(seconds=1)))
    backend.save_execution(execution(j.id))
    backend.save_execution(execution(j.id))
    assert len(backend.list_executions(j.id)) == 4
    # re-saving the run that holds the key is an update, not a conflict
    first.status = "failed"
    backend.save_execution(first)
    assert backend.get_execution(first.id).status == "failed"


# -- metrics, health, stats, threads ----------------------------------------------------------


def test_metrics_count_operations_and_failures(backend: PersistenceBackend) -> None:
    j = saved_job(backend)
    with pytest.raises(Conflict):
        backend.save_job(job("dup", id=j.id))
    for _ in range(3):
        backend.get_job(j.id)
    with pytest.raises(NotFound):
        backend.get_job("missing")
    snap = backend.metrics.snapshot()
    assert snap["save_job"]["count"] == 2
    assert snap["save_job"]["failures"] == 1
    assert snap["get_job"]["count"] == 4
    assert snap["get_job"]["failures"] == 0  # a lookup that finds nothing is an answer, not a failure
    for key in ("p50_ms", "p95_ms", "mean_ms"):
        assert snap["get_job"][key] is not None and snap["get_job"][key] >= 0
    assert snap["get_job"]["p95_ms"] >= snap["get_job"]["p50_ms"]
    assert "list_jobs" not in snap


def test_failed_operation_is_logged_with_its_name(backend: PersistenceBackend, caplog) -> None:
    j = saved_job(backend)
    caplog.set_level("WARNING", logger="mimir.persistence")
    with pytest.raises(Conflict):
        backend.save_job(job(id=j.id))
    assert any("save_job" in r.getMessage() for r in caplog.records)


def test_health_and_stats(backend: PersistenceBackend, backend_settings) -> None:
    latency = backend.health()
    assert isinstance(latency, float) and 0 < latency < 5
    j = saved_job(backend)
    saved_job(backend, "second")
    backend.save_pipeline(PipelineConfig(name="p", config="{}"))
    for i in range(3):
        backend.save_execution(execution(j.id, T0 + timedelta(seconds=i)))
    stats = backend.stats()
    assert stats["row_counts"] == {"scheduled_jobs": 2, "pipelines": 1, "job_executions": 3}
    assert stats["size_bytes"] > 0
    assert stats["schema_version"] == head_revision()
    assert backend.metrics.snapshot()["health"]["count"] == 1
    assert backend.backend == backend_settings.persistence.backend


def test_close_is_idempotent(backend_settings) -> None:
    store = open_backend(backend_settings)
    store.close()
    store.close()  # idempotent


def test_concurrent_threads_on_one_backend(backend: PersistenceBackend) -> None:
    jobs = [saved_job(backend, f"j{i}") for i in range(4)]
    errors: list[BaseException] = []

    def work(j: ScheduledJob) -> None:
        try:
            for k in range(15):
                backend.save_execution(execution(j.id, T0 + timedelta(seconds=k)))
                j.description = str(k)
                backend.update_job(j)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert backend.stats()["row_counts"]["job_executions"] == 60
    assert all(backend.get_job(j.id).description == "14" for j in jobs)


def test_persistence_errors_are_one_line_mimir_errors(backend: PersistenceBackend) -> None:
    # a value too long for its column on servers; SQLite accepts it (no length limits). The
    # record validates its lengths when built, not when assigned to: the database has the say.
    j = saved_job(backend)
    e = execution(j.id)
    e.status = "x" * 300
    try:
        backend.save_execution(e)
    except MimirError as exc:
        assert isinstance(exc, (PersistenceError, Conflict))
        assert "\n" not in str(exc)
        assert "Traceback" not in str(exc)
    else:
        assert backend.dialect == "sqlite"


def test_a_runs_end_saves_its_jobs_last_result_in_the_same_write(backend: PersistenceBackend) -> None:
    """``save_execution(job_result=True)``: the end of a run becomes its job's last_result
    when it is written; a row another instance ended first keeps its end, and the job's
    last_result is not touched by the refused save."""
    job = backend.save_job(ScheduledJob(name="j", pipeline="p", cron_expr="* * * * *"))
    run = JobExecutionRecord(job_id=job.id, pipeline="p", status="running", start_time=T0, steps=[], context={})
    backend.save_execution(run)
    run.status, run.end_time = "failed", T0 + timedelta(seconds=1)
    assert backend.save_execution(run, only_unfinished=True, job_result=True) is True
    assert backend.get_job(job.id).last_result == "failed"
    run.status = "success"
    assert backend.save_execution(run, only_unfinished=True, job_result=True) is False  # ended already
    assert backend.get_execution(run.id).status == "failed"
    assert backend.get_job(job.id).last_result == "failed"


def test_pipeline_versions_read_in_one_go_equal_the_single_reads(backend: PersistenceBackend) -> None:
    for name in ("a", "b"):
        backend.save_pipeline(PipelineConfig(name=name, config=json.dumps({"name": name, "steps": []}), checksum=name))
    versions = backend.pipelines.versions(["a", "b", "missing", "a"])
    assert set(versions) == {"a", "b"}
    assert versions == {name: backend.pipelines.version(name) for name in ("a", "b")}
    assert backend.pipelines.versions([]) == {}


def test_the_change_marker_moves_with_every_commit_of_anyone(backend: PersistenceBackend, backend_settings) -> None:
    """SQLite: ``change_marker`` (a stat of the file and its log) changes when another
    connection commits, and holds still while nobody writes: the idle loops read the database
    only then. A server has none (None: the loops read)."""
    if backend.dialect != "sqlite":
        assert backend.change_marker() is None
        return
    other = open_backend(backend_settings)
    try:
        other.save_job(ScheduledJob(id="first", name="first", pipeline="p", cron_expr="* * * * *"))
        before = backend.change_marker()
        assert before is not None
        backend.list_jobs()  # reads change nothing
        assert backend.change_marker() == before
        other.save_job(ScheduledJob(id="second", name="second", pipeline="p", cron_expr="* * * * *"))
        assert backend.change_marker() != before
    finally:
        other.close()
