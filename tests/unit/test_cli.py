"""The command line contract: health, config show, --config anywhere, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimir_tui import __version__
from mimir_tui.cli import main
from mimir_tui.persistence import ScheduledJob, open_backend
from mimir_tui.persistence.migrate import head_revision


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    path = folder / "mimir.yaml"
    path.write_text("persistence:\n  database_path: ./db/mimir.db\n  retention_days: 12\nui:\n  theme: dark\n")
    return path


def error_lines(err: str) -> list[str]:
    """Our error lines on an in-process stderr (other tests' leftover threads may write there too;
    the strict one-line check runs on real processes)."""
    return [line for line in err.splitlines() if line.startswith(("error:", "mimir-tui: error:"))]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_health_json_on_sqlite(capsys, config_file: Path) -> None:
    code, out, err = run(capsys, "health", "--json", "--config", str(config_file))
    assert code == 0, err
    assert error_lines(err) == []
    report = json.loads(out)
    assert report["status"] == "healthy"
    assert report["backend"] == "sqlite"
    assert isinstance(report["latency_ms"], (int, float)) and 0 <= report["latency_ms"] < 5000
    assert isinstance(report["size_bytes"], int) and report["size_bytes"] > 0
    assert report["row_counts"] == {"scheduled_jobs": 0, "pipelines": 0, "job_executions": 0}
    assert report["schema_version"] == head_revision()
    db = config_file.parent / "db" / "mimir.db"
    assert db.is_file()
    assert str(db) in report["database"]


def test_health_counts_rows(capsys, config_file: Path, tmp_path: Path) -> None:
    from mimir_tui.config import load_settings

    with open_backend(load_settings(str(config_file))) as store:
        store.save_job(ScheduledJob(name="j", pipeline="p", cron_expr="* * * * *"))
    code, out, _ = run(capsys, "health", "--json", "--config", str(config_file))
    assert code == 0
    assert json.loads(out)["row_counts"]["scheduled_jobs"] == 1
    code, out, err = run(capsys, "health", "--config", str(config_file))
    assert code == 0 and error_lines(err) == []
    assert "healthy" in out and "rows.scheduled_jobs" in out and "latency_ms" in out


def test_health_lists_live_instances_and_their_load(capsys, config_file: Path) -> None:
    from datetime import timedelta

    from mimir_tui.config import load_settings
    from mimir_tui.persistence import Worker, utcnow

    with open_backend(load_settings(str(config_file))) as store:
        store.workers.register_worker(Worker(id="host-a:1", host="host-a", pid=1, version="t", capacity=4, running=3))
        store.workers.register_worker(Worker(id="host-b:2", host="host-b", pid=2, version="t"))  # runs inline
        old = utcnow() - timedelta(minutes=5)  # silent for 5 minutes: not live
        store.workers.register_worker(
            Worker(id="host-c:3", host="host-c", pid=3, version="t", started_at=old, heartbeat_at=old)
        )
    code, out, _ = run(capsys, "health", "--json", "--config", str(config_file))
    assert code == 0
    instances = {w["id"]: w for w in json.loads(out)["instances"]}
    assert set(instances) == {"host-a:1", "host-b:2"}
    assert (instances["host-a:1"]["run_slots"], instances["host-a:1"]["runs"]) == (4, 3)
    assert 0 <= instances["host-a:1"]["heartbeat_age_s"] < 60
    code, out, _ = run(capsys, "health", "--config", str(config_file))
    assert (
        "2 live" in out and "host-a:1  running, 3/4 run slots taken" in out and "host-b:2  running, runs inline" in out
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{cfg}", "health", "--json"],
        ["health", "--config", "{cfg}", "--json"],
        ["health", "--json", "--config", "{cfg}"],
        ["--config", "{cfg}", "config", "show", "--json"],
        ["config", "--config", "{cfg}", "show", "--json"],
        ["config", "show", "--json", "--config", "{cfg}"],
    ],
    ids=["before-health", "after-health", "last-health", "before-config", "between-config", "after-config"],
)
def test_config_flag_before_or_after_the_subcommand(argv, capsys, config_file: Path) -> None:
    code, out, err = run(capsys, *[a.format(cfg=config_file) for a in argv])
    assert code == 0, err
    data = json.loads(out)
    if "health" in argv:
        assert str(config_file.parent / "db" / "mimir.db") in data["database"]
    else:
        assert data["config_file"] == str(config_file)
        assert data["settings"]["persistence"]["retention_days"] == 12
    # the working directory's defaults were not used
    assert not (Path.cwd() / "data").exists()


def test_config_show_json_shows_sources(capsys, config_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("MIMIR_LOG_LEVEL", "debug")
    monkeypatch.setenv("MIMIR_BACKEND", "postgres")
    monkeypatch.setenv("MIMIR_CONNECTION_STRING", "postgres://me:hunter2@db:5432/mimir")
    code, out, err = run(capsys, "config", "show", "--json", "--config", str(config_file))
    assert code == 0, err
    data = json.loads(out)
    assert data["config_file"] == str(config_file)
    assert data["sources"] == {
        "persistence.database_path": f"file {config_file}",
        "persistence.retention_days": f"file {config_file}",
        "ui.theme": f"file {config_file}",
        "logging.level": "env MIMIR_LOG_LEVEL",
        "persistence.backend": "env MIMIR_BACKEND",
        "persistence.connection_string": "env MIMIR_CONNECTION_STRING",
    }
    settings = data["settings"]
    assert settings["logging"]["level"] == "DEBUG"
    assert settings["persistence"]["backend"] == "postgres"
    assert settings["persistence"]["connection_string"] == "postgres://me:***@db:5432/mimir"
    assert settings["persistence"]["database_path"] == str(config_file.parent / "db" / "mimir.db")
    assert settings["ui"]["theme"] == "dark"
    assert set(settings) >= {"persistence", "scheduler", "pipelines", "plugins", "logging", "ui", "vectors"}
    assert "hunter2" not in out


def test_config_show_text(capsys, config_file: Path) -> None:
    code, out, err = run(capsys, "config", "show", "--config", str(config_file))
    assert code == 0, err
    assert f"# config file: {config_file}" in out
    assert "retention_days: 12" in out
    assert f"#   persistence.retention_days: file {config_file}" in out


def test_config_show_without_any_config(capsys) -> None:
    if Path("/etc/mimir").exists():
        pytest.skip("/etc/mimir exists on this machine")
    code, out, _ = run(capsys, "config", "show", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["config_file"] is None and data["sources"] == {}
    assert data["settings"]["persistence"]["database_path"] == str(Path.cwd() / "data" / "mimir.db")


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


# -- as a real process: exit codes and stderr ----------------------------------------------------


def test_health_process_exit_0(run_cli, config_file: Path) -> None:
    proc = run_cli("health", "--json", "--config", str(config_file))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["status"] == "healthy"


@pytest.mark.parametrize(
    "argv", [["no-such-command"], ["health", "--no-such-flag"], ["config"]], ids=["command", "flag", "action"]
)
def test_usage_errors_are_exit_2_with_one_line(argv, run_cli) -> None:
    proc = run_cli(*argv)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_into_a_closed_pipe_is_no_traceback(cli_argv: list[str]) -> None:
    import subprocess

    proc = subprocess.Popen([*cli_argv, "config", "show", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write (`| head -0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err, err
