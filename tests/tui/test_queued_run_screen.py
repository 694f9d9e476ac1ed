"""Issue 10, items 1 and 7 on the dashboard: a run waiting in the queue opens in the Execution
screen as queued, its log view saying it has not started, and no log file is followed until it
leaves the queue (its file does not exist yet; the run may start on another machine); once it
runs here, its file is followed. Cancelled in the queue (it never started), it says so, not that
its log file is on another machine.

The logs folder exists in these tests (as on any machine that ran something): the screen then
had a file to wait for, which it used to start following at once."""

from __future__ import annotations

from test_execution import _until
from test_panes import _settings
from textual.widgets import Log

from mimir_tui.persistence import RunRequest, ScheduledJob, open_backend
from mimir_tui.pipelines.execlog import execution_log_path
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.execution import ExecutionScreen


def _queued(settings) -> str:
    """A run of job ``j`` waiting in the queue (no instance claims it: no scheduler here)."""
    execution_log_path(settings, "x").parent.mkdir(parents=True)
    with open_backend(settings) as backend:
        backend.save_job(ScheduledJob(id="j", name="j", pipeline="p", cron_expr="0 0 1 1 *"))
        return backend.runs.enqueue(RunRequest(job_id="j", pipeline="p")).execution_id


def _following(app) -> bool:
    return any(w.group == "follow-log" and not w.is_finished for w in app.workers)


async def _opened_queued(app, pilot, run: str) -> tuple[ExecutionScreen, Log]:
    """The run's screen, once its first read is shown: queued, no log yet, nothing followed."""
    screen = ExecutionScreen(run)
    await app.push_screen(screen)
    assert await _until(pilot, lambda: screen.detail is not None and screen.polling is False)
    assert str(screen.query_one("#execution-summary").render()).startswith("queued | p | job j")
    log = screen.query_one("#execution-log", Log)
    assert log.lines[:1] and "none yet: the run has not started" in log.lines[0]
    assert not _following(app) and screen.log_source is None
    return screen, log


async def test_a_queued_run_then_cancelled_in_the_execution_screen(tmp_path):
    settings = _settings(tmp_path)
    run = _queued(settings)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen, log = await _opened_queued(app, pilot, run)
        with open_backend(settings) as backend:
            assert backend.request_cancel(run).status == "cancelled"
        await pilot.press("ctrl+r")
        assert await _until(pilot, lambda: "none: the run never started" in log.lines[0])
        assert not any("not on this machine" in line for line in log.lines)
        assert screen.log_source == "records" and not _following(app)


async def test_a_queued_run_is_followed_once_it_runs_here(tmp_path):
    """It leaves the queue and runs here (claimed, its log file written): the next read
    follows the file, whose lines replace the "none yet" note."""
    settings = _settings(tmp_path)
    run = _queued(settings)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen, log = await _opened_queued(app, pilot, run)
        with open_backend(settings) as backend:  # claimed as an instance claims it: running
            _, record = backend.runs.claim_request("here:1:a")
        assert record.id == run and record.status == "running"
        execution_log_path(settings, run).write_text("12:00:00 INFO [s] step 1 started\n")
        await pilot.press("ctrl+r")
        assert await _until(pilot, lambda: log.lines == ["12:00:00 INFO [s] step 1 started"])
        assert screen.log_source == "file" and _following(app)
        with execution_log_path(settings, run).open("a") as f:
            f.write("12:00:01 INFO [s] step 1 done\n")
        assert await _until(pilot, lambda: log.lines[-1] == "12:00:01 INFO [s] step 1 done")
