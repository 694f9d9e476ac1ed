"""The dashboard's in-process scheduler, quitting, help and the command palette, over a real
SQLite store: each test presses keys and asserts on the screen and the database."""

from __future__ import annotations

import asyncio
import time

from test_panes import _row, _settings, _settle
from textual.command import CommandPalette
from textual.widgets import Input, Markdown, Select

from mimir_tui.errors import NotFound
from mimir_tui.persistence import open_backend
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.pipelines.store import save_spec
from mimir_tui.scheduler import jobs
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.help import HelpScreen
from mimir_tui.tui.screens.job_editor import JobEditor
from mimir_tui.tui.widgets.confirm import ConfirmScreen

FAST = (
    "scheduler:\n  poll_interval: 0.2\n  heartbeat_interval: 0.5\n  stale_after: 5\n  shutdown_grace: 0.3\n"
    "pipelines:\n  watch: false\n"
)


def _store_with_job(tmp_path, seconds: float):
    """Settings on a SQLite file holding a pipeline that waits ``seconds`` and a job using it."""
    settings = _settings(tmp_path, FAST)
    with open_backend(settings) as backend:
        spec = PipelineSpec(
            name="wait", steps=[{"name": "w", "plugin": "Data_Processing.delay", "config": {"seconds": seconds}}]
        )
        save_spec(backend, spec)
        jobs.create_job(backend, name="waiter", pipeline="wait", cron_expr="0 0 1 1 *", job_id="waiter")
    return settings


async def _until(condition, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _status(settings, execution_id: str) -> str:
    """The run's status ("queued" while no instance has claimed it: it has no row yet)."""
    with open_backend(settings) as backend:
        try:
            return backend.get_execution(execution_id).status
        except NotFound:
            return "queued"


async def _running_here(app, settings) -> tuple[str, str]:
    """Once the app's scheduler runs: a run of the waiter queued and started by it; its
    instance and the run's id."""
    await _until(lambda: app.instance is not None)
    with open_backend(settings) as backend:
        run = jobs.run_job_now(backend, "waiter").execution_id
    await _until(lambda: _status(settings, run) == "running")
    return app.instance, run


def _stopped_as_sigterm(settings, worker: str, run: str) -> None:
    """The run interrupted and the instance recorded stopped, as SIGTERM leaves them."""
    assert _status(settings, run) == "interrupted"
    with open_backend(settings) as backend:
        assert {w.id: w.status for w in backend.workers.list_workers()}[worker] == "stopped"


async def test_the_in_process_scheduler_runs_a_queued_run_and_shows_it(tmp_path):
    """`jobs run` from another connection: the dashboard's own scheduler claims and runs it;
    the Executions pane shows it done by this instance, and Health lists this instance."""
    settings = _store_with_job(tmp_path, 0)
    app = MimirApp(settings, scheduler=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(lambda: app.instance is not None)
        with open_backend(settings) as backend:
            run = jobs.run_job_now(backend, "waiter").execution_id
        await _until(lambda: _status(settings, run) == "success")
        await pilot.press("r")
        await _settle(app, pilot)
        row = _row(app, "executions", run)
        assert row[0].endswith("success") and row[2] == "waiter"
        # Health's read in flight when r came (from before the instance registered) skips r's.
        health = app.query_one("#health-table")
        await _until(lambda: f"instance:{app.instance}" in {str(key.value) for key in health.rows})
        assert _row(app, "health", f"instance:{app.instance}")[0].endswith("(this dashboard)")
        with open_backend(settings) as backend:
            assert backend.get_execution(run).worker_id == app.instance


async def test_the_dashboard_without_its_scheduler_leaves_queued_runs(tmp_path):
    """The factory's default (tests, ui.run_scheduler false): nothing claims the run."""
    settings = _store_with_job(tmp_path, 0)
    app = MimirApp(settings)
    async with app.run_test() as pilot:
        with open_backend(settings) as backend:
            run = jobs.run_job_now(backend, "waiter").execution_id
        await asyncio.sleep(1)
        await _settle(app, pilot)
        assert app.service is None
    assert _status(settings, run) == "queued"


async def test_quit_with_a_run_in_progress_asks_then_stops_as_sigterm_does(tmp_path):
    """q while a run of 30 s runs here: a confirmation first (n keeps everything running);
    y stops the scheduler as the service's SIGTERM does: the grace, then the run interrupted
    and the instance recorded stopped."""
    settings = _store_with_job(tmp_path, 30)
    app = MimirApp(settings, scheduler=True)
    async with app.run_test() as pilot:
        worker, run = await _running_here(app, settings)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "1 run(s) in progress here" in app.screen.question
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen) and app.instance == worker
        await pilot.press("q")
        await pilot.press("y")
        await _until(lambda: app.return_code is not None)
    _stopped_as_sigterm(settings, worker, run)


async def test_help_lists_the_focused_panes_keys_first(tmp_path):
    """? opens help made from the bindings: the focused pane's section comes first with its
    keys (the Executions pane's cancel and filters); Escape closes it."""
    settings = _settings(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await pilot.press("3", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one(Markdown).source
        sections = [line for line in text.splitlines() if line.startswith("## ")]
        assert sections[:2] == ["## Executions", "## Jobs"] and "## Everywhere" in sections
        executions = text.split("## Executions")[1].split("## ")[0]
        assert "| `c` | Cancel run |" in executions and "| `f` | Status filter |" in executions
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_the_palette_finds_new_job_and_runs_it(tmp_path):
    """ctrl+p, "new job", Enter: the job editor opens (the Jobs pane's n); saved, the job is in
    the database."""
    settings = _store_with_job(tmp_path, 0)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await pilot.press("4", "ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"new job")
        await _until(lambda: app.screen.query_one("CommandList").option_count > 0)
        await pilot.pause()
        await pilot.press("down", "enter")
        await _settle(app, pilot)
        assert isinstance(app.screen, JobEditor)
        app.screen.query_one("#job-id", Input).value = "from-palette"
        app.screen.query_one("#job-name", Input).value = "From the palette"
        app.screen.query_one("#job-pipeline", Select).value = "wait"
        app.screen.query_one("#job-cron", Input).value = "5 4 * * *"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert _row(app, "jobs", "from-palette")[0] == "From the palette"
    with open_backend(settings) as backend:
        assert backend.get_job("from-palette").cron_expr == "5 4 * * *"


async def test_ctrl_q_and_the_palettes_quit_ask_as_q_does(tmp_path):
    """ctrl+q (Textual's quit key) and the palette's "Quit" with a run in progress here: the
    same confirmation as q (n keeps the run and the scheduler); ctrl+q again while it is asked
    does not ask twice; y stops the scheduler as SIGTERM does and the run is interrupted."""
    settings = _store_with_job(tmp_path, 30)
    app = MimirApp(settings, scheduler=True)
    async with app.run_test(size=(120, 40)) as pilot:
        worker, run = await _running_here(app, settings)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "1 run(s) in progress here" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and app.instance == worker and app.return_code is None

        (quit_command,) = [c for c in app.get_system_commands(app.screen) if c.title == "Quit"]
        assert quit_command.callback == app.action_quit and "asks first" in quit_command.help
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"quit")
        await _until(lambda: app.screen.query_one("CommandList").option_count > 0)
        await pilot.pause()
        await pilot.press("down", "enter")
        await _until(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert sum(isinstance(s, ConfirmScreen) for s in app.screen_stack) == 1
        assert _status(settings, run) == "running"
        await pilot.press("y")
        await _until(lambda: app.return_code is not None)
    _stopped_as_sigterm(settings, worker, run)
