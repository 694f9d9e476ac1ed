"""``mimir-tui pipelines ...`` and ``mimir-tui executions ...``: output, JSON and exit codes.

Each test runs in its own working directory with no config file, so the command line and the
test share the defaults: ``./data/mimir.db``, ``./logs/executions``, ``./pipelines``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mimir_tui.config import load_settings
from mimir_tui.persistence import open_backend

REPO = Path(__file__).resolve().parents[2]

GOOD = """
name: greet
description: says hello
steps:
  - name: hello
    plugin: Data_Processing.transform
    config:
      data: ["hello", "world"]
      operation: join
      separator: " "
    output: greeting
  - name: save
    plugin: Output.json
    config: {file: "./output/greeting.json", input: greeting}
    output: saved
"""

FAILING = """
name: failing
steps:
  - name: ok
    plugin: Data_Processing.delay
    config: {seconds: 0}
    output: waited
  - name: missing file
    plugin: Input.file
    config: {path: "./does/not/exist.csv"}
    output: rows
  - name: never
    plugin: Data_Processing.delay
    config: {seconds: 0}
"""


def write(name: str, text: str) -> Path:
    path = Path.cwd() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def cli(capsys):
    """``mimir-tui ARGS`` in this process (fast); returns (returncode, stdout, stderr)."""
    from mimir_tui.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


@pytest.fixture
def local_store():
    """The store the command line uses in this test's working directory."""
    backend = open_backend(load_settings(use_search=False, environ={}))
    try:
        yield backend
    finally:
        backend.close()


