"""The four live panes of the main screen.

A pane is a title, a one-line summary and a DataTable whose rows are keyed by id. It reads its
content with a function of :mod:`mimir_tui.ops.overview` in a thread worker, on an interval; a
tick that comes while the previous read still runs is skipped, so reads never overlap (as
Dolphie's panels poll). The result is applied to the table by key: changed cells are updated in
place, new rows added, gone rows removed; the cursor stays on its row and the scroll where it
was.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Sparkline, Static
from textual.worker import Worker, WorkerState

from ..constants import STATUSES
from ..errors import MimirError
from ..ops import overview
from ..ops.overview import PaneData, Row

log = logging.getLogger("mimir.tui")

#: ``read(backend, now)``: a pane's content, called in a worker thread.
Reader = Callable[[Any, datetime], PaneData]


def apply_rows(table: DataTable, rows: Sequence[Row]) -> None:
    """Bring ``table`` to ``rows`` by key, keeping the cursor on its row and the scroll offset.

    Cells that changed are updated in place and rows that are gone removed; new rows are
    appended when they come after every kept row, and the table is rebuilt only when the order
    changed (a new run on top of the executions)."""
    # Stored text is shown as it is: a job named "[/b]" is not markup (which would also fail).
    wanted = {key: tuple(Text(cell, end="") for cell in cells) for key, cells in rows}
    current = [str(key.value) for key in table.rows]
    kept = [key for key in current if key in wanted]
    order = [key for key, _ in rows]
    cursor_key = current[table.cursor_row] if 0 <= table.cursor_row < len(current) else None
    scroll = table.scroll_offset
    if order[: len(kept)] == kept:  # same order, new rows (if any) at the end
        for key in set(current) - wanted.keys():
            table.remove_row(key)
        columns = list(table.columns)
        for key in kept:
            for column, old, new in zip(columns, table.get_row(key), wanted[key], strict=True):
                if old != new:
                    table.update_cell(key, column, new)
        for key in order[len(kept) :]:
            table.add_row(*wanted[key], key=key)
    else:
        table.clear()
        for key in order:
            table.add_row(*wanted[key], key=key)
        table.scroll_to(scroll.x, scroll.y, animate=False)
    if cursor_key in wanted:
        table.move_cursor(row=table.get_row_index(cursor_key), animate=False, scroll=False)


class Polling:
    """Reads in a thread worker on an interval, never two at once (a mixin for a widget or a
    screen): :meth:`fetch` runs in the worker, :meth:`show` or :meth:`show_error` gets its
    result on the event loop."""

    #: A read is running in a worker (set and cleared on the event loop).
    polling = False
    #: Reads started, and ticks skipped because the previous read still ran.
    polls = 0
    skipped = 0

    def start_polling(self: Any, interval: float) -> None:
        self.set_interval(interval, self.action_poll)
        self.action_poll()

    def action_poll(self: Any) -> None:
        """Start a read unless one is running (then this tick is skipped) or this is hidden
        (one pane at a time on a small terminal: the others read when shown)."""
        if not self.display:
            return
        if self.polling:
            self.skipped += 1
            return
        self.polling = True
        self.polls += 1
        self.run_worker(self.fetch, thread=True, exit_on_error=False, group=self.poll_group)

    @property
    def poll_group(self: Any) -> str:
        return f"poll-{self.id}"

    def fetch(self) -> Any:
        raise NotImplementedError

    def show(self, data: Any) -> None:
        raise NotImplementedError

    def show_error(self, error: BaseException | None) -> None:
        raise NotImplementedError

    def on_worker_state_changed(self: Any, event: Worker.StateChanged) -> None:
        if event.worker.group != self.poll_group or not event.worker.is_finished:
            return
        event.stop()
        self.polling = False
        if event.state == WorkerState.SUCCESS and event.worker.result is not None:
            self.show(event.worker.result)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            if not isinstance(error, MimirError):
                log.error("reading %s failed", self.id, exc_info=error)
            self.show_error(error)


class Pane(Polling, Vertical):
    """A live table over one read of :mod:`mimir_tui.ops.overview`."""

    #: The table's class (a pane whose rows open shows Enter in the footer with its own).
    TABLE: type[DataTable] = DataTable

    BINDINGS = [
        Binding("z", "screen.zoom", "Zoom", id="zoom"),
        Binding("ctrl+r", "poll", "Reload pane", id="reload-pane"),
    ]

    def __init__(self, read: Reader, *, title: str, columns: Sequence[str], interval: float, id: str) -> None:
        super().__init__(id=id)
        self.read = read
        self.title = title
        self.columns = tuple(columns)
        self.interval = interval
        self.border_title = title
        #: What the pane reads (a filter) or the store changed while a read ran: its rows are
        #: dropped and the pane reads again.
        self.refetch = False

    def compose(self) -> ComposeResult:
        yield Static("loading...", id=f"{self.id}-summary", classes="summary")
        table = self.TABLE(id=f"{self.id}-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*self.columns)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.start_polling(self.interval)

    def fetch(self) -> PaneData:
        backend = self.app.backend()  # type: ignore[attr-defined]
        return self.read(backend, backend.database_now())

    @property
    def selected(self) -> str | None:
        """The key of the row under the cursor."""
        table = self.table
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)

    def reread(self) -> None:
        """Read now; if a read runs, after it (reads never overlap; its rows predate the change)."""
        if self.polling:
            self.refetch = True
        else:
            self.action_poll()

    def show(self, data: PaneData) -> None:
        if self.refetch:
            self.refetch = False
            self.action_poll()
        else:
            self.fill(data)

    def fill(self, data: PaneData) -> None:
        apply_rows(self.table, data.rows)
        self.query_one(".summary", Static).update(data.summary)

    def show_error(self, error: BaseException | None) -> None:
        """The rows stay as last read; the summary says why they are not fresh."""
        self.query_one(".summary", Static).update(f"not refreshed: {error}")


class HealthPane(Pane):
    """The store's health rows, and the round-trip latency of the last :attr:`LATENCIES` reads
    as a sparkline over them."""

    LATENCIES = 60

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies: deque[float] = deque(maxlen=self.LATENCIES)

    def compose(self) -> ComposeResult:
        summary, table = super().compose()
        yield summary
        yield Sparkline([], id="health-latency", summary_function=max)
        yield table

    def fill(self, data: PaneData) -> None:
        """As read, with this dashboard's own scheduler marked among the instances; the
        latency joins the sparkline."""
        here = f"instance:{self.app.instance}"  # type: ignore[attr-defined]
        rows = [(k, (f"{cells[0]} (this dashboard)", *cells[1:]) if k == here else cells) for k, cells in data.rows]
        super().fill(PaneData(rows, data.summary, data.values))
        if "latency_ms" in data.values:
            self.latencies.append(data.values["latency_ms"])
            self.query_one(Sparkline).data = list(self.latencies)

    def show_error(self, error: BaseException | None) -> None:
        """A store that cannot be opened is unhealthy: that is the health pane's content."""
        backend = self.app.settings.persistence.backend  # type: ignore[attr-defined]
        self.show(overview.health_data({"status": "unhealthy", "backend": backend, "error": str(error)}))


class PipelinesTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open", id="open-pipeline")]


class PipelinesPane(Pane):
    """Enter opens a pipeline: its steps, its YAML, run now and validate."""

    TABLE = PipelinesTable

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        from .screens.pipeline import PipelineScreen

        if (key := self.selected) is not None:
            self.app.push_screen(PipelineScreen(key))


class RunsTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open", id="open-execution")]


class ExecutionsPane(Pane):
    """Runs in flight above the finished ones; filtered by status (``f`` cycles) and by the
    selected run's job (``j``); Enter opens a run, ``c`` cancels it (after a confirmation)."""

    TABLE = RunsTable
    BINDINGS = [
        Binding("f", "cycle_status", "Status filter", id="filter-status"),
        Binding("j", "filter_job", "Job filter", id="filter-job"),
        Binding("c", "cancel", "Cancel run", id="cancel-execution"),
    ]

    #: What ``f`` steps through: every run, then one status at a time.
    STATUS_FILTERS: tuple[str | None, ...] = (None, *STATUSES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status: str | None = None
        self.job: str | None = None

    def fetch(self) -> PaneData:
        backend = self.app.backend()  # type: ignore[attr-defined]
        read: Any = self.read  # overview.read_executions, which takes the filters
        return read(backend, backend.database_now(), status=self.status, job=self.job)

    def action_cycle_status(self) -> None:
        filters = self.STATUS_FILTERS
        self.status = filters[(filters.index(self.status) + 1) % len(filters)]
        self.reread()

    def action_filter_job(self) -> None:
        """Only the selected run's job; pressed again, every job."""
        if self.job is not None:
            self.job = None
        elif (key := self.selected) is not None:
            cells = self.table.get_row(key)
            self.job = None if str(cells[2]) == "-" else str(cells[2])
        self.reread()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        from .screens.execution import ExecutionScreen

        if (key := self.selected) is not None:
            self.app.push_screen(ExecutionScreen(key))

    def action_cancel(self) -> None:
        from .screens.execution import confirm_cancel

        if (key := self.selected) is not None:
            confirm_cancel(self, key, after=self.action_poll)
