"""The pipeline screen (steps, YAML, validate, run now) and the health pane's extras (latency
sparkline, executions per day, database and WAL apart), over a real SQLite store."""

from __future__ import annotations

from datetime import timedelta

from test_execution import _until

from mimir_tui.config import load_settings
from mimir_tui.persistence import JobExecutionRecord, open_backend
from mimir_tui.pipelines.registry import default_registry
from mimir_tui.pipelines.store import import_path
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.execution import ExecutionScreen
from mimir_tui.tui.screens.pipeline import PipelineScreen

PIPELINE = """name: "wait-a-bit"
steps:
  - name: "pause"
    plugin: "Data_Processing.delay"
    config: {seconds: 0}
    timeout: 30
    output: "paused"
"""


def _settings(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "config.yaml").write_text(
        "persistence:\n  database_path: ./data/mimir.db\npipelines:\n  directory: ./pipelines\n  watch: false\n"
    )
    return load_settings(tmp_path / "config.yaml")


def _with_pipeline(tmp_path):
    settings = _settings(tmp_path)
    path = tmp_path / "pipelines" / "wait.yaml"
    path.write_text(PIPELINE)
    with open_backend(settings) as backend:
        assert import_path(backend, path, default_registry(settings)).ok
    return settings, path


async def _settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _open_pipeline(app, pilot) -> PipelineScreen:
    await _settle(app, pilot)
    await pilot.press("2", "enter")
    await _settle(app, pilot)
    assert isinstance(app.screen, PipelineScreen)
    return app.screen


async def test_enter_on_a_pipeline_opens_its_steps_and_yaml(tmp_path):
    settings, path = _with_pipeline(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_pipeline(app, pilot)
        table = screen.query_one("#pipeline-steps")
        assert [str(c) for c in table.get_row("0")] == ["pause", "Data_Processing.delay", "30s", "paused"]
        assert screen.detail is not None and screen.detail.yaml == PIPELINE
        assert screen.query_one("#pipeline-yaml").border_title == str(path)


async def test_validate_names_the_file_and_line_of_a_broken_pipeline(tmp_path):
    """Attack: the file on disk was broken after it was imported (an unknown plugin on line 4):
    validate checks the file, as `pipelines validate` does, and says where."""
    settings, path = _with_pipeline(tmp_path)
    path.write_text(PIPELINE.replace("Data_Processing.delay", "Nope.missing"))
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_pipeline(app, pilot)
        await pilot.press("v")
        await _settle(app, pilot)
        assert screen.checked is not None
        errors, _ = screen.checked
        assert errors and errors[0].startswith(f"{path}:4")
        check = screen.query_one("#pipeline-check")
        assert check.display and check.has_class("-error")
        assert f"{path}:4" in str(check.render())


async def test_run_now_on_the_pipeline_screen_creates_an_execution_and_opens_it(tmp_path):
    settings, _ = _with_pipeline(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open_pipeline(app, pilot)
        await pilot.press("x")
        # Not _settle: once the run's screen shows its log it follows the file until it closes,
        # and waiting for every worker then waited for ever (seen when the run ended quickly).
        assert await _until(pilot, lambda: isinstance(app.screen, ExecutionScreen))
        with open_backend(settings) as backend:
            assert await _until(pilot, lambda: backend.list_executions(limit=10)[0].status == "success")
            runs = backend.list_executions(limit=10)
        assert [(r.id, r.pipeline, r.status) for r in runs] == [(app.screen.execution_id, "wait-a-bit", "success")]


async def test_health_shows_latency_sparkline_runs_per_day_and_wal_apart(tmp_path):
    """Runs per day come from the database (one grouped query); a run 9 days old is not counted."""
    settings, _ = _with_pipeline(tmp_path)
    with open_backend(settings) as backend:
        now = backend.database_now()
        for i, days in enumerate((0, 0, 2, 9)):
            start = now - timedelta(days=days)
            backend.save_execution(
                JobExecutionRecord(id=f"r{i}", pipeline="wait-a-bit", status="success", start_time=start)
            )
        starts = [r.start_time.date() for r in backend.list_executions(limit=100)]
    expected = [starts.count((now - timedelta(days=d)).date()) for d in range(6, -1, -1)]
    assert expected[-1] == 2 and expected[-3] == 1 and sum(expected) == 3
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        for _ in range(3):
            await _settle(app, pilot)
            await pilot.press("r")
        await _settle(app, pilot)
        table = app.query_one("#health-table")
        shown = str(table.get_row("per_day")[1]).split(" (")[0]
        assert [int(n) for n in shown.split()] == expected
        assert str(table.get_row("wal_bytes")[0]) == "WAL size"
        assert str(table.get_row("database_bytes")[0]) == "database size"
        sparkline = app.query_one("#health-latency")
        assert len(sparkline.data) >= 3 and all(v > 0 for v in sparkline.data)