def test_validate_exit_codes_and_one_line_per_error(cli):
    good = write("good.yaml", GOOD)
    bad = write(
        "bad.yaml",
        """
        name: bad
        steps:
          - name: one
            plugin: Input.nope
          - name: two
            plugin: Output.json
            config: {input: "{{ nothing }}"}
    """,
    )
    ok = cli("pipelines", "validate", str(good), str(REPO / "pipelines"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert f"ok  {good}: 1 pipeline(s): greet" in ok.stdout

    result = cli("pipelines", "validate", str(good), str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(
        f"{bad}:4: pipeline 'bad', step 'one', key 'plugin': unknown plugin 'Input.nope' (known plugins: "
    )
    assert "Input.api" in lines[0]
    assert lines[1] == f"{bad}:7: pipeline 'bad', step 'two', key 'config.file': required key is missing"
    assert lines[2].startswith(
        f"{bad}:7: pipeline 'bad', step 'two', key 'config.input':"
        " template {{ nothing }} refers to output 'nothing'"
    )
    assert str(good) in result.stdout  # the valid file is still reported ok

    syntax = write("syntax.yaml", "name: x\nsteps:\n  - {name: a, plugin: Input.api\n")
    result = cli("pipelines", "validate", str(syntax))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{syntax}:4:1: invalid YAML")


@pytest.mark.slow
def test_validate_as_a_real_process(run_cli):
    bad = write("bad.yaml", "name: bad\nsteps:\n  - {name: one, plugin: Input.nope}\n")
    result = run_cli("pipelines", "validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:3: pipeline 'bad', step 'one', key 'plugin': unknown plugin")
    assert len(result.stderr.strip().splitlines()) == 1


def test_import_list_show_and_run(cli, local_store):
    path = write("defs/greet.yaml", GOOD)
    imported = cli("pipelines", "import", str(path.parent), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["added"] == ["greet"]

    listed = cli("pipelines", "list", "--json")
    assert listed.returncode == 0
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "greet" and row["enabled"] is True and row["load_error"] is None
    assert row["config"]["steps"][0]["plugin"] == "Data_Processing.transform"
    assert row["source_path"] == str(path.resolve())
    assert row["created_at"].endswith("+00:00")

    table = cli("pipelines", "list")
    assert "greet" in table.stdout and "ok" in table.stdout

    shown = cli("pipelines", "show", "greet", "--json")
    assert json.loads(shown.stdout)["description"] == "says hello"
    text = cli("pipelines", "show", "greet")
    assert "plugin: Output.json" in text.stdout
    missing = cli("pipelines", "show", "nope")
    assert missing.returncode == 2 and "pipeline 'nope' not found" in missing.stderr

    ran = cli("pipelines", "run", "greet")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("step 1/2  hello  success  ") and lines[0].endswith(" ms")
    assert lines[1].startswith("step 2/2  save  success  ")
    assert json.loads((path.parent / "output/greeting.json").read_text()) == "hello world"  # the file's folder
    execution_id = lines[2].split()[1].rstrip(":")
    record = local_store.get_execution(execution_id)
    assert record.status == "success" and record.triggered_by == "manual"

    as_json = cli("pipelines", "run", "greet", "--json")
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert data["status"] == "success" and len(data["steps"]) == 2 and data["start_time"].endswith("+00:00")
    assert Path(data["log_path"]).is_file()
    assert "step 1/2  hello  success" in as_json.stderr

    unknown = cli("pipelines", "run", "nope")
    assert unknown.returncode == 2 and "pipeline 'nope' not found" in unknown.stderr


def test_run_a_file_that_fails_exits_1_and_executions_show_it(cli, local_store):
    path = write("failing.yaml", FAILING)
    ran = cli("pipelines", "run", str(path), "--json")
    assert ran.returncode == 1
    record = json.loads(ran.stdout)
    assert record["status"] == "failed"
    assert record["error"].startswith("step 2 (missing file) failed: file ")
    assert [s["status"] for s in record["steps"]] == ["success", "failed"]

    listed = cli("executions", "list", "--json")
    (row,) = json.loads(listed.stdout)
    assert row["id"] == record["id"] and row["status"] == "failed" and row["start_time"].endswith("+00:00")
    assert row["steps"] == record["steps"] and "context" not in row  # a page: the context is in show
    assert json.loads(cli("executions", "list", "--status", "success", "--json").stdout) == []
    assert len(json.loads(cli("executions", "list", "--status", "failed,success", "--json").stdout)) == 1
    bad_status = cli("executions", "list", "--status", "exploded")
    assert bad_status.returncode == 2 and "unknown status 'exploded'" in bad_status.stderr
    bad_job = cli("executions", "list", "--job", "no-such-job")
    assert bad_job.returncode == 2 and "job 'no-such-job' not found" in bad_job.stderr
    table = cli("executions", "list", "--limit", "5")
    assert record["id"] in table.stdout and "failed" in table.stdout

    shown = cli("executions", "show", record["id"])
    assert shown.returncode == 0
    assert "1. ok [Data_Processing.delay]  success" in shown.stdout
    assert "2. missing file [Input.file]  failed" in shown.stdout
    assert f"logs/executions/{record['id']}.log" in shown.stdout
    as_json = json.loads(cli("executions", "show", record["id"], "--json").stdout)
    assert as_json["id"] == record["id"] and as_json["log_path"].endswith(f"{record['id']}.log")
    log_text = Path(as_json["log_path"]).read_text()
    assert "[missing file] (Input.file) step 2/3 failed" in log_text

    assert cli("executions", "show", "nope").returncode == 2
    assert cli("executions", "cancel", "nope").returncode == 2
    finished = cli("executions", "cancel", record["id"])
    assert finished.returncode == 1 and "already finished" in finished.stderr


def test_a_file_with_several_pipelines_needs_a_choice(cli):
    path = write(
        "two.yaml",
        """
        pipelines:
          - {name: a, steps: [{name: s, plugin: Data_Processing.delay, config: {seconds: 0}}]}
          - {name: b, steps: [{name: s, plugin: Data_Processing.delay, config: {seconds: 0}}]}
    """,
    )
    result = cli("pipelines", "run", str(path))
    assert result.returncode == 2 and "choose one with --pipeline" in result.stderr
    assert cli("pipelines", "run", str(path), "--pipeline", "b").returncode == 0


def test_a_bad_file_from_the_watcher_is_visible_in_pipelines_list(cli, local_store):
    from mimir_tui.pipelines.registry import default_registry
    from mimir_tui.pipelines.store import PipelineWatcher

    settings = load_settings(use_search=False, environ={})
    folder = Path(settings.pipelines.directory)
    write("pipelines/good.yaml", GOOD)
    write("pipelines/broken.yaml", "name: broken\nsteps:\n  - {name: s, plugin: Input.api, config: {}}\n")
    watcher = PipelineWatcher(local_store, settings, default_registry())
    watcher.sync()
    rows = {r["name"]: r for r in json.loads(cli("pipelines", "list", "--json").stdout)}
    assert rows["greet"]["load_error"] is None
    assert rows["broken"]["enabled"] is False
    assert rows["broken"]["load_error"] == (
        f"{folder / 'broken.yaml'}:3: pipeline 'broken', step 's', key 'config.url': required key is missing"
    )
    table = cli("pipelines", "list").stdout
    assert "error: " in table and "broken" in table
    ran = cli("pipelines", "run", "broken")
    assert ran.returncode == 2 and "has no valid definition" in ran.stderr


@pytest.mark.slow
def test_cancel_from_another_process_stops_the_run_within_a_second(run_cli, local_store, cli_command_env):
    path = write(
        "slow.yaml",
        """
        name: slow
        steps:
          - {name: first, plugin: Data_Processing.delay, config: {seconds: 0}, output: a}
          - {name: wait, plugin: Data_Processing.delay, config: {seconds: 30}, output: b}
          - {name: never, plugin: Data_Processing.delay, config: {seconds: 0}}
    """,
    )
    proc = subprocess.Popen(
        [*cli_command_env, "pipelines", "run", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        running = None
        while time.monotonic() < deadline and running is None:
            for record in local_store.list_executions(limit=5):
                steps = record.step_records()
                if record.status == "running" and len(steps) == 2 and steps[1].status == "running":
                    running = record
            time.sleep(0.05)
        assert running is not None, "the run did not reach its delay step"

        cancelled = run_cli("executions", "cancel", running.id)
        asked = time.monotonic()
        assert cancelled.returncode == 0, cancelled.stderr
        while time.monotonic() - asked < 5 and local_store.get_execution(running.id).status == "running":
            time.sleep(0.02)
        elapsed = time.monotonic() - asked
        record = local_store.get_execution(running.id)
        assert record.status == "cancelled"
        assert elapsed < 1.0, f"cancelled after {elapsed:.2f}s"
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    final = json.loads(out)
    assert final["status"] == "cancelled" and final["error"] == "cancelled by request"
    assert [s["status"] for s in final["steps"]] == ["success", "cancelled"]


def _sigterm_in_first_step(local_store, cli_command_env, path: Path, settle: float = 0.0):
    """Run ``pipelines run PATH``, send SIGTERM ``settle`` s into its first step; (exit code,
    stdout, stderr, the run's record as it started)."""
    proc = subprocess.Popen(
        [*cli_command_env, "pipelines", "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not local_store.list_executions(limit=1, status="running"):
            time.sleep(0.05)
        (running,) = local_store.list_executions(limit=1, status="running")
        while time.monotonic() < deadline and not (local_store.get_execution(running.id).steps or []):
            time.sleep(0.05)
        time.sleep(settle)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err, running


@pytest.mark.slow
def test_sigterm_to_a_running_cli_run_records_cancelled(local_store, cli_command_env):
    path = write(
        "slow.yaml",
        """
        name: slow
        steps:
          - {name: wait, plugin: Data_Processing.delay, config: {seconds: 30}}
    """,
    )
    code, out, err, running = _sigterm_in_first_step(local_store, cli_command_env, path)
    assert code == 1, err
    record = local_store.get_execution(running.id)
    assert record.status == "cancelled" and record.error == "cancelled: interrupted (SIGTERM)"
    assert "cancelled" in out


REDOS = """
name: redos
steps:
  - name: match
    plugin: Data_Processing.transform
    timeout: {timeout}
    config:
      data: [{{s: "{text}"}}, {{s: "aaaa"}}]
      operation: filter
      field: s
      op: regex
      value: "{pattern}"
"""


def test_redos_attack_from_the_issue_finishes_in_a_cli_run(cli_command_env):
    """Issue 9's reported attack: ``^(a+)+$`` over ``"a" * 39 + "!"`` froze the process for
    minutes (the standard library's ``re`` holds the GIL while it backtracks)."""
    path = write("redos.yaml", REDOS.format(timeout=5, text="a" * 39 + "!", pattern="^(a+)+$"))
    ran = subprocess.run(
        [*cli_command_env, "pipelines", "run", str(path), "--json"], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["steps"][0]["output"] == [{"s": "aaaa"}]


@pytest.mark.slow
def test_redos_attack_sigterm_stops_a_cli_run_stuck_in_a_match(local_store, cli_command_env):
    """Before, only SIGKILL stopped it: the match held the GIL, so no signal handler ran."""
    path = write("redos.yaml", REDOS.format(timeout=120, text="a" * 39 + "!", pattern="^(a|aa)+$"))
    code, _, err, running = _sigterm_in_first_step(local_store, cli_command_env, path, settle=0.5)
    assert code == 1, err
    assert local_store.get_execution(running.id).status == "cancelled"


@pytest.fixture
def cli_command_env() -> list[str]:
    script = Path(sys.executable).with_name("mimir-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mimir_tui.cli"]
