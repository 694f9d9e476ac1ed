"""``mimir-tui migrate --to URL`` as a process, on the real servers: SQLite -> PostgreSQL ->
MariaDB -> SQLite keeps every row; a non-empty target is refused without --force and replaced
with it; a bad URL is one line naming it and changes nothing; a failure midway names the table;
the source is read in one snapshot while it is written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from isolated import make_settings
from ops_data import fill
from sqlalchemy import text

from mimir_tui.commands.progress import ProgressReport
from mimir_tui.ops import tables
from mimir_tui.ops.migrate import TargetNotEmpty, migrate
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend


def sqlite_env(path: Path) -> dict[str, str]:
    return {"MIMIR_BACKEND": "sqlite", "MIMIR_DATABASE_PATH": str(path)}


def server_env(settings) -> dict[str, str]:
    return {
        "MIMIR_BACKEND": settings.persistence.backend,
        "MIMIR_CONNECTION_STRING": settings.persistence.connection_string,
    }


def make_source(tmp_path: Path, executions: int = 240) -> Path:
    settings = make_settings(tmp_path)
    path = tmp_path / "source" / "mimir.db"
    settings.persistence.database_path = str(path)
    with open_backend(settings) as store:
        fill(store, executions=executions)
    return path


def open_url(tmp_path: Path, url_or_settings):
    """A backend on a SQLite path or server settings."""
    if isinstance(url_or_settings, Path):
        settings = make_settings(tmp_path)
        settings.persistence.database_path = str(url_or_settings)
        return open_backend(settings)
    return open_backend(url_or_settings)


def summaries_and_rows(tmp_path: Path, where) -> tuple[dict, list]:
    store = open_url(tmp_path, where)
    try:
        return tables.table_summaries(store), list(tables.rows_in_order(store))
    finally:
        store.close()


def test_round_trip_through_postgres_and_mariadb_by_the_command_line(tmp_path: Path, server_settings, run_cli) -> None:
    source = make_source(tmp_path)
    pg, my = server_settings("postgres"), server_settings("mysql")
    back = tmp_path / "back" / "mimir.db"
    hops = [
        (sqlite_env(source), pg.persistence.connection_string),
        (server_env(pg), my.persistence.connection_string.replace("mysql://", "mariadb://")),
        (server_env(my), f"sqlite:///{back}"),
    ]
    for env, url in hops:
        done = run_cli("migrate", "--to", url, "--batch", "50", env=env)
        assert done.returncode == 0, done.stderr
        assert "verified: every table's row count and checksum are equal in the target" in done.stdout
        assert "job_executions: 240/240 rows" in done.stderr  # progress, as lines (no terminal)
        assert "migrate: 257 rows in 5 tables" in done.stderr
    expected, rows = summaries_and_rows(tmp_path, source)
    assert {name: s.rows for name, s in expected.items()} == {
        "scheduled_jobs": 6,
        "pipelines": 3,
        "job_executions": 240,
        "workers": 3,
        "run_queue": 5,
    }
    for where in (pg, my, back):
        found, found_rows = summaries_and_rows(tmp_path, where)
        assert found == expected
        assert found_rows == rows
    assert back.stat().st_mode & 0o777 == 0o600
    assert back.parent.stat().st_mode & 0o777 == 0o700


def test_a_target_that_holds_rows_is_refused_without_force_and_replaced_with_it(
    tmp_path: Path, backend_settings, run_cli
) -> None:
    source = make_source(tmp_path, executions=40)
    other = tmp_path / "other"
    other.mkdir()
    with open_backend(backend_settings) as target:  # something else in the target
        target.save_job(ScheduledJob(id="theirs", name="theirs", pipeline="p", cron_expr="* * * * *"))
        target.save_execution(JobExecutionRecord(id="e-theirs", job_id="theirs", pipeline="p", status="success"))
        before = tables.table_summaries(target)
    url = (
        f"sqlite:///{backend_settings.persistence.database_path}"
        if backend_settings.persistence.backend == "sqlite"
        else backend_settings.persistence.connection_string
    )
    refused = run_cli("migrate", "--to", url, env=sqlite_env(source))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("mimir-tui: error: the target ")
    assert "is not empty (1 in scheduled_jobs, 1 in job_executions); --force replaces" in refused.stderr
    assert "verified" not in refused.stdout
    with open_backend(backend_settings) as target:
        assert tables.table_summaries(target) == before
    forced = run_cli("migrate", "--to", url, "--force", "--json", env=sqlite_env(source))
    assert forced.returncode == 0, forced.stderr
    report = json.loads(forced.stdout)
    assert report["verified"] is True and report["cleared"]["scheduled_jobs"] == 1
    assert [t["table"] for t in report["tables"]] == list(tables.TABLE_NAMES)
    expected, rows = summaries_and_rows(tmp_path, source)
    assert {t["table"]: (t["target_rows"], t["target_sha256"]) for t in report["tables"]} == {
        name: (s.rows, s.sha256) for name, s in expected.items()
    }
    with open_backend(backend_settings) as target:
        assert tables.table_summaries(target) == expected
        assert list(tables.rows_in_order(target)) == rows


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nonsense", "--to 'nonsense' is not a database URL"),
        ("ftp://user:s3cret@host/db", "--to 'ftp://user:***@host/db': unknown scheme 'ftp'"),
        ("postgresql://user:s3cret@127.0.0.1:5432", "--to 'postgresql://user:***@127.0.0.1:5432' names no database"),
        ("sqlite://", "--to 'sqlite://' names no database file"),
    ],
)
def test_a_bad_url_is_one_line_naming_it_and_changes_nothing(tmp_path: Path, run_cli, url: str, says: str) -> None:
    source = make_source(tmp_path, executions=5)
    before = source.read_bytes()
    done = run_cli("migrate", "--to", url, env=sqlite_env(source))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert done.stdout == ""
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "source", "xdg"]


def test_an_unreachable_target_names_it_without_its_password(tmp_path: Path, run_cli) -> None:
    source = make_source(tmp_path, executions=5)
    done = run_cli("migrate", "--to", "postgresql://mimir:s3cret@127.0.0.1:1/mimir", env=sqlite_env(source))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimir-tui: error: target: cannot open ")
    assert "127.0.0.1:1/mimir" in lines[0] and "s3cret" not in done.stderr


def test_the_configured_database_itself_is_refused(tmp_path: Path, run_cli) -> None:
    source = make_source(tmp_path, executions=5)
    done = run_cli("migrate", "--to", f"sqlite:///{source}", "--force", env=sqlite_env(source))
    assert done.returncode == 2
    assert "is the configured database itself" in done.stderr
    _, rows = summaries_and_rows(tmp_path, source)
    assert len(rows) == 6 + 3 + 5 + 3 + 5


def test_a_failure_midway_names_the_table_and_is_not_reported_done(tmp_path: Path, run_cli) -> None:
    source = make_source(tmp_path, executions=30)
    target = tmp_path / "target" / "mimir.db"
    with open_url(tmp_path, target) as store, store.db.write() as conn:  # the target refuses workers
        conn.execute(
            text("CREATE TRIGGER no_workers BEFORE INSERT ON workers BEGIN SELECT RAISE(ABORT, 'no workers here'); END")
        )
    done = run_cli("migrate", "--to", f"sqlite:///{target}", "--batch", "7", env=sqlite_env(source))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mimir-tui: error: migration to sqlite:///{target} failed: copying table workers failed")
    assert "no workers here" in last and "run again with --force" in last
    assert "verified" not in done.stdout


@pytest.mark.parametrize("target_backend", ["sqlite", "postgres", "mysql"])
def test_the_source_is_read_in_one_snapshot_while_it_is_written(
    tmp_path: Path, server_settings, target_backend
) -> None:
    source = open_url(tmp_path, make_source(tmp_path, executions=60))
    if target_backend == "sqlite":
        target = open_url(tmp_path, tmp_path / "target" / "mimir.db")
    else:
        target = open_backend(server_settings(target_backend))
    written = []

    def write_meanwhile(table: str, done: int, total: int) -> None:  # after each batch, the service writes
        n = len(written)
        source.save_execution(JobExecutionRecord(id=f"zz-new-{n:03d}", job_id="alpha", pipeline="fetch"))
        source.save_job(ScheduledJob(id=f"0-new-{n:03d}", name="new", pipeline="fetch", cron_expr="* * * * *"))
        written.append(table)

    try:
        at_start = tables.table_summaries(source)
        report = migrate(source, target, batch=9, progress=write_meanwhile)
        assert len(written) > 10
        assert report.verified, report.problems
        assert report.copied == at_start  # the moment the copy began, whatever came after
        assert tables.table_summaries(target) == at_start
        assert tables.table_counts(source)["scheduled_jobs"] == 6 + len(written)
        with pytest.raises(TargetNotEmpty):
            migrate(source, target)
    finally:
        source.close()
        target.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    ticks = iter(range(0, 1000, 1))
    bar = Terminal()
    report = ProgressReport(bar, "migrate", clock=lambda: next(ticks))
    report.start({"a": 10, "b": 30})
    for table, done, total in [("a", 0, 10), ("a", 10, 10), ("b", 0, 30), ("b", 15, 30), ("b", 30, 30)]:
        report.report(table, done, total)
    report.finish()
    frames = bar.getvalue().split("\r")
    assert frames[-1].rstrip() == "migrate [##############################] 100%  40/40 rows  b"
    assert any("[#######-----------------------]  25%  10/40 rows  a" in f for f in frames)
    assert any(" 62%  25/40 rows  b" in f for f in frames)
    assert bar.getvalue().endswith("\n")
    plain = io.StringIO()
    lines = ProgressReport(plain, "migrate", every=5, clock=lambda: next(ticks) * 2)
    lines.start({"a": 10, "b": 30})
    for table, done, total in [("a", 10, 10), ("b", 3, 30), ("b", 6, 30), ("b", 9, 30), ("b", 30, 30)]:
        lines.report(table, done, total)
    assert plain.getvalue().splitlines() == [
        "migrate: 40 rows in 2 tables",
        "migrate: a: 10/10 rows (25% of all)",
        "migrate: b: 9/30 rows (47% of all)",
        "migrate: b: 30/30 rows (100% of all)",
    ]


def test_text_postgresql_cannot_hold_fails_the_copy_naming_the_table(tmp_path: Path, server_settings) -> None:
    source = open_url(tmp_path, make_source(tmp_path, executions=20))
    target = open_backend(server_settings("postgres"))
    try:  # SQLite keeps a NUL character in text; PostgreSQL refuses it
        source.save_execution(JobExecutionRecord(id="zz-nul", job_id="alpha", pipeline="fetch", error="a\x00b"))
        with pytest.raises(tables.PersistenceError) as caught:
            migrate(source, target, batch=8)
        message = str(caught.value)
        assert "copying table job_executions failed after 16 of 21 rows" in message
        assert "NUL" in message and "run again with --force" in message
        assert tables.table_counts(target)["job_executions"] == 16  # the batches before it
    finally:
        source.close()
        target.close()
