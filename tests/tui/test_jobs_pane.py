"""The Jobs pane's actions and the job editor, over a real SQLite store: each test presses keys
and then asserts on the database and on the screen."""

from __future__ import annotations

from test_panes import _keys, _row, _seeded, _settle
from textual.widgets import Checkbox, Input, Select, Static

from mimir_tui.persistence import JobExecutionRecord, open_backend
from mimir_tui.persistence.types import utcnow
from mimir_tui.scheduler.jobs import update_job
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.job_editor import JobEditor
from mimir_tui.tui.widgets.confirm import ConfirmScreen


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def _open(app, pilot, *keys: str) -> None:
    """Press ``keys`` and wait for what they open (a worker reads first)."""
    await pilot.press(*keys)
    await _settle(app, pilot)


async def _cursor_on(app, pilot, job_id: str) -> None:
    table = app.query_one("#jobs-table")
    table.move_cursor(row=table.get_row_index(job_id))
    await pilot.pause()


async def test_a_job_created_in_the_form_shows_in_the_table_and_the_database(tmp_path):
    """n opens the editor (at 80x24, the SSH size); the cron typed is read back in words with
    five fires in the zone; ctrl+s writes the job once and the pane shows it."""
    settings = _seeded(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        keys = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show}
        assert {"n", "e", "t", "x", "d", "slash"} <= keys  # the footer shows the pane's keys
        await _open(app, pilot, "n")
        assert isinstance(app.screen, JobEditor)
        app.screen.query_one("#job-id", Input).value = "made-in-form"
        app.screen.query_one("#job-name", Input).value = "Made in the form"
        app.screen.query_one("#job-pipeline", Select).value = "hello-report"
        app.screen.query_one("#job-timezone", Input).value = "Europe/Berlin"
        app.screen.query_one("#job-cron", Input).focus()
        await pilot.press(*"15 3 * * 1-5")
        help_text = _text(app, "#job-cron-help")
        assert help_text.startswith("At 03:15") and help_text.count("CE") == 5  # CET/CEST: in the zone
        app.screen.query_one("#job-retries", Input).value = "2"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert not isinstance(app.screen, JobEditor)
        assert [_row(app, "jobs", "made-in-form")[i] for i in (0, 2, 3, 4, 5)] == [
            "Made in the form",
            "hello-report",
            "At 03:15 on Monday through Friday",
            "15 3 * * 1-5",
            "Europe/Berlin",
        ]
    with open_backend(settings) as backend:
        job = backend.get_job("made-in-form")
        assert (job.cron_expr, job.timezone, job.max_retries, job.enabled) == ("15 3 * * 1-5", "Europe/Berlin", 2, True)
        assert job.next_run is not None


async def test_an_invalid_cron_in_the_form_is_named_there_and_nothing_is_written(tmp_path):
    settings = _seeded(tmp_path)
    with open_backend(settings) as backend:
        before = [j.id for j in backend.list_jobs()]
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await _open(app, pilot, "n")
        app.screen.query_one("#job-name", Input).value = "bad"
        app.screen.query_one("#job-pipeline", Select).value = "hello-report"
        app.screen.query_one("#job-cron", Input).focus()
        await pilot.press(*"61 * * * *")
        cron = app.screen.query_one("#job-cron", Input)
        assert "minute" in _text(app, "#job-cron-help") and cron.has_class("-invalid")
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert isinstance(app.screen, JobEditor)  # still open, saying why
        assert "minute" in _text(app, "#job-error") and cron.has_class("-invalid")
        app.screen.query_one("#job-retries", Input).value = "two"
        app.screen.query_one("#job-cron", Input).value = "0 4 * * *"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert "retries 'two' is not a whole number" in _text(app, "#job-error")
        assert app.screen.query_one("#job-retries").has_class("-invalid")
        await pilot.press("escape")
        assert _keys(app, "jobs") == before
    with open_backend(settings) as backend:
        assert [j.id for j in backend.list_jobs()] == before


