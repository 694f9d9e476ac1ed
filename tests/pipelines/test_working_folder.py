"""One folder for relative paths in steps, however a run starts (issue 10, item 3).

``./output/report.html`` in a step used to resolve against the current directory of whichever
process ran it, so ``jobs run --wait`` in one folder and the service started in another wrote
the same job's output to two places, and ``security.write_paths`` judged a different path in
each. Relative paths resolve against the pipeline file's folder, or ``pipelines.working_dir``
(relative to the config file's folder) when it is set or the pipeline has no file.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from mimir_tui.config import load_settings
from mimir_tui.persistence import RunRequest, open_backend
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.pipelines.store import import_path, save_spec
from mimir_tui.scheduler.executor import run_pipeline_now, run_request_here

PIPELINE = """
name: where
steps:
  - name: write
    plugin: Output.json
    config: {file: "./output/result.json", data: "{{ run.id }}"}
  - name: pwd
    plugin: System.command
    config: {command: [pwd]}
    output: pwd
"""


def setup(root: Path, *, pipelines: str = "", extra: str = "") -> Path:
    """A deployment in ``root``: config.yaml, pipelines/where.yaml; returns the config path.
    ``pipelines``: more lines of the config's pipelines section; ``extra``: more sections."""
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "where.yaml").write_text(textwrap.dedent(PIPELINE).lstrip())
    config = root / "config.yaml"
    config.write_text(
        "persistence:\n  database_path: ./data/mimir.db\n"
        "pipelines:\n  directory: ./pipelines\n  watch: false\n" + pipelines + "logging:\n"
        "  file_path: ./logs/mimir.log\n  executions_dir: ./logs/executions\n" + extra
    )
    return config


def no_file() -> PipelineSpec:
    """A pipeline stored without a file: it writes x.json."""
    step = {"name": "w", "plugin": "Output.json", "config": {"file": "x.json", "data": 1}}
    return PipelineSpec.from_config({"name": "no-file", "steps": [step]})


def written(path: Path) -> str:
    return json.loads(path.read_text())


def test_the_cli_in_one_folder_and_the_executor_in_another_write_the_same_file(tmp_path, cli_argv, monkeypatch):
    """The bug: ``jobs run --wait`` started in folder A wrote A/output/result.json, the service
    started in B wrote B/output/result.json. Both now write pipelines/output/result.json, and a
    System.command runs in that folder too."""
    root = tmp_path / "deploy"
    config = setup(root)
    here_a, here_b = tmp_path / "a", tmp_path / "b"
    here_a.mkdir()
    here_b.mkdir()
    target = root / "pipelines" / "output" / "result.json"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli_argv, "--config", str(config), *args],
            capture_output=True,
            text=True,
            cwd=here_a,
            timeout=120,
        )

    assert cli("pipelines", "import", str(root / "pipelines")).returncode == 0
    added = cli("jobs", "add", "--id", "j1", "--name", "where", "--pipeline", "where", "--cron", "0 0 1 1 *")
    assert added.returncode == 0, added.stderr
    ran = cli("jobs", "run", "j1", "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    first = json.loads(ran.stdout)
    assert first["status"] == "success"
    assert written(target) == first["id"]
    assert not (here_a / "output").exists()

    monkeypatch.chdir(here_b)
    settings = load_settings(config)
    with open_backend(settings) as backend:
        request = backend.runs.enqueue(RunRequest(job_id="j1", pipeline="where"))
        assert run_request_here(backend, settings, request)
        second = backend.get_execution(request.execution_id)
    assert second.status == "success", second.error
    assert written(target) == second.id != first["id"]
    assert not (here_b / "output").exists()
    pwd = {step["step_name"]: step["output"] for step in second.steps}["pwd"]
    assert pwd["stdout"].strip() == str(root / "pipelines")


def test_a_configured_working_dir_wins_and_serves_pipelines_without_a_file(tmp_path, monkeypatch):
    """``pipelines.working_dir`` (relative to the config file's folder) is the base of every
    pipeline, those stored without a file included, whatever the current directory."""
    root = tmp_path / "deploy"
    config = setup(root, pipelines="  working_dir: ./work\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config)
    assert settings.pipelines.working_dir == str(root / "work")
    (root / "work").mkdir()
    with open_backend(settings) as backend:
        assert import_path(backend, root / "pipelines", _registry(settings)).ok
        from_file = run_pipeline_now(backend, settings, "where").record
        assert from_file.status == "success", from_file.error
        assert written(root / "work" / "output" / "result.json") == from_file.id

        save_spec(backend, no_file())
        assert backend.get_pipeline("no-file").source_path is None
        stored = run_pipeline_now(backend, settings, "no-file").record
        assert stored.status == "success", stored.error
    assert (root / "work" / "x.json").is_file() and not (elsewhere / "x.json").exists()


def test_a_pipeline_without_a_file_and_no_working_dir_uses_the_config_folder(tmp_path, monkeypatch):
    root = tmp_path / "deploy"
    config = setup(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config)
    with open_backend(settings) as backend:
        save_spec(backend, no_file())
        record = run_pipeline_now(backend, settings, "no-file").record
    assert record.status == "success", record.error
    assert (root / "x.json").is_file() and not (elsewhere / "x.json").exists()


@pytest.mark.parametrize("started_in", ["deploy", "elsewhere"])
def test_write_paths_judge_the_path_the_step_writes_wherever_the_run_starts(tmp_path, monkeypatch, started_in):
    """Attack: ``security.write_paths`` confined writes to pipelines/output, but a relative
    ``../escape.json`` was judged against the current directory of the process, so whether it
    was refused depended on where the command was started. Now the same path is judged, the
    one the step would write: ``./output/result.json`` is allowed and ``../../escape.json``
    (outside) refused, from any folder."""
    root = tmp_path / "deploy"
    config = setup(root, extra="security:\n  write_paths: [./pipelines/output]\n")
    (root / "pipelines" / "escape.yaml").write_text(
        "name: escape\nsteps:\n  - {name: w, plugin: Output.json, config: {file: ../../escape.json, data: 1}}\n"
    )
    start = tmp_path / started_in
    start.mkdir(exist_ok=True)
    monkeypatch.chdir(start)
    settings = load_settings(config)
    with open_backend(settings) as backend:
        assert import_path(backend, root / "pipelines", _registry(settings)).ok
        allowed = run_pipeline_now(backend, settings, "where").record
        refused = run_pipeline_now(backend, settings, "escape").record
    assert allowed.status == "success", allowed.error
    assert written(root / "pipelines" / "output" / "result.json") == allowed.id
    assert refused.status == "failed"
    assert f"may not write {root}/pipelines/../../escape.json" in (refused.error or "")
    assert not (tmp_path / "escape.json").exists()


def test_a_missing_working_folder_fails_the_command_step_naming_it(tmp_path, monkeypatch):
    root = tmp_path / "deploy"
    config = setup(root, pipelines="  working_dir: ./gone\n")
    settings = load_settings(config)
    spec = PipelineSpec.from_config(
        {"name": "cmd", "steps": [{"name": "c", "plugin": "System.command", "config": {"command": ["true"]}}]}
    )
    with open_backend(settings) as backend:
        save_spec(backend, spec)
        record = run_pipeline_now(backend, settings, "cmd").record
    assert record.status == "failed"
    assert record.error == f"step 1 (c) failed: the working folder {root}/gone does not exist"


def _registry(settings):
    from mimir_tui.pipelines.registry import default_registry

    return default_registry(settings)
