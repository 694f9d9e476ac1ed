"""Schema versions, indexes, SQLite settings and file modes, on every backend where they apply."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, insert, inspect, text

from mimir_tui.config import Settings
from mimir_tui.errors import Conflict, PersistenceError
from mimir_tui.persistence import JobExecutionRecord, RunRequest, ScheduledJob, open_backend
from mimir_tui.persistence.engine import make_engine
from mimir_tui.persistence.migrate import current_revision, head_revision, upgrade
from mimir_tui.persistence.models import EXECUTIONS, SQLModel


@pytest.fixture
def fresh_settings(backend_settings: Settings, server_databases) -> Settings:
    """Settings on an empty database: a new SQLite file, or the server's session database with
    every table dropped (the next test's ``open_backend`` brings it back to head)."""
    backend = backend_settings.persistence.backend
    if backend != "sqlite":
        server_databases.drop_all_tables(backend)
    return backend_settings


SEED_ROWS = [
    "INSERT INTO scheduled_jobs (id, name, pipeline, cron_expr, enabled, next_run, last_run, last_result, "
    "created_at, updated_at) VALUES ('job-1', 'Nightly ETL ☾', 'etl', '0 2 * * *', {true}, "
    "'2024-01-02 02:00:00', '2024-01-01 02:00:00', 'success', '2023-12-01 10:00:00', '2023-12-02 10:00:00')",
    "INSERT INTO scheduled_jobs (id, name, pipeline, cron_expr, enabled, next_run, last_run, last_result, "
    "created_at, updated_at) VALUES ('job-2', 'paused', 'report', '*/5 * * * *', {false}, NULL, NULL, NULL, "
    "'2023-12-01 10:00:00', '2023-12-01 10:00:00')",
    "INSERT INTO pipelines (name, description, config, created_at, updated_at) VALUES "
    "('etl', 'the seed pipeline', '{{\"name\": \"etl\", \"steps\": []}}', '2023-12-01 09:00:00', "
    "'2023-12-01 09:00:00')",
    "INSERT INTO job_executions (id, job_id, pipeline, start_time, end_time, duration, status, error, context, "
    "steps, triggered_by) VALUES ('ex-1', 'job-1', 'etl', '2024-01-01 02:00:00', '2024-01-01 02:00:05', 5000, "
    '\'success\', NULL, \'{{"rows": 3, "note": "ünï 😀"}}\', \'[{{"step_name": "get", "plugin": "Input.api", '
    '"status": "success"}}]\', \'scheduler\')',
    "INSERT INTO job_executions (id, job_id, pipeline, start_time, end_time, duration, status, error, context, "
    "steps, triggered_by) VALUES ('ex-2', 'job-1', 'etl', '2024-01-01 02:05:00', NULL, NULL, 'failed', "
    "'boom', NULL, NULL, 'manual')",
    "INSERT INTO job_executions (id, job_id, pipeline, start_time, end_time, duration, status, error, context, "
    "steps, triggered_by) VALUES ('ex-3', 'job-2', 'report', '2023-12-31 23:59:59', NULL, NULL, 'success', "
    "NULL, '{{}}', NULL, 'scheduler')",
]


def _make_first_version(settings: Settings) -> None:
    engine = make_engine(settings.persistence)
    try:
        assert upgrade(engine, "0001") == "0001"
        with engine.connect() as conn:
            assert current_revision(conn) == "0001"
            columns = {c["name"] for c in inspect(conn).get_columns("job_executions")}
            assert "scheduled_for" not in columns and "attempt" not in columns
        true, false = ("1", "0") if engine.dialect.name in ("sqlite", "mysql") else ("TRUE", "FALSE")
        with engine.begin() as conn:
            for sql in SEED_ROWS:
                conn.execute(text(sql.format(true=true, false=false)))
    finally:
        engine.dispose()


def test_upgrade_from_first_schema_version_keeps_rows(fresh_settings: Settings) -> None:
    _make_first_version(fresh_settings)
    with open_backend(fresh_settings) as store:
        assert store.stats()["schema_version"] == head_revision()
        assert store.stats()["row_counts"] == {"scheduled_jobs": 2, "pipelines": 1, "job_executions": 3}

        job = store.get_job("job-1")
        assert job.name == "Nightly ETL ☾"
        assert job.enabled is True
        assert job.next_run == datetime(2024, 1, 2, 2, 0, tzinfo=UTC)
        assert job.created_at == datetime(2023, 12, 1, 10, 0, tzinfo=UTC)
        # the new columns have their defaults
        assert job.timezone == "UTC"
        assert (job.max_retries, job.retry_backoff_seconds, job.misfire_policy) == (0, 30.0, "once")
        assert (job.misfire_grace_seconds, job.misfire_cap, job.max_concurrent, job.priority) == (60.0, 10, 1, 0)
        assert job.timeout_seconds is None
        assert store.get_job("job-2").enabled is False

        pipeline = store.get_pipeline("etl")
        assert json.loads(pipeline.config) == {"name": "etl", "steps": []}
        assert pipeline.enabled is True and pipeline.checksum is None

        runs = store.list_executions("job-1")
        assert [r.id for r in runs] == ["ex-2", "ex-1"]
        ex1 = store.get_execution("ex-1")
        assert ex1.context == {"rows": 3, "note": "ünï 😀"}
        assert ex1.step_records()[0].plugin == "Input.api"
        assert ex1.start_time == datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
        assert (ex1.attempt, ex1.cancel_requested, ex1.scheduled_for, ex1.worker_id) == (1, False, None, None)
        assert store.get_execution("ex-2").context is None

        # the upgraded schema works: new rows, the run key, the foreign key, the cascade
        new = store.save_execution(
            JobExecutionRecord(
                job_id="job-1", pipeline="etl", status="success", scheduled_for=datetime(2024, 2, 1, tzinfo=UTC)
            )
        )
        assert store.list_executions("job-1")[0].id == new.id
        with pytest.raises(Conflict):
            store.save_execution(
                JobExecutionRecord(job_id="job-1", pipeline="etl", scheduled_for=datetime(2024, 2, 1, tzinfo=UTC))
            )
        with pytest.raises(Conflict):
            store.save_execution(JobExecutionRecord(job_id="no-such-job", pipeline="etl"))
        store.save_execution(JobExecutionRecord(job_id=None, pipeline="etl"))  # job_id is nullable now
        store.delete_job("job-1")
        assert store.list_executions("job-1") == []
        assert {r.id for r in store.list_executions(limit=10)} >= {"ex-3"}
        assert store.stats()["row_counts"]["job_executions"] == 2


def test_opening_twice_is_idempotent(fresh_settings: Settings) -> None:
    with open_backend(fresh_settings) as store:
        store.save_job(ScheduledJob(id="j", name="j", pipeline="p", cron_expr="* * * * *"))
        tables = set(inspect(store.engine).get_table_names())
    with open_backend(fresh_settings) as store:
        assert store.get_job("j").name == "j"
        assert set(inspect(store.engine).get_table_names()) == tables
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
        assert upgrade(store.engine) == head_revision()
        assert store.stats()["row_counts"]["scheduled_jobs"] == 1


def test_orm_metadata_matches_migrated_schema(fresh_settings: Settings) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with open_backend(fresh_settings) as store:
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            diffs = compare_metadata(ctx, SQLModel.metadata)
            fk_indexes = {
                fk["constrained_columns"][0]
                for t in inspect(conn).get_table_names()
                for fk in inspect(conn).get_foreign_keys(t)
            }

    def mysql_fk_index(diff) -> bool:
        # MySQL/MariaDB make an index for a foreign key that has none of its own.
        if store.dialect != "mysql" or not isinstance(diff, tuple) or diff[0] != "remove_index":
            return False
        index = diff[1]
        return [c.name for c in index.columns] in ([c] for c in fk_indexes) or index.name == "fk_job_executions_job_id"

    remaining = [d for d in diffs if not mysql_fk_index(d)]
    assert remaining == []


def test_indexes_and_cascade_exist(backend) -> None:
    insp = inspect(backend.engine)
    exec_indexes = {ix["name"]: ix for ix in insp.get_indexes("job_executions")}
    assert exec_indexes["idx_job_executions_job_id_start_time_id"]["column_names"] == ["job_id", "start_time", "id"]
    assert exec_indexes["idx_job_executions_start_time_id"]["column_names"] == ["start_time", "id"]
    assert exec_indexes["idx_job_executions_status_start_time_id"]["column_names"] == ["status", "start_time", "id"]
    assert exec_indexes["idx_job_executions_job_id_status_start_time_id"]["column_names"] == [
        "job_id",
        "status",
        "start_time",
        "id",
    ]
    assert not {"idx_job_executions_status", "idx_job_executions_job_id_status"} & set(exec_indexes)  # replaced
    assert exec_indexes["ux_job_executions_run_key"]["column_names"] == ["job_id", "scheduled_for"]
    assert exec_indexes["ux_job_executions_run_key"]["unique"]
    job_indexes = {ix["name"]: ix for ix in insp.get_indexes("scheduled_jobs")}
    assert job_indexes["idx_scheduled_jobs_enabled_next_run"]["column_names"] == ["enabled", "next_run"]
    queue_indexes = {ix["name"]: ix for ix in insp.get_indexes("run_queue")}
    assert queue_indexes["idx_run_queue_execution_id"]["column_names"] == ["execution_id"]
    fks = insp.get_foreign_keys("job_executions")
    assert len(fks) == 1
    assert fks[0]["referred_table"] == "scheduled_jobs" and fks[0]["constrained_columns"] == ["job_id"]
    assert (fks[0].get("options") or {}).get("ondelete", "").upper() == "CASCADE"


def test_newer_schema_is_refused(sqlite_settings: Settings) -> None:
    with open_backend(sqlite_settings) as store:
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(PersistenceError) as info:
        open_backend(sqlite_settings)
    assert "9999_future" in str(info.value) and "newer" in str(info.value)


# -- SQLite specifics ----------------------------------------------------------------------------


@pytest.fixture
def sqlite_statements():
    """Every statement SQLite runs on connections made while the test runs, with its values
    inlined (sqlite3's trace callback), whichever path (SQLAlchemy or plain sqlite3) ran it."""
    from sqlalchemy.pool import Pool

    seen: list[str] = []

    def on_connect(dbapi_conn, _record):
        if hasattr(dbapi_conn, "set_trace_callback"):
            dbapi_conn.set_trace_callback(seen.append)

    event.listen(Pool, "connect", on_connect)
    try:
        yield seen
    finally:
        event.remove(Pool, "connect", on_connect)


@pytest.mark.parametrize("paged", [False, True], ids=["first-page", "keyset-page"])
def test_sqlite_list_executions_uses_the_index(sqlite_settings: Settings, paged: bool, sqlite_statements) -> None:
    with open_backend(sqlite_settings) as store:
        for i in range(3):
            job = store.save_job(ScheduledJob(name=f"j{i}", pipeline="p", cron_expr="* * * * *"))
            for _ in range(20):
                store.save_execution(JobExecutionRecord(job_id=job.id, pipeline="p", status="success"))
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        last = store.list_executions(job.id, limit=5)[-1]
        before = (last.start_time, last.id) if paged else None
        sqlite_statements.clear()
        rows = store.list_executions(job.id, limit=5, before=before)
        assert len(rows) == 5
        selects = [s for s in sqlite_statements if s.lstrip().upper().startswith("SELECT") and "job_executions" in s]
        assert len(selects) == 1, sqlite_statements
        sql = selects[0]
        assert job.id in sql  # the values are inlined
        with store.engine.connect() as conn:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).fetchall()]
    joined = " | ".join(plan)
    assert "idx_job_executions_job_id_start_time_id" in joined, joined
    assert "TEMP B-TREE" not in joined, joined  # the index gives the order: no sort step
    assert not any(p.startswith("SCAN job_executions") and "INDEX" not in p for p in plan), joined


