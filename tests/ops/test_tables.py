"""The logical form of Mimir's tables (mimir_tui.ops.tables) on the real backends: a round trip
SQLite -> PostgreSQL -> MariaDB -> SQLite keeps every row, the checksums agree across backends,
reads hold one snapshot while others write, and the JSON-lines stream refuses damage."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from isolated import make_settings
from ops_data import JOB_IDS, T0, fill
from sqlalchemy import update

from mimir_tui.ops import tables
from mimir_tui.persistence import ScheduledJob, open_backend
from mimir_tui.persistence.models import EXECUTIONS, JOBS


def sqlite_backend(tmp_path: Path, name: str):
    settings = make_settings(tmp_path)
    settings.persistence.database_path = str(tmp_path / name / "mimir.db")
    return open_backend(settings)


def test_round_trip_sqlite_postgres_mariadb_sqlite_keeps_every_row(tmp_path: Path, server_settings) -> None:
    pg_settings = server_settings("postgres")
    my_settings = server_settings("mysql")
    first = sqlite_backend(tmp_path, "first")
    written = fill(first)
    chain = [first, open_backend(pg_settings), open_backend(my_settings), sqlite_backend(tmp_path, "last")]
    try:
        copied = []
        for source, target in zip(chain, chain[1:], strict=False):
            copied.append(tables.copy_tables(source, target, batch=37))
        expected = tables.table_summaries(first)
        assert {name: s.rows for name, s in expected.items()} == written
        for summaries in copied:  # what each copy read from its source
            assert summaries == expected
        for store in chain[1:]:  # what each database holds, read back
            assert tables.table_summaries(store, batch=50) == expected, store.dialect
        # Row by row, in canonical form: the first database and the last, and PostgreSQL.
        original = list(tables.rows_in_order(first))
        assert len(original) == sum(written.values())
        assert list(tables.rows_in_order(chain[-1], batch=11)) == original
        assert list(tables.rows_in_order(chain[1], batch=500)) == original
        # Through the models as well: the running execution, JSON with unicode, time zones.
        last = chain[-1]
        running = [e for e in last.list_executions(limit=1000) if e.status == "running"]
        assert len(running) == 1 and running[0].end_time is None
        some = last.get_execution(running[0].id)
        assert some.context == {"z": 239, "a": {"nested": [1, 2.5, None, True], "ключ": "значение"}, "emoji": "🙂"}
        assert {j.id: j.timezone for j in last.list_jobs()} == {j.id: j.timezone for j in first.list_jobs()}
        assert last.get_job("Zeta").last_run == T0
    finally:
        for store in chain:
            store.close()


def test_keys_come_in_code_point_order_in_pages(backend) -> None:
    fill(backend, executions=30)
    pages = list(tables.export_rows(backend, "scheduled_jobs", batch=4))
    assert [len(p) for p in pages] == [4, 2]
    assert [row["id"] for page in pages for row in page] == sorted(JOB_IDS)
    assert sum(len(p) for p in tables.export_rows(backend, EXECUTIONS, batch=7)) == 30
    assert tables.table_counts(backend) == {
        "scheduled_jobs": 6,
        "pipelines": 3,
        "job_executions": 30,
        "workers": 3,
        "run_queue": 5,
    }


def test_a_snapshot_does_not_see_writes_made_while_it_reads(backend) -> None:
    fill(backend, executions=20)
    with tables.snapshot(backend) as snap:
        before = snap.counts()
        first_page = next(snap.batches(JOBS, batch=2))
        # Another connection writes meanwhile: a new job, a changed one, a deleted execution.
        backend.save_job(ScheduledJob(id="0-new", name="new", pipeline="fetch", cron_expr="* * * * *"))
        with backend.db.write() as conn:
            conn.execute(update(JOBS).where(JOBS.c.id == "alpha").values(name="changed"))
            conn.execute(EXECUTIONS.delete().where(EXECUTIONS.c.job_id == "Zeta"))
        assert snap.counts() == before
        rows = [r for page in snap.batches(JOBS, batch=2) for r in page]
        assert [r["id"] for r in rows[:2]] == [r["id"] for r in first_page]
        assert "0-new" not in {r["id"] for r in rows}
        assert next(r for r in rows if r["id"] == "alpha")["name"] != "changed"
    after = tables.table_counts(backend)
    assert after["scheduled_jobs"] == before["scheduled_jobs"] + 1
    assert after["job_executions"] < before["job_executions"]


def test_a_checksum_changes_with_any_value(backend) -> None:
    fill(backend, executions=10)
    before = tables.table_summaries(backend)
    with backend.db.write() as conn:  # one microsecond on one row
        conn.execute(update(JOBS).where(JOBS.c.id == "b").values(updated_at=T0.replace(microsecond=123457)))
    after = tables.table_summaries(backend)
    assert tables.compare(before, after) == [
        f"scheduled_jobs: checksum {after['scheduled_jobs'].sha256[:12]}..., expected "
        f"{before['scheduled_jobs'].sha256[:12]}..."
    ]


def test_json_lines_export_imports_into_every_backend(tmp_path: Path, backend) -> None:
    source = sqlite_backend(tmp_path, "source")
    try:
        fill(source, executions=60)
        out = io.BytesIO()
        written = tables.write_jsonl(source, out, batch=16)
    finally:
        source.close()
    data = out.getvalue()
    assert data.count(b"\n") == 1 + sum(s.rows for s in written.values()) + 1
    assert "ünïcode-jöb".encode() in data  # UTF-8, not escapes
    seen: list[tuple[str, int, int]] = []
    imported = tables.import_jsonl(io.BytesIO(data), backend, batch=25, progress=lambda *a: seen.append(a))
    assert imported == written
    assert tables.table_summaries(backend) == written
    assert ("job_executions", 60, -1) in seen


def _export(tmp_path: Path) -> bytes:
    source = sqlite_backend(tmp_path, "source")
    try:
        fill(source, executions=12)
        out = io.BytesIO()
        tables.write_jsonl(source, out)
        return out.getvalue()
    finally:
        source.close()


def _read_all(data: bytes) -> None:
    reader = tables.LogicalReader(io.BytesIO(data), "export.jsonl")
    for _ in reader.batches(5):
        pass


def test_a_damaged_json_lines_export_is_refused(tmp_path: Path) -> None:
    data = _export(tmp_path)
    _read_all(data)  # whole: fine
    with pytest.raises(tables.LogicalFormatError, match=r"export.jsonl: ends after line \d+ without its last line"):
        _read_all(data[: data.rindex(b'{"end"')])
    with pytest.raises(tables.LogicalFormatError, match="cut short|not JSON"):
        _read_all(data[:-40])
    tampered = data.replace("ошибка".encode(), "ошибкa".encode(), 1)  # one Cyrillic letter made Latin
    with pytest.raises(tables.LogicalFormatError, match="job_executions: checksum"):
        _read_all(tampered)
    lines = data.splitlines(keepends=True)
    dropped = b"".join(lines[:3] + lines[4:])  # one job less
    with pytest.raises(tables.LogicalFormatError, match="scheduled_jobs: 5 rows, expected 6"):
        _read_all(dropped)
    with pytest.raises(tables.LogicalFormatError, match="not a Mimir logical export"):
        _read_all(b'{"hello": 1}\n')


def test_an_import_refuses_another_schema_version(tmp_path: Path, sqlite_settings) -> None:
    data = _export(tmp_path).replace(b'"schema":"', b'"schema":"9', 1)
    target = open_backend(sqlite_settings)
    try:
        with pytest.raises(tables.PersistenceError, match="schema version"):
            tables.import_jsonl(io.BytesIO(data), target)
        assert tables.table_counts(target) == dict.fromkeys(tables.TABLE_NAMES, 0)
    finally:
        target.close()


def test_a_plain_sqlite_engine_reads_in_one_snapshot_too(tmp_path: Path) -> None:
    """An engine made without Mimir's hooks (a backup's copy opened by hand): still one snapshot."""
    from sqlalchemy import create_engine

    store = sqlite_backend(tmp_path, "plain")
    fill(store, executions=12)
    engine = create_engine(f"sqlite:///{store.settings.database_path}")
    try:
        expected = tables.table_summaries(store)
        assert tables.table_summaries(engine) == expected
        with tables.snapshot(engine) as snap:
            before = snap.counts()
            store.save_job(ScheduledJob(id="0-new", name="new", pipeline="fetch", cron_expr="* * * * *"))
            assert snap.counts() == before
            assert snap.summaries() == expected
        assert tables.table_counts(engine)["scheduled_jobs"] == before["scheduled_jobs"] + 1
    finally:
        engine.dispose()
        store.close()
