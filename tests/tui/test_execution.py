"""The Execution screen and the Executions pane's actions over a real SQLite store: a finished
run's steps, error and outputs; a running run's log followed as its file grows; cancel through
the screen reaching a real run; re-run; filters by status and job."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

from test_panes import _keys, _row, _seeded, _settings, _settle
from textual.widgets import Log, Tree

from mimir_tui.persistence import JobExecutionRecord, PipelineConfig, StepRecord, open_backend
from mimir_tui.persistence.types import utcnow
from mimir_tui.pipelines.execlog import execution_log_path
from mimir_tui.scheduler.executor import run_pipeline_now
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.execution import ExecutionScreen
from mimir_tui.tui.widgets.confirm import ConfirmScreen


async def _until(pilot, check, seconds: float = 15.0) -> bool:
    """Pause until ``check()`` holds (the app keeps running meanwhile); False on time out."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await pilot.pause(0.05)
    return check()


def _labels(tree: Tree) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        out.append(str(node.label))
        for child in node.children:
            walk(child)

    walk(tree.root)
    return out


def _step(name: str, status: str, *, error: str | None = None, output=None, ms: int = 850) -> dict:
    start = utcnow() - timedelta(minutes=5)
    return StepRecord(
        step_name=name,
        plugin="Data_Processing.delay",
        start_time=start,
        end_time=start + timedelta(milliseconds=ms),
        duration=ms,
        status=status,
        error=error,
        output=output,
    ).to_json()


async def test_enter_on_a_finished_run_shows_its_steps_error_and_outputs_and_escape_goes_back(tmp_path):
    """Stored text that looks like markup (a key "[/b]") is shown as written, not parsed."""
    settings = _seeded(tmp_path)
    with open_backend(settings) as backend:
        backend.save_execution(
            JobExecutionRecord(
                id="zz-failed",
                job_id="demo-hello",
                pipeline="hello-report",
                start_time=utcnow() + timedelta(minutes=1),  # the newest finished run: on top
                end_time=utcnow() + timedelta(minutes=2),
                duration=2400,
                status="failed",
                error="step 'load' failed: boom on row 7",
                steps=[
                    _step("extract", "success", output={"rows": 3, "[/b]": ["a", "b"]}),
                    _step("load", "failed", error="boom on row 7\ntraceback..."),
                ],
                context={"source": "s3://bucket/orders.csv"},
            )
        )
        stored = backend.get_execution("zz-failed")
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await pilot.press("3")
        assert _keys(app, "executions")[0] == "zz-failed"
        await pilot.press("enter")
        await _settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ExecutionScreen) and screen.execution_id == "zz-failed"
        steps = screen.query_one("#execution-steps")
        rows = [[str(c) for c in steps.get_row_at(i)] for i in range(steps.row_count)]
        assert [r[1] for r in rows] == [s.step_name for s in stored.step_records()]
        assert rows[0][3:6] == ["success", rows[0][4], "850ms"] and rows[1][3] == "failed"
        assert rows[1][6] == "boom on row 7"
        assert "boom on row 7" in str(screen.query_one("#execution-error").render())
        assert str(screen.query_one("#execution-summary").render()).startswith("failed | hello-report | job demo-hello")
        labels = _labels(screen.query_one("#execution-data", Tree))
        assert "source: " + json.dumps(stored.context["source"]) in labels
        assert "rows: 3" in labels and "[/b] [2]" in labels and '0: "a"' in labels
        log = screen.query_one("#execution-log", Log)
        assert screen.log_source == "records" and "not on this machine" in log.lines[0]
        assert any("[load]" in line and "boom on row 7" in line for line in log.lines)
        await pilot.press("escape")
        assert app.screen.id == "dashboard"


async def test_a_running_runs_log_lines_appear_as_its_log_file_grows(tmp_path):
    """The test writes to the real log file; each appended line reaches the screen, a half
    written line only once it ends; closing the screen stops the following."""
    settings = _settings(tmp_path)
    with open_backend(settings) as backend:
        backend.save_execution(
            JobExecutionRecord(
                id="live", pipeline="p", start_time=utcnow(), status="running", steps=[_step("wait", "running")]
            )
        )
    path = execution_log_path(settings, "live")
    path.parent.mkdir(parents=True)
    path.write_text("line one\n")
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ExecutionScreen("live")
        await app.push_screen(screen)
        log = screen.query_one("#execution-log", Log)
        assert await _until(pilot, lambda: log.lines == ["line one"])
        with path.open("a") as f:
            f.write("line two\nline thr")
            f.flush()
            assert await _until(pilot, lambda: log.lines[-1:] == ["line two"])
            f.write("ee\n")
        assert await _until(pilot, lambda: log.lines == ["line one", "line two", "line three"])
        assert screen.log_source == "file"
        follower = next(w for w in app.workers if w.group == "follow-log")
        await pilot.press("escape")
        assert await _until(pilot, lambda: follower.is_finished, 5)