def test_sqlite_count_running_uses_the_job_status_index(sqlite_settings: Settings, sqlite_statements) -> None:
    """count_running runs on every fire: it must read the job's queued/running rows through
    (job_id, status), not every row of the job's history through (job_id, start_time, id)."""
    with open_backend(sqlite_settings) as store:
        jobs = [store.save_job(ScheduledJob(name=f"j{i}", pipeline="p", cron_expr="* * * * *")) for i in range(3)]
        for job in jobs:
            for k in range(40):
                store.save_execution(
                    JobExecutionRecord(job_id=job.id, pipeline="p", status="running" if k == 39 else "success")
                )
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        job = jobs[-1]
        sqlite_statements.clear()
        assert store.executions.count_running(job.id) == 1
        selects = [s for s in sqlite_statements if s.lstrip().upper().startswith("SELECT") and "job_executions" in s]
        assert len(selects) == 1, sqlite_statements
        sql = selects[0]
        assert job.id in sql  # the values are inlined
        with store.engine.connect() as conn:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).fetchall()]
    joined = " | ".join(plan)
    assert "idx_job_executions_job_id_status_start_time_id" in joined, joined
    assert "status" in joined.split("idx_job_executions_job_id_status_start_time_id", 1)[1], joined  # both used


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
@pytest.mark.parametrize("per_job", [False, True], ids=["all-jobs", "one-job"])
def test_sqlite_a_page_filtered_by_status_is_read_in_order(
    sqlite_settings: Settings, sqlite_statements, analyzed: bool, per_job: bool
) -> None:
    """Schema version 10: a page of one status (the common "success" as much as the rare
    "running") reads that status's rows newest first through (job_id,) status, start_time, id:
    no sort of every run of that status, and no walk of the whole history; several statuses are
    a page of each, merged, whatever the planner's statistics say (after ANALYZE, SQLite took
    ``status IN ('queued', 'running')`` for a common pair and scanned every run)."""
    with open_backend(sqlite_settings) as store:
        jobs = [store.save_job(ScheduledJob(name=f"j{i}", pipeline="p", cron_expr="* * * * *")) for i in range(2)]
        rows = [
            JobExecutionRecord(
                job_id=jobs[i % 2].id,
                pipeline="p",
                start_time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
                status="running" if i % 100 == 7 else "failed" if i % 10 == 3 else "success",
            ).model_dump()
            for i in range(2000)
        ]
        with store.engine.begin() as conn:
            conn.execute(insert(EXECUTIONS), rows)
            if analyzed:
                conn.exec_driver_sql("ANALYZE")
        job_id = jobs[1].id if per_job else None
        for status in ("success", "running", ["queued", "running"], ["failed", "success"]):
            sqlite_statements.clear()
            page = store.list_executions(job_id, limit=10, status=status)
            reads = [s for s in sqlite_statements if s.lstrip().upper().startswith("SELECT") and "job_executions" in s]
            wanted = {status} if isinstance(status, str) else set(status)
            everything = [r for r in store.list_executions(job_id, limit=5000) if r.status in wanted]
            assert [r.id for r in page] == [r.id for r in everything[:10]], status  # the newest 10, in order
            assert len(reads) == len(wanted), sqlite_statements
            with store.engine.connect() as conn:
                for sql in reads:
                    plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).fetchall())
                    assert "TEMP B-TREE" not in plan, (status, plan)  # read in order, not sorted
                    if "'running'" in sql:  # rare: through its index, not a walk of the history
                        assert "status_start_time_id" in plan, (status, plan)


