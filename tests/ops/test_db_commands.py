"""``mimir-tui db stats|check|vacuum|analyze`` on every backend (issue 13, item 6)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from maint_helpers import site_config

from mimir_tui.cli import main
from mimir_tui.ops import maintenance
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob
from mimir_tui.persistence.types import utcnow


def cli(capsys, config: Path, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def fill(store, runs: int = 300) -> None:
    store.save_job(ScheduledJob(id="j1", name="j1", pipeline="p", cron_expr="0 0 1 1 *"))
    old = utcnow() - timedelta(days=90)
    for i in range(runs):
        store.save_execution(
            JobExecutionRecord(
                job_id="j1", pipeline="p", status="failed", error="e" * 2000, start_time=old + timedelta(seconds=i)
            )
        )


def test_stats_counts_rows_and_sizes(backend, backend_settings, tmp_path, capsys) -> None:
    fill(backend, 30)
    config = site_config(tmp_path, backend_settings)
    code, out, err = cli(capsys, config, "db", "stats", "--json")
    assert code == 0, err
    report = json.loads(out)
    tables = {t["name"]: t for t in report["tables"]}
    assert tables["job_executions"]["rows"] == 30 and tables["scheduled_jobs"]["rows"] == 1
    assert report["size_bytes"] > 0 and report["pages"] > 0 and report["page_size"] > 0
    assert tables["job_executions"]["bytes"] > 0 and tables["job_executions"]["index_bytes"] > 0
    assert any(i["table"] == "job_executions" for i in report["indexes"])
    if backend.dialect == "sqlite":
        assert isinstance(report["free_pages"], int) and report["wal_bytes"] >= 0
    code, out, err = cli(capsys, config, "db", "stats")
    assert code == 0 and "job_executions" in out and "free pages" in out


def test_vacuum_reclaims_what_retention_freed(backend, backend_settings, tmp_path, capsys) -> None:
    fill(backend)
    backend.delete_old_executions(utcnow())
    config = site_config(tmp_path, backend_settings)
    code, out, err = cli(capsys, config, "db", "vacuum", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["operation"] == "vacuum" and report["size_before"] > 0 and report["size_after"] > 0
    assert report["reclaimed_bytes"] == max(0, report["size_before"] - report["size_after"])
    if backend.dialect == "sqlite":  # 300 rows of 2 KB freed: the file shrinks
        assert report["reclaimed_bytes"] > 300 * 1000
        with closing(sqlite3.connect(backend_settings.persistence.database_path)) as conn:
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    code, out, err = cli(capsys, config, "db", "analyze")
    assert code == 0, err
    assert "analyze done" in out and "size before" in out
    code, out, err = cli(capsys, config, "db", "check", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True and report["problems"] == [] and report["checks"]


def test_a_second_operation_is_refused_while_one_runs(backend) -> None:
    with maintenance._exclusive("vacuum"):
        assert maintenance.running() == "vacuum"
        with pytest.raises(maintenance.Busy, match="vacuum is running already"):
            maintenance.analyze(backend)
    assert maintenance.running() is None
    assert maintenance.analyze(backend)["operation"] == "analyze"


def _leaf_pages(database: Path, name: str) -> list[int]:
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (name,)).fetchall()
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return [(page - 1) * size for (page,) in rows]


def test_check_names_a_damaged_sqlite_page(sqlite_settings, tmp_path, capsys) -> None:
    from mimir_tui.persistence import open_backend

    with open_backend(sqlite_settings) as store:
        fill(store)
    database = Path(sqlite_settings.persistence.database_path)
    config = site_config(tmp_path, sqlite_settings)
    assert cli(capsys, config, "db", "check")[0] == 0
    offsets = _leaf_pages(database, "job_executions")
    assert len(offsets) >= 3
    with open(database, "r+b") as fh:  # garbage into the cell pointers of a leaf page
        fh.seek(offsets[len(offsets) // 2] + 8)
        fh.write(b"\xff" * 16)
    code, out, err = cli(capsys, config, "db", "check")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("mimir-tui: error:")]
    assert len(lines) == 1 and "integrity_check" in lines[0], err
    assert "problem(s)" in out
    code, out, _ = cli(capsys, config, "db", "check", "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_check_finds_a_broken_foreign_key(sqlite_settings, tmp_path, capsys) -> None:
    """A run whose job is gone (written by a program with foreign keys off)."""
    from mimir_tui.persistence import open_backend

    with open_backend(sqlite_settings) as store:
        fill(store, 3)
    with closing(sqlite3.connect(sqlite_settings.persistence.database_path)) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM scheduled_jobs WHERE id = 'j1'")
        conn.commit()
    code, out, err = cli(capsys, site_config(tmp_path, sqlite_settings), "db", "check", "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert len(problems) == 3 and all("job_executions" in p and "scheduled_jobs" in p for p in problems)
    assert "(and 2 more)" in err


def test_postgres_check_uses_amcheck_when_installed(server_settings, tmp_path, capsys) -> None:
    """With the amcheck extension in the database (Mimir never installs it), each B-tree index
    is verified by ``bt_index_check``."""
    from sqlalchemy import text

    from mimir_tui.persistence import open_backend

    settings = server_settings("postgres")
    with open_backend(settings) as store:
        fill(store, 5)
        try:
            with store.engine.connect() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
                conn.commit()
        except Exception as exc:  # not shipped with this server
            pytest.skip(f"amcheck is not available: {exc}")
        try:
            code, out, err = cli(capsys, site_config(tmp_path, settings), "db", "check", "--json")
        finally:
            with store.engine.connect() as conn:
                conn.execute(text("DROP EXTENSION IF EXISTS amcheck"))
                conn.commit()
    assert code == 0, err
    report = json.loads(out)
    assert "amcheck bt_index_check" in report["checks"] and report["problems"] == []
