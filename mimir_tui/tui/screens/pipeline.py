"""The Pipeline screen: one pipeline's steps, its YAML highlighted, and what it can do: run now
(queued, its execution screen opened and the run followed) and validate (errors with file:line,
then warnings). Escape goes back.

Everything is read and done in thread workers through :mod:`mimir_tui.ops.pipeline`."""

from __future__ import annotations

from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ...errors import MimirError
from ...ops.pipeline import STEP_COLUMNS, PipelineDetail, queue_run, read_pipeline, validate_pipeline
from ..panes import Polling, apply_rows
from ..widgets.table import Table
from .execution import queue_and_open


class PipelineScreen(Polling, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("x", "run_now", "Run now", id="pipeline-run"),
        Binding("v", "validate", "Validate", id="pipeline-validate"),
        Binding("ctrl+r", "poll", "Reload", id="reload-pipeline"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.pipeline = name
        self.detail: PipelineDetail | None = None
        #: The last validation: ``(errors, warnings)``.
        self.checked: tuple[list[str], list[str]] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading...", id="pipeline-summary", classes="summary")
        yield Static("", id="pipeline-check")
        steps = Table(id="pipeline-steps")
        steps.add_columns(*STEP_COLUMNS)
        yield steps
        with VerticalScroll(id="pipeline-yaml"):
            yield Static("", id="pipeline-source")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"pipeline {self.pipeline}"
        self.query_one("#pipeline-check").display = False
        self.action_poll()

    @property
    def poll_group(self) -> str:
        return f"poll-pipeline-{self.pipeline}"

    def fetch(self) -> PipelineDetail:
        app: Any = self.app
        return read_pipeline(app.backend(), app.settings, self.pipeline)

    def show(self, detail: PipelineDetail) -> None:
        self.detail = detail
        apply_rows(self.query_one("#pipeline-steps", DataTable), detail.steps)
        summary = f"{detail.name}: {len(detail.steps)} steps, from {detail.source or 'the database'}"
        if detail.load_error:
            summary += f"; its file was rejected: {detail.load_error.strip().splitlines()[0]}"
        self.query_one("#pipeline-summary", Static).update(Text(summary))
        self.query_one("#pipeline-yaml").border_title = detail.source or "stored definition"
        theme = "ansi_dark" if self.app.current_theme.dark else "ansi_light"
        self.query_one("#pipeline-source", Static).update(
            Syntax(detail.yaml, "yaml", theme=theme, line_numbers=True, word_wrap=False)
        )

    def show_error(self, error: BaseException | None) -> None:
        self.query_one("#pipeline-summary", Static).update(Text(f"not read: {error}"))

    # -- actions ------------------------------------------------------------------------------

    def action_run_now(self) -> None:
        """Queue a run of this pipeline and open it (run here when no instance takes it)."""
        name = self.pipeline
        queue_and_open(self.app, lambda backend: queue_run(backend, name))

    def action_validate(self) -> None:
        app: Any = self.app
        name = self.pipeline
        self.run_worker(
            lambda: validate_pipeline(app.backend(), app.settings, name),
            thread=True,
            exit_on_error=False,
            group="validate",
        )

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A validation's outcome (Textual calls the handler of each class in turn: the reads'
        outcomes go to :class:`~mimir_tui.tui.panes.Polling`'s)."""
        if event.worker.group != "validate":
            return
        if not event.worker.is_finished:
            return
        event.stop()
        check = self.query_one("#pipeline-check", Static)
        check.display = True
        if event.state == WorkerState.SUCCESS:
            result: tuple[list[str], list[str]] = event.worker.result  # type: ignore[assignment]
            self.checked = errors, warnings = result
            lines = [*errors, *(f"warning: {w}" for w in warnings)] or ["valid: no errors, no warnings"]
            check.set_class(bool(errors), "-error")
            check.update(Text("\n".join(lines)))
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            check.set_class(True, "-error")
            check.update(Text(str(error) if isinstance(error, MimirError) else f"validation failed: {error!r}"))
