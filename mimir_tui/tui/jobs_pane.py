"""The Jobs pane's actions: new, edit, toggle enabled, run now, delete, filter by text.

Each action calls the function the command line calls (:mod:`mimir_tui.scheduler.jobs`) in a
thread worker; its outcome comes back as a notification and the pane reads again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from rich.style import Style
from rich.text import Span, Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.widgets import DataTable, Input
from textual.worker import Worker, WorkerState

from ..errors import MimirError
from ..ops.overview import JOB_COLUMNS, MARK_STATUS, PaneData, marks_legend
from ..scheduler import jobs as core
from .panes import Pane, Plan
from .widgets.confirm import ConfirmScreen

log = logging.getLogger("mimir.tui")

#: What an action's worker returns: a line to tell the operator, or what to do next on the
#: event loop (open a form, ask a question).
Outcome = str | Callable[[], object]

#: The column of the recent results' marks (:data:`~mimir_tui.ops.overview.MARKS`).
RECENT = JOB_COLUMNS.index("Recent")
#: The theme colour of a mark by its run's status; the others (queued, missed) are dimmed.
MARK_COLOURS = {
    "success": "success",
    "failed": "error",
    "timed_out": "error",
    "cancelled": "warning",
    "interrupted": "warning",
    "running": "primary",
}


def mark_styles(theme_variables: dict[str, str]) -> dict[str, Style]:
    """The style of each mark in the current theme."""
    styles = {}
    for mark, status in MARK_STATUS.items():
        colour = theme_variables.get(MARK_COLOURS.get(status, ""))
        styles[mark] = Style(color=Color.parse(colour).rich_color) if colour else Style(dim=True)
    return styles


def paint_marks(text: Text, styles: dict[str, Style]) -> Text:
    """Colour each mark of ``text`` (in place) as its status is coloured."""
    text.spans = [Span(i, i + 1, styles[ch]) for i, ch in enumerate(text.plain) if ch in styles]
    return text


class JobsPane(Pane):
    BINDINGS = [
        Binding("n", "new", "New", id="job-new"),
        Binding("e", "edit", "Edit", id="job-edit"),
        Binding("t,space", "toggle_enabled", "On/off", id="job-toggle"),
        Binding("x", "run_now", "Run now", id="job-run"),
        Binding("d", "delete", "Delete", id="job-delete"),
        Binding("slash", "filter", "Filter", id="job-filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="job-filter-clear"),
        Binding("right_square_bracket", "turn(1)", "Next page", id="job-page-next"),
        Binding("left_square_bracket", "turn(-1)", "Previous page", id="job-page-previous"),
    ]

    LEGEND = f"Recent: the latest runs, oldest first: {marks_legend()}."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filter_text = ""
        #: The page shown (from 0), as the last read clamped it.
        self.page = 0

    def compose(self) -> ComposeResult:
        yield from super().compose()
        filter_input = Input(placeholder="filter jobs (Enter keeps, Escape clears)", id="jobs-filter")
        filter_input.display = False
        yield filter_input

    # -- reading a page, filtered by the database ----------------------------------------

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, self._repaint_marks)

    def _repaint_marks(self, _theme: object) -> None:
        """Another theme: the marks shown take its colours (a page of cells, on the loop)."""
        table = self.table
        column = list(table.columns)[RECENT]
        styles = mark_styles(self.app.theme_variables)
        for row in list(table.rows):
            table.update_cell(row, column, paint_marks(Text(str(table.get_cell(row, column)), end=""), styles))

    def read_data(self) -> PaneData:
        backend = self.app.backend()  # type: ignore[attr-defined]
        read: Any = self.read  # overview.read_jobs, which takes the page and the filter
        return read(backend, self.app.now(backend), page=self.page, text=self.filter_text)  # type: ignore[attr-defined]

    async def fill(self, data: PaneData, plan: Plan) -> None:
        """The page; the recent results' marks coloured by the theme of the moment (on the loop:
        a theme chosen while the page was read applies)."""
        self.page = data.page
        styles = mark_styles(self.app.theme_variables)
        for _, cells in plan.added:
            paint_marks(cells[RECENT], styles)
        for _, column, text in plan.updated:
            if column == RECENT:
                paint_marks(text, styles)
        await super().fill(data, plan)

    def action_turn(self, step: int) -> None:
        """The next (``]``) or previous (``[``) page of jobs."""
        self.page = max(0, self.page + step)
        self.reread()

    def _filter(self, text: str) -> None:
        self.filter_text = text
        self.page = 0
        self.reread()

    def action_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "jobs-filter":
            event.stop()
            self._filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "jobs-filter":
            event.stop()
            self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.value = ""  # Input.Changed clears the filter
        box.display = False
        self._filter("")
        self.table.focus()

    # -- actions -------------------------------------------------------------------------

    def act(self, work: Callable[[Any], Outcome]) -> None:
        """Run ``work(backend)`` in a thread worker; see :meth:`on_worker_state_changed`."""
        self.run_worker(partial(self._act, work), thread=True, exit_on_error=False, group=f"act-{self.id}")

    def _act(self, work: Callable[[Any], Outcome]) -> Outcome:
        return work(self.app.backend())  # type: ignore[attr-defined]

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An action's outcome (Textual calls the handler of each class in turn: the reads'
        outcomes go to :class:`~mimir_tui.tui.panes.Polling`'s)."""
        if event.worker.group != f"act-{self.id}":
            return
        if not event.worker.is_finished:
            return
        event.stop()
        if event.state == WorkerState.SUCCESS:
            outcome = event.worker.result
            if callable(outcome):
                outcome()
                return
            self.notify(str(outcome), timeout=5)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            if not isinstance(error, MimirError):
                log.error("a jobs pane action failed", exc_info=error)
            self.notify(str(error), severity="error", timeout=8)
        self.reread()

    def done(self, message: str | None) -> None:
        """A form or a question closed: tell what it did and read again."""
        if message:
            self.notify(message, timeout=5)
            self.reread()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_edit()

    def action_new(self) -> None:
        self.act(partial(self._open_editor, None))

    def action_edit(self) -> None:
        if (key := self.selected) is not None:
            self.act(partial(self._open_editor, key))

    def _open_editor(self, job_id: str | None, backend: Any) -> Outcome:
        from .screens.job_editor import EditorChoices, JobEditor

        choices = EditorChoices.read(backend)
        job = backend.get_job(job_id) if job_id is not None else None
        return lambda: self.app.push_screen(JobEditor(choices, job), self.done)

    def action_toggle_enabled(self) -> None:
        if (key := self.selected) is not None:
            self.act(partial(_toggle, key))

    def action_run_now(self) -> None:
        if (key := self.selected) is not None:
            self.act(partial(_run_now, key))

    def action_delete(self) -> None:
        if (key := self.selected) is not None:
            self.act(partial(self._ask_delete, key))

    def _ask_delete(self, job_id: str, backend: Any) -> Outcome:
        question = core.delete_question(backend, job_id)

        def answered(yes: bool | None) -> None:
            if yes:
                settings = self.app.settings  # type: ignore[attr-defined]
                self.act(lambda backend: core.delete_job(backend, settings, job_id).summary())

        return lambda: self.app.push_screen(ConfirmScreen(question), answered)


def _toggle(job_id: str, backend: Any) -> str:
    """Enable or disable the job, as stored now (not as the row last showed it)."""
    if backend.get_job(job_id).enabled:
        core.disable_job(backend, job_id)
        return f"job {job_id} disabled"
    core.enable_job(backend, job_id)
    return f"job {job_id} enabled"


def _run_now(job_id: str, backend: Any) -> str:
    request = core.run_job_now(backend, job_id)
    return f"queued run of job {job_id}: execution {request.execution_id}"
