"""Backups of PostgreSQL (pg_dump) and MariaDB (mariadb-dump) on the real servers: create,
verify, restore over a changed database, every row equal; the password never on a command line."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from isolated import make_settings
from sqlalchemy import MetaData, select

from mimir_tui.config import Settings
from mimir_tui.ops import archive as arc
from mimir_tui.ops.backup import create_backup, verify_backup
from mimir_tui.ops.crypto import ArchiveDamaged
from mimir_tui.ops.restore import RestoreRefused, restore_backup
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend
from mimir_tui.persistence.models import Worker


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    """Every row of every table, ordered by the primary key."""
    with open_backend(settings) as backend:
        meta = MetaData()
        meta.reflect(backend.engine)
        with backend.engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in meta.sorted_tables
            }


def fill(settings: Settings, n: int) -> None:
    with open_backend(settings) as backend:
        job = backend.save_job(ScheduledJob(name="nightly", pipeline="etl", cron_expr="0 2 * * *"))
        for i in range(n):
            backend.save_execution(
                JobExecutionRecord(
                    job_id=job.id, pipeline="etl", status="success", error=f"line {i}\n'quoted' \\ ü", context={"i": i}
                )
            )
        backend.workers.register_worker(Worker(id="gone", host="h", pid=1, version="t", status="stopped"))


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_server_backup_and_restore_row_for_row(
    server_settings: Callable[[str], Settings], kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = "pg_dump" if kind == "postgres" else "mariadb-dump"
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed")
    settings = server_settings(kind)
    fill(settings, 40)
    before = snapshot(settings)
    with open_backend(settings) as backend:
        result = create_backup(settings, backend)
    assert result.verified, result.verify_error
    assert result.manifest["database_format"] == ("pg_dump" if kind == "postgres" else "mariadb-dump")
    assert result.manifest["row_counts"]["job_executions"] == 40
    assert result.manifest["row_counts"]["workers"] == 1

    with open_backend(settings) as backend:  # the database moves on
        backend.save_job(ScheduledJob(name="later", pipeline="etl", cron_expr="0 3 * * *"))
        backend.delete_job(
            backend.list_jobs()[0].id if backend.list_jobs()[0].name == "nightly" else backend.list_jobs()[1].id
        )
    assert snapshot(settings) != before

    from mimir_tui.ops import restore as restore_module

    straight = restore_module._load_dump
    if kind == "mysql":  # through the scratch database, not table by table
        monkeypatch.setattr(restore_module, "_load_dump", lambda *a: pytest.fail("loaded straight in"))
    restored = restore_backup(settings, result.path)
    monkeypatch.setattr(restore_module, "_load_dump", straight)
    assert restored.row_counts == result.manifest["row_counts"]
    assert snapshot(settings) == before
    safety = Path(restored.safety_copy)
    assert safety.is_file() and arc.read_sidecar(safety)["row_counts"]["scheduled_jobs"] == 1
    with open_backend(settings) as backend:  # Mimir goes on with the restored database
        assert [j.name for j in backend.list_jobs()] == ["nightly"]
        backend.save_job(ScheduledJob(name="after", pipeline="etl", cron_expr="0 4 * * *"))
        if kind == "mysql":  # loaded through a scratch database, which is gone
            from sqlalchemy import text

            with backend.engine.connect() as conn:
                name = conn.execute(text("SELECT DATABASE()")).scalar()
                assert conn.execute(text(f"SHOW DATABASES LIKE '{name}\\_restore\\_%'")).all() == []


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_server_restore_refused_while_live_and_damaged_dump_found(
    server_settings: Callable[[str], Settings], kind: str
) -> None:
    tool = "pg_dump" if kind == "postgres" else "mariadb-dump"
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed")
    settings = server_settings(kind)
    fill(settings, 3)
    with open_backend(settings) as backend:
        archive = create_backup(settings, backend).path
        backend.workers.register_worker(Worker(id="alive", host="h", pid=2, version="t"))
    with pytest.raises(RestoreRefused, match="alive"):
        restore_backup(settings, archive)
    with open(archive, "r+b") as f:
        f.truncate(archive.stat().st_size // 2)
    with pytest.raises(ArchiveDamaged):
        verify_backup(settings, archive)


def test_server_password_goes_by_environment(
    server_settings: Callable[[str], Settings], server_databases, monkeypatch
) -> None:
    """A MariaDB user with a password: the dump works, and the password is in no argv."""
    import subprocess

    if not shutil.which("mariadb-dump"):
        pytest.skip("mariadb-dump is not installed")
    settings = server_settings("mysql")  # skipped unless mysql is selected
    password = "s3cr3t-p@ss"
    with server_databases.mysql_user("mimir_bk", password):
        info = server_databases.info("mysql")
        settings.persistence.connection_string = (
            f"mysql://mimir_bk:{password}@{info.host}:{info.port}/{server_databases.database('mysql')}"
        )
        seen: list[list[str]] = []
        real = subprocess.run

        def spy(argv, *a, **kw):
            seen.append([str(x) for x in argv])
            return real(argv, *a, **kw)

        monkeypatch.setattr(subprocess, "run", spy)
        with open_backend(settings) as backend:
            result = create_backup(settings, backend)
    assert result.verified
    assert seen and not any(password in arg for argv in seen for arg in argv)


# -- across backends: the logical format ------------------------------------------------------


def rows_of(settings: Settings) -> list[tuple[str, dict]]:
    from mimir_tui.ops import tables

    with open_backend(settings) as backend:
        return list(tables.rows_in_order(backend))


def test_a_sqlite_archive_restores_into_postgresql(
    sqlite_settings: Settings, server_settings: Callable[[str], Settings], tmp_path: Path
) -> None:
    fill(sqlite_settings, 25)
    expected = rows_of(sqlite_settings)
    archive = create_backup(sqlite_settings).path
    target = server_settings("postgres")
    fill(target, 3)  # something to replace
    restored = restore_backup(target, archive)
    assert restored.row_counts["job_executions"] == 25
    assert rows_of(target) == expected


@pytest.mark.parametrize("into", ["sqlite", "mysql"])
def test_a_logical_server_archive_restores_anywhere(
    server_settings: Callable[[str], Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, into: str
) -> None:
    """A server backup without its dump tool is a logical export read in one snapshot; it
    restores into another backend, every row equal."""
    from mimir_tui.ops import backup as backup_module

    source = server_settings("postgres")
    fill(source, 12)
    expected = rows_of(source)
    monkeypatch.setattr(backup_module, "dump_tool", lambda kind: None)
    with open_backend(source) as backend:
        result = create_backup(source, backend)
    assert result.verified, result.verify_error
    assert result.manifest["database_format"] == "logical" and result.manifest["row_counts"]["job_executions"] == 12
    if into == "sqlite":
        target = make_settings(tmp_path / "other")
        fill(target, 2)
    else:
        target = server_settings("mysql")
    restored = restore_backup(target, result.path)
    assert restored.row_counts == result.manifest["row_counts"]
    assert rows_of(target) == expected


def test_a_pg_dump_archive_into_sqlite_is_refused_with_the_way_out(
    server_settings: Callable[[str], Settings], sqlite_settings: Settings
) -> None:
    from mimir_tui.errors import BadInput

    if not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed")
    source = server_settings("postgres")
    fill(source, 1)
    with open_backend(source) as backend:
        archive = create_backup(source, backend).path
    fill(sqlite_settings, 2)
    with pytest.raises(BadInput, match="pg_dump dump of a postgres database.*logical format"):
        restore_backup(sqlite_settings, archive)
    assert len(rows_of(sqlite_settings)) > 0