async def test_toggle_and_run_now_change_the_database(tmp_path):
    """t disables the job under the cursor (as stored, then again enables it); x queues a run
    that any instance can claim."""
    settings = _seeded(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await _cursor_on(app, pilot, "demo-hello")
        assert _row(app, "jobs", "demo-hello")[6] == "yes"
        await _open(app, pilot, "t")
        await _settle(app, pilot)
        assert _row(app, "jobs", "demo-hello")[6] == "no"
        with open_backend(settings) as backend:
            assert backend.get_job("demo-hello").enabled is False
        await _open(app, pilot, "space")
        await _settle(app, pilot)
        with open_backend(settings) as backend:
            assert backend.get_job("demo-hello").enabled is True
        await _open(app, pilot, "x")
        with open_backend(settings) as backend:
            queued = [r for r in backend.runs.list_queue() if r.job_id == "demo-hello"]
        assert len(queued) == 1 and queued[0].triggered_by == "manual"
        assert any(queued[0].execution_id in str(n.message) for n in app._notifications)


async def test_delete_asks_with_the_count_of_executions_and_deletes_them_with_the_job(tmp_path):
    settings = _seeded(tmp_path)
    with open_backend(settings) as backend:
        job = backend.list_jobs()[0]
        for n in range(3):
            record = JobExecutionRecord(
                id=f"run-{n}", job_id=job.id, pipeline=job.pipeline, start_time=utcnow(), status="success"
            )
            backend.save_execution(record)
        runs = [r.id for r in backend.list_executions(limit=10_000) if r.job_id == job.id]
    assert len(runs) >= 3
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await _cursor_on(app, pilot, job.id)
        await _open(app, pilot, "d")
        assert isinstance(app.screen, ConfirmScreen)
        question = str(app.screen.query_one("#confirm-question").render())
        assert f"with its {len(runs)} executions and 0 queued runs" in question
        await pilot.press("n")  # declined: nothing deleted
        await _settle(app, pilot)
        assert job.id in _keys(app, "jobs")
        await _open(app, pilot, "d")
        await _open(app, pilot, "y")
        await _settle(app, pilot)
        assert job.id not in _keys(app, "jobs")
        assert any(f"deleted job {job.id} with {len(runs)} executions" in str(n.message) for n in app._notifications)
    with open_backend(settings) as backend:
        assert job.id not in [j.id for j in backend.list_jobs()]
        assert not [r for r in backend.list_executions(limit=10_000) if r.job_id == job.id]


async def test_filter_narrows_the_rows_and_escape_brings_them_back(tmp_path):
    settings = _seeded(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        every = _keys(app, "jobs")
        await pilot.press("slash", *"NIGHTLY")
        await _settle(app, pilot)
        shown = _keys(app, "jobs")
        assert shown and len(shown) < len(every)
        assert all("nightly" in " ".join([key, *_row(app, "jobs", key)]).lower() for key in shown)
        assert "match 'NIGHTLY'" in _text(app, "#jobs-summary")
        await pilot.press("enter")  # the filter stays, the keys go back to the table
        assert app.focused is app.query_one("#jobs-table")
        await pilot.press("r")
        await _settle(app, pilot)
        assert _keys(app, "jobs") == shown  # a refresh keeps the filter
        await pilot.press("escape")
        await _settle(app, pilot)
        assert _keys(app, "jobs") == every


async def test_an_edit_made_meanwhile_by_another_instance_is_detected_not_overwritten(tmp_path):
    """The form loaded the job; another instance renames it; saving the form says so, writes
    nothing, and Reload shows the stored job, which can then be saved."""
    settings = _seeded(tmp_path)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await _cursor_on(app, pilot, "demo-hello")
        await _open(app, pilot, "e")
        editor = app.screen
        assert isinstance(editor, JobEditor) and editor.query_one("#job-id", Input).disabled
        with open_backend(settings) as other:
            update_job(other, "demo-hello", name="Renamed elsewhere")
        editor.query_one("#job-name", Input).value = "Renamed here"
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert app.screen is editor and "changed by another instance" in _text(app, "#job-error")
        with open_backend(settings) as backend:
            assert backend.get_job("demo-hello").name == "Renamed elsewhere"
        assert editor.query_one("#editor-reload").display
        await pilot.press("ctrl+l")
        await _settle(app, pilot)
        assert editor.query_one("#job-name", Input).value == "Renamed elsewhere"
        editor.query_one("#job-enabled", Checkbox).value = False
        await pilot.press("ctrl+s")
        await _settle(app, pilot)
        assert app.screen is not editor
        assert _row(app, "jobs", "demo-hello")[0] == "Renamed elsewhere"
        assert _row(app, "jobs", "demo-hello")[6] == "no"
    with open_backend(settings) as backend:
        job = backend.get_job("demo-hello")
        assert (job.name, job.enabled) == ("Renamed elsewhere", False)


async def test_the_table_holds_one_page_and_the_brackets_turn_it(tmp_path):
    """Attack: 25 jobs with a page of 10; the table never holds more than a page, ``]`` and ``[``
    turn it (not past either end), and a filter starts again from its first page."""
    from test_panes import _settings

    from mimir_tui.persistence import ScheduledJob

    settings = _settings(tmp_path, "pipelines:\n  watch: false\nui:\n  page_size: 10\n")
    with open_backend(settings) as backend:
        for i in range(25):
            backend.save_job(ScheduledJob(id=f"j{i:02d}", name=f"job-{i:02d}", pipeline="etl", cron_expr="* * * * *"))
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        assert _keys(app, "jobs") == [f"j{i:02d}" for i in range(10)]
        assert "page 1/3" in _text(app, "#jobs-summary")
        for key, first in (("right_square_bracket", 10), ("right_square_bracket", 20), ("right_square_bracket", 20)):
            await pilot.press(key)
            await _settle(app, pilot)
            assert _keys(app, "jobs")[0] == f"j{first:02d}"
        assert _keys(app, "jobs") == [f"j{i:02d}" for i in range(20, 25)]
        await pilot.press("left_square_bracket")
        await _settle(app, pilot)
        assert _keys(app, "jobs")[0] == "j10"
        await pilot.press("slash", *"job-2")
        await _settle(app, pilot)
        assert _keys(app, "jobs") == [f"j{i:02d}" for i in range(20, 25)]
        assert "5 jobs match 'job-2'" in _text(app, "#jobs-summary")


async def test_the_job_under_the_cursor_shows_its_times_in_its_own_zone(tmp_path):
    """The table says "in 5m"; the summary line (and the tooltip) of the job under the cursor
    gives its next and last run in the job's zone, with the next in UTC beside."""
    from datetime import UTC, datetime

    settings = _seeded(tmp_path)
    with open_backend(settings) as backend:
        job = backend.get_job("demo-hourly-report")
        job.timezone = "Asia/Tokyo"
        job.enabled = True
        backend.update_job(job, fields=["timezone", "enabled"])
        next_run, last_run = datetime(2031, 1, 6, 1, 0, tzinfo=UTC), datetime(2031, 1, 6, 0, 0, tzinfo=UTC)
        backend.jobs.set_schedule(job.id, next_run=next_run, last_run=last_run, last_result="success")
    app = MimirApp(settings)
    async with app.run_test(size=(160, 40)) as pilot:
        await _settle(app, pilot)
        await _cursor_on(app, pilot, "demo-hourly-report")
        detail = "next Mon 2031-01-06 10:00 JST (01:00 UTC), last Mon 2031-01-06 09:00 JST"
        assert _text(app, "#jobs-summary").endswith(f" | {detail}")
        assert app.query_one("#jobs-table").tooltip == detail
