"""Issue 10, items 1 and 7 on the dashboard: a run waiting in the queue opens in the Execution
screen as queued, its log view saying it has not started; cancelled in the queue (it never
started), it says so, not that its log file is on another machine."""

from __future__ import annotations

from test_execution import _until
from test_panes import _settings, _settle
from textual.widgets import Log

from mimir_tui.persistence import RunRequest, ScheduledJob, open_backend
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.execution import ExecutionScreen


async def test_a_queued_run_then_cancelled_in_the_execution_screen(tmp_path):
    settings = _settings(tmp_path)
    with open_backend(settings) as backend:
        backend.save_job(ScheduledJob(id="j", name="j", pipeline="p", cron_expr="0 0 1 1 *"))
        request = backend.runs.enqueue(RunRequest(job_id="j", pipeline="p"))
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ExecutionScreen(request.execution_id)
        await app.push_screen(screen)
        await _settle(app, pilot)
        assert str(screen.query_one("#execution-summary").render()).startswith("queued | p | job j")
        log = screen.query_one("#execution-log", Log)
        assert await _until(pilot, lambda: log.lines[:1] and "none yet: the run has not started" in log.lines[0])
        with open_backend(settings) as backend:
            assert backend.request_cancel(request.execution_id).status == "cancelled"
        await pilot.press("ctrl+r")
        assert await _until(pilot, lambda: "none: the run never started" in log.lines[0])
        assert not any("not on this machine" in line for line in log.lines)
