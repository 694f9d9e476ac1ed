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
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

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


class Pane(Vertical):
    """A live table over one read of :mod:`mimir_tui.ops.overview`."""

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
        #: A read is running in a worker (set and cleared on the event loop).
        self.polling = False
        #: Reads started, and ticks skipped because the previous read still ran.
        self.polls = 0
        self.skipped = 0

    def compose(self) -> ComposeResult:
        yield Static("loading...", id=f"{self.id}-summary", classes="summary")
        table: DataTable = DataTable(id=f"{self.id}-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*self.columns)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.set_interval(self.interval, self.action_poll)
        self.action_poll()

    def action_poll(self) -> None:
        """Start a read unless one is running (then this tick is skipped) or the pane is hidden
        (one pane at a time on a small terminal: the others read when shown)."""
        if not self.display:
            return
        if self.polling:
            self.skipped += 1
            return
        self.polling = True
        self.polls += 1
        self.run_worker(self._read, thread=True, exit_on_error=False, group=f"poll-{self.id}")

    def _read(self) -> PaneData:
        backend = self.app.backend()  # type: ignore[attr-defined]
        return self.read(backend, backend.database_now())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != f"poll-{self.id}" or not event.worker.is_finished:
            return
        event.stop()
        self.polling = False
        if event.state == WorkerState.SUCCESS and event.worker.result is not None:
            self.show(event.worker.result)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            if not isinstance(error, MimirError):
                log.error("reading the %s pane failed", self.id, exc_info=error)
            self.show_error(error)

    def show(self, data: PaneData) -> None:
        apply_rows(self.table, data.rows)
        self.query_one(".summary", Static).update(data.summary)

    def show_error(self, error: BaseException | None) -> None:
        """The rows stay as last read; the summary says why they are not fresh."""
        self.query_one(".summary", Static).update(f"not refreshed: {error}")


class HealthPane(Pane):
    def show_error(self, error: BaseException | None) -> None:
        """A store that cannot be opened is unhealthy: that is the health pane's content."""
        backend = self.app.settings.persistence.backend  # type: ignore[attr-defined]
        self.show(overview.health_data({"status": "unhealthy", "backend": backend, "error": str(error)}))