def test_sqlite_a_queued_run_is_found_by_its_execution_id_through_the_index(
    sqlite_settings: Settings, sqlite_statements
) -> None:
    """Schema version 10: showing or cancelling a run still in the queue reads it through
    ``idx_run_queue_execution_id``, not the whole queue."""
    with open_backend(sqlite_settings) as store:
        job = store.save_job(ScheduledJob(name="j", pipeline="p", cron_expr="* * * * *"))
        requests = [store.runs.enqueue(RunRequest(job_id=job.id, pipeline="p")) for _ in range(50)]
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        wanted = requests[25].execution_id
        sqlite_statements.clear()
        assert store.get_execution(wanted).status == "queued"
        assert store.request_cancel(wanted).status == "cancelled"  # taken out of the queue at once
        reads = [s for s in sqlite_statements if s.lstrip().upper().startswith("SELECT") and "run_queue" in s]
        assert len(reads) >= 2 and all(wanted in s for s in reads), sqlite_statements
        with store.engine.connect() as conn:
            plans = [
                " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).fetchall())
                for sql in reads
            ]
    assert all("idx_run_queue_execution_id" in plan for plan in plans), plans


def test_sqlite_pragmas(sqlite_settings: Settings) -> None:
    sqlite_settings.persistence.busy_timeout_ms = 4321
    with open_backend(sqlite_settings) as store:
        with store.engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 1
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 4321
            assert pragma("cache_size") == -256  # KiB: SQLite's 2,000 cost an instance 2 MiB per connection
        # A bulk operation's connection has SQLite's default cache while it runs, then the small one.
        with store.db.driver() as raw:  # VACUUM, integrity_check
            assert raw.execute("PRAGMA cache_size").fetchone()[0] == -2000
        with store.db.write(bulk=True) as conn:  # a retention batch
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000
            driver = conn.connection.driver_connection
        assert driver.execute("PRAGMA cache_size").fetchone()[0] == -256
        assert raw.execute("PRAGMA cache_size").fetchone()[0] == -256  # kept for prepared statements


