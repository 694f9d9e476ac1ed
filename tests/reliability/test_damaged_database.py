"""Attack: garbage written into a page of the SQLite file (issue 9, item 8).

``health`` said healthy while ``jobs list`` failed with "database disk image is malformed",
and the service logged an error every second, firing nothing, for as long as it ran. Now
``health`` runs SQLite's quick check and reports any damage an operation met (unhealthy, one
line naming the file and how to recover), and the service stops firing and exits 1 with that
line, logged once.

The garbage goes over the header and first cell pointers of a b-tree page (its first 24
bytes), never into the file header: the file still opens, and only reading that page fails.
Its first byte, the page's type, is what makes every read fail: garbage in the cell pointers
alone are masked to the page's size, and a plain read then parsed cells from its last byte
on, now and then into rows (``jobs list`` listed 40 jobs, 12 times in 30 under I/O load); only
the integrity checks always saw it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from test_bad_input import assert_one_line_failure

from mimir_tui.config import load_settings
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend

GARBAGE = b"\xff" * 24


def write_config(root: Path) -> Path:
    data = {
        "persistence": {"database_path": str(root / "data" / "mimir.db"), "enable_vector_db": False},
        "scheduler": {"poll_interval": 0.5, "heartbeat_interval": 1, "stale_after": 5, "shutdown_grace": 2},
        "pipelines": {"directory": str(root / "pipelines"), "watch": False},
        "plugins": {"directories": [str(root / "plugins")]},
        "logging": {
            "output": "file",
            "file_path": str(root / "logs" / "mimir.log"),
            "executions_dir": str(root / "logs" / "executions"),
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    """(config, database): 40 jobs (that never fire during a test) and 200 failed executions
    with long errors, so that each table spans several pages; the WAL checkpointed away."""
    config = write_config(tmp_path / "site")
    settings = load_settings(config, use_search=False, environ={})
    with open_backend(settings) as store:
        for i in range(40):
            store.save_job(
                ScheduledJob(id=f"job-{i:02}", name=f"job {i} " + "x" * 200, pipeline="p", cron_expr="0 0 1 1 *")
            )
        for _ in range(200):
            store.save_execution(JobExecutionRecord(job_id="job-00", pipeline="p", status="failed", error="e" * 400))
    database = Path(settings.persistence.database_path)
    assert not Path(f"{database}-wal").exists()  # the last connection checkpointed it
    return config, database


def leaf_offsets(database: Path, table: str) -> list[int]:
    """Where each leaf page of ``table``'s b-tree starts in the file (SQLite's dbstat table)."""
    with closing(sqlite3.connect(database)) as conn:
        try:
            rows = conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,)).fetchall()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return [(page - 1) * page_size for (page,) in rows]


def damage(database: Path, table: str) -> None:
    """Garbage over the header and cell pointers of the middle leaf page of ``table``."""
    offsets = leaf_offsets(database, table)
    assert len(offsets) >= 3, offsets
    with open(database, "r+b") as fh:
        fh.seek(offsets[len(offsets) // 2])
        fh.write(GARBAGE)


def cli(run_cli, config: Path, *argv: str):
    return run_cli(*argv, "--config", str(config))


def test_health_finds_damage_no_command_of_it_reads(site, run_cli) -> None:
    """The damaged page holds executions, which ``health`` itself never reads (it counts them
    through an index): only the quick check can see it. ``jobs list`` still works."""
    config, database = site
    proc = cli(run_cli, config, "health", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "healthy" and report.get("integrity", "ok") == "ok"
    damage(database, "job_executions")
    assert cli(run_cli, config, "jobs", "list").returncode == 0
    assert cli(run_cli, config, "executions", "list", "--limit", "1000").returncode == 1
    proc = cli(run_cli, config, "health")
    line = assert_one_line_failure(proc, mentions=f"the database file {database} is damaged")
    assert ".recover" in line and "restore" in line
    assert "status          unhealthy" in proc.stdout
    report = json.loads(cli(run_cli, config, "health", "--json").stdout)
    assert report["status"] == "unhealthy" and str(database) in report["error"]


def test_commands_on_a_damaged_page_say_what_to_do(site, run_cli) -> None:
    """``jobs list`` on the damaged page: exit 1, one line naming the file and the way out
    (it was "list_jobs failed: database disk image is malformed")."""
    config, database = site
    damage(database, "scheduled_jobs")
    proc = cli(run_cli, config, "jobs", "list")
    line = assert_one_line_failure(proc, mentions=f"the database file {database} is damaged")
    assert "database disk image is malformed" in line and ".recover" in line
    proc = cli(run_cli, config, "health")
    assert_one_line_failure(proc, mentions=str(database))


@pytest.mark.slow
def test_the_service_stops_with_one_error_on_a_damaged_database(site, cli_argv: list[str], tmp_path: Path) -> None:
    """A running service whose database is damaged under it: it stops firing and exits 1 within
    seconds, with one line on stderr, and logs the damage once (not an error every second)."""
    config, database = site
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIR_")}
    err_path = tmp_path / "service.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [*cli_argv, "--headless", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    log = config.parent / "logs" / "mimir.log"
    try:
        deadline = time.monotonic() + 30
        while "mimir service running" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        time.sleep(1.5)  # a few passes of each loop on the sound database
        damage(database, "scheduled_jobs")
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    stderr = err_path.read_text()
    assert code == 1, (code, stderr, log.read_text())
    assert stderr.splitlines() == [stderr.strip()], stderr
    assert stderr.startswith(f"mimir-tui: error: the database file {database} is damaged") and ".recover" in stderr
    logged = log.read_text().splitlines()
    damaged = [line for line in logged if "malformed" in line]
    assert len(damaged) == 1 and "CRITICAL" in damaged[0], "\n".join(logged)
    assert not [line for line in logged if " ERROR " in line], "\n".join(logged)
    assert "mimir service stopped: the database is damaged" in logged[-1]
