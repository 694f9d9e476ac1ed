"""The Jobs pane's recent results: a mark per run of the job's latest runs, coloured by the
theme, read from a real SQLite store and checked against it."""

from __future__ import annotations

from datetime import timedelta

from rich.color import Color as RichColor
from test_panes import _row, _seeded, _settle
from textual.widgets import Markdown

from mimir_tui.ops.overview import JOB_COLUMNS, MARKS, RECENT
from mimir_tui.persistence import JobExecutionRecord, open_backend
from mimir_tui.persistence.types import utcnow
from mimir_tui.tui.app import MimirApp

COLUMN = JOB_COLUMNS.index("Recent")
HISTORY = ["success", "success", "failed", "success", "cancelled", "interrupted", "timed_out", "success", "failed"]


def _runs(backend, job_id: str, statuses: list[str], *, before: float = 30.0) -> None:
    """Runs of the job, oldest first, the last ``before`` minutes ago and one a minute apart."""
    now = utcnow()
    for i, status in enumerate(statuses):
        start = now - timedelta(minutes=before + len(statuses) - i)
        finished = status != "running"
        backend.save_execution(
            JobExecutionRecord(
                id=f"{job_id}-m{before:g}-{i}",
                job_id=job_id,
                pipeline="hello-report",
                start_time=start,
                end_time=start + timedelta(seconds=2) if finished else None,
                duration=2000 if finished else None,
                status=status,
            )
        )


def _cell(app, job_id: str):
    table = app.query_one("#jobs-table")
    return table.get_cell(job_id, list(table.columns)[COLUMN])


def _colour_of(app, text, mark: str) -> RichColor | None:
    index = text.plain.rindex(mark)
    spans = [s for s in text.spans if s.start <= index < s.end]
    assert len(spans) == 1, f"{mark!r} has no style of its own: {text.spans}"
    return spans[0].style.color


def _theme(app, name: str) -> RichColor:
    return RichColor.parse(app.theme_variables[name])


async def test_recent_results_are_the_latest_runs_of_each_job_coloured_by_the_theme(tmp_path):
    """The column holds one mark per run of the job's latest runs (as many as RECENT), oldest
    on the left, as the database has them; each mark has the theme's colour of its status and
    takes the new theme's when the theme changes; a run that starts later joins on the right."""
    settings = _seeded(tmp_path)
    with open_backend(settings) as backend:
        _runs(backend, "demo-hello", HISTORY, before=0.5)
        latest = backend.list_executions("demo-hello", limit=RECENT)
        stored = "".join(MARKS[r.status] for r in reversed(latest))
    assert len(stored) == RECENT and stored.endswith("\u25c6\u25cf\u2717")  # timed out, success, failed
    app = MimirApp(settings)
    async with app.run_test(size=(160, 40)) as pilot:
        await _settle(app, pilot)
        assert app.theme == "mimir"
        text = _cell(app, "demo-hello")
        assert _row(app, "jobs", "demo-hello")[COLUMN] == stored
        assert _colour_of(app, text, MARKS["failed"]) == _theme(app, "error")
        assert _colour_of(app, text, MARKS["success"]) == _theme(app, "success")
        assert _colour_of(app, text, MARKS["interrupted"]) == _theme(app, "warning")
        assert _row(app, "jobs", "demo-api-export")[COLUMN] == "-"  # disabled, never ran
        await pilot.press("question_mark")
        await pilot.pause()
        assert "\u25cf success, \u2717 failed" in app.screen.query_one("#help-text", Markdown).source
        await pilot.press("escape")

        app.theme = "mimir-light"
        await pilot.pause()
        await pilot.pause()
        light = _cell(app, "demo-hello")
        assert light.plain == stored
        assert _colour_of(app, light, MARKS["failed"]) == _theme(app, "error") != _theme(app, "success")
        assert _theme(app, "error") != RichColor.parse("#e76f51")  # the dark theme's error

        with open_backend(settings) as other:
            _runs(other, "demo-hello", ["running"], before=0)
        await pilot.press("r")
        await _settle(app, pilot)
        shown = _cell(app, "demo-hello")
        assert shown.plain == stored[1:] + MARKS["running"]
        assert _colour_of(app, shown, MARKS["running"]) == _theme(app, "primary")


def test_each_status_has_a_mark_of_its_own_one_cell_wide():
    """Without colour (NO_COLOR) the shapes alone tell the statuses apart."""
    from rich.cells import cell_len

    from mimir_tui.constants import STATUSES

    assert set(MARKS) == set(STATUSES)
    assert len(set(MARKS.values())) == len(MARKS)
    assert all(cell_len(m) == 1 for m in MARKS.values())