def test_sqlite_writes_begin_immediate(sqlite_settings: Settings, sqlite_statements) -> None:
    with open_backend(sqlite_settings) as store:
        job = store.save_job(ScheduledJob(name="j", pipeline="p", cron_expr="* * * * *"))
        for call in (
            lambda: store.save_job(ScheduledJob(name="k", pipeline="p", cron_expr="* * * * *")),
            lambda: store.update_job(job),
            lambda: store.save_execution(JobExecutionRecord(job_id=job.id, pipeline="p")),
        ):
            sqlite_statements.clear()
            call()
            begins = [s.strip().upper() for s in sqlite_statements if s.strip().upper().startswith("BEGIN")]
            assert begins and all(b == "BEGIN IMMEDIATE" for b in begins), sqlite_statements
        sqlite_statements.clear()
        store.list_jobs()
        assert "BEGIN IMMEDIATE" not in [s.strip().upper() for s in sqlite_statements]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_file_modes(tmp_path: Path, sqlite_settings: Settings) -> None:
    old = os.umask(0o022)
    try:
        data = tmp_path / "fresh" / "nested" / "data"
        sqlite_settings.persistence.database_path = str(data / "mimir.db")
        with open_backend(sqlite_settings) as store:
            store.save_job(ScheduledJob(name="j", pipeline="p", cron_expr="* * * * *"))
            assert _mode(data / "mimir.db") == 0o600
            assert _mode(data) == 0o700
            for suffix in ("-wal", "-shm"):
                side = data / f"mimir.db{suffix}"
                if side.exists():
                    assert _mode(side) & 0o077 == 0, (side, oct(_mode(side)))
        assert _mode(data / "mimir.db") == 0o600
    finally:
        os.umask(old)


def test_sqlite_existing_loose_file_is_restricted(tmp_path: Path, sqlite_settings: Settings) -> None:
    db = Path(sqlite_settings.persistence.database_path)
    with open_backend(sqlite_settings):
        pass
    os.chmod(db, 0o644)
    with open_backend(sqlite_settings):
        assert _mode(db) == 0o600