def _slow_pipeline(settings, seconds: float = 30) -> None:
    spec = {
        "name": "slow",
        "steps": [
            {"name": "wait", "plugin": "Data_Processing.delay", "config": {"seconds": seconds}, "output": "waited"}
        ],
    }
    with open_backend(settings) as backend:
        backend.save_pipeline(PipelineConfig(name="slow", config=json.dumps(spec)))


async def test_cancel_through_the_screen_stops_a_real_run_in_another_thread(tmp_path):
    """A real runner runs a 30 s step on its own connection (as another process would); `c`
    then `y` on its screen sets cancel_requested in the database, and the run ends cancelled."""
    settings = _settings(tmp_path)
    _slow_pipeline(settings)
    finished: list = []

    def run() -> None:
        with open_backend(settings) as other:
            finished.append(run_pipeline_now(other, settings, "slow").record)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        with open_backend(settings) as backend:
            app = MimirApp(settings)
            async with app.run_test(size=(120, 40)) as pilot:
                assert await _until(pilot, lambda: bool(backend.executions.page(status="running")))
                run_id = backend.executions.page(status="running")[0].id
                screen = ExecutionScreen(run_id)
                await app.push_screen(screen)
                summary = screen.query_one("#execution-summary")
                assert await _until(pilot, lambda: str(summary.render()).startswith("running | slow"))
                await pilot.press("c")
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("n")  # declined: nothing asked
                await pilot.pause(0.3)
                assert backend.get_execution(run_id).cancel_requested is False
                await pilot.press("c")
                await pilot.press("y")
                assert await _until(pilot, lambda: backend.get_execution(run_id).cancel_requested)
                runner.join(20)
                assert not runner.is_alive()
                assert finished[0].id == run_id and finished[0].status == "cancelled"
                assert backend.get_execution(run_id).status == "cancelled"
                screen.action_poll()
                assert await _until(pilot, lambda: str(summary.render()).startswith("cancelled | slow"))
    finally:
        runner.join(30)


async def test_cancel_from_the_executions_pane_asks_first(tmp_path):
    """`c` on a queued run's row in the pane: a confirmation, then the run is cancelled in the
    database (a run still queued is cancelled at once) and the row says so."""
    settings = _settings(tmp_path)
    with open_backend(settings) as backend:
        backend.save_execution(JobExecutionRecord(id="waiting", pipeline="p", start_time=utcnow(), status="queued"))
        app = MimirApp(settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3")
            await _settle(app, pilot)
            assert _row(app, "executions", "waiting")[0] == "queued"
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            assert await _until(pilot, lambda: backend.get_execution("waiting").cancel_requested)
            assert app.screen.id == "dashboard"


async def test_rerun_from_the_screen_queues_a_new_run_of_the_job_and_opens_it(tmp_path):
    settings = _seeded(tmp_path)
    _slow_pipeline(settings, seconds=0)
    with open_backend(settings) as backend:
        job = backend.get_job("demo-hello")
        job.pipeline = "slow"
        backend.update_job(job, fields=["pipeline"])
        before = {r.id for r in backend.list_executions(limit=1000)}
        old = next(r for r in backend.list_executions(job_id="demo-hello", limit=10))
        app = MimirApp(settings)
        async with app.run_test(size=(120, 40)) as pilot:
            await app.push_screen(ExecutionScreen(old.id))
            await _settle(app, pilot)
            await pilot.press("R")
            opened = lambda: isinstance(app.screen, ExecutionScreen) and app.screen.execution_id != old.id  # noqa: E731
            assert await _until(pilot, opened)
            new_id = app.screen.execution_id
            assert new_id not in before
            assert await _until(
                pilot, lambda: backend.executions.page(status="success", job_id="demo-hello")[0].id == new_id
            )
            record = backend.get_execution(new_id)
            assert record.job_id == "demo-hello" and record.triggered_by == "manual"
            assert await _until(
                pilot, lambda: str(app.screen.query_one("#execution-summary").render()).startswith("success")
            )


async def test_filter_by_status_and_by_job_shows_only_those_rows(tmp_path):
    settings = _seeded(tmp_path)
    with open_backend(settings) as backend:
        failed = [r.id for r in backend.executions.page(status="failed", limit=1000)]
        of_job = {r.id for r in backend.executions.page("demo-hello", 1000)}
    assert failed and of_job
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await _settle(app, pilot)
        pane = app.query_one("#executions")
        while pane.status != "failed":
            await pilot.press("f")
        await _settle(app, pilot)
        assert _keys(app, "executions") == failed
        assert {_row(app, "executions", k)[0] for k in failed} == {"failed"}
        assert "(only status failed)" in str(app.query_one("#executions-summary").render())
        while pane.status is not None:
            await pilot.press("f")
        await _settle(app, pilot)
        table = app.query_one("#executions-table")
        keys = _keys(app, "executions")
        table.move_cursor(row=keys.index(next(iter(of_job))))
        await pilot.press("j")
        await _settle(app, pilot)
        assert set(_keys(app, "executions")) == of_job
        await pilot.press("j")
        await _settle(app, pilot)
        assert _keys(app, "executions") == keys
        shown = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        assert {"enter", "f", "j", "c"} <= shown  # the footer shows the pane's keys
