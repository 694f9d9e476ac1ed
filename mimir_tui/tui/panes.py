"""The four live panes of the main screen.

A pane is a title, a one-line summary and a DataTable whose rows are keyed by id. It reads its
content with a function of :mod:`mimir_tui.ops.overview` in a thread worker, on an interval; a
tick that comes while the previous read still runs is skipped, so reads never overlap (as
Dolphie's panels poll). The worker also works out what changed against the rows the table
holds (:func:`plan_rows`: cells to update, rows to add or remove, by key); the event loop applies
only that, in slices that give it back its turn (:func:`apply_plan`), keeping the cursor on its
row and the scroll where it was. The jobs are read a page at a time, so no table holds more than
a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
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
from .widgets.table import Table

log = logging.getLogger("mimir.tui")

#: ``read(backend, now)``: a pane's content, called in a worker thread.
Reader = Callable[[Any, datetime], PaneData]


#: The turn of one read at a time (:meth:`Polling._fetch_in_turn`).
READ_TURN = threading.Lock()

#: The longest a pane waits for its changes to be painted before the next pane's turn.
PAINT_WAIT_S = 0.5

#: Table changes applied on the event loop between two yields to it (each well under 1 ms).
BATCH = 100


@dataclass(frozen=True)
class Plan:
    """What brings a table from the rows it shows to ``rows`` (computed in the worker):
    ``rebuild`` when the order changed, else the keys ``removed``, the cells ``updated`` (key,
    column index, text) and the rows ``added`` at the end."""

    rows: list[Row]
    rebuild: bool
    removed: list[str] = field(default_factory=list)
    updated: list[tuple[str, int, Text]] = field(default_factory=list)
    added: list[tuple[str, tuple[Text, ...]]] = field(default_factory=list)


def _texts(cells: Sequence[str]) -> tuple[Text, ...]:
    # Stored text is shown as it is: a job named "[/b]" is not markup (which would also fail).
    return tuple(Text(cell, end="") for cell in cells)


def plan_rows(shown: Sequence[Row], rows: Sequence[Row]) -> Plan:
    """The changes from ``shown`` to ``rows``, by key. New rows are appended when they come
    after every kept row; the table is rebuilt only when the order changed (a new run on top of
    the executions)."""
    wanted = dict(rows)
    kept = [key for key, _ in shown if key in wanted]
    order = [key for key, _ in rows]
    if order[: len(kept)] != kept:
        return Plan(list(rows), True, added=[(key, _texts(cells)) for key, cells in rows])
    before = dict(shown)
    updated = [
        (key, i, Text(new, end=""))
        for key in kept
        for i, (old, new) in enumerate(zip(before[key], wanted[key], strict=True))
        if old != new
    ]
    removed = [key for key, _ in shown if key not in wanted]
    return Plan(list(rows), False, removed, updated, [(key, _texts(wanted[key])) for key in order[len(kept) :]])


def apply_plan(table: DataTable, plan: Plan) -> Iterator[None]:
    """Apply ``plan`` to ``table``, yielding after every :data:`BATCH` changes (the caller gives
    the event loop its turn there); the cursor stays on its row and the scroll where it was."""
    keys = [str(key.value) for key in table.rows]
    cursor_key = keys[table.cursor_row] if 0 <= table.cursor_row < len(keys) else None
    scroll = table.scroll_offset
    columns = list(table.columns)
    if plan.rebuild:
        table.clear()
    changes: list[Callable[[], object]] = [partial(table.remove_row, key) for key in plan.removed]
    changes += [partial(table.update_cell, key, columns[i], text) for key, i, text in plan.updated]
    changes += [partial(table.add_row, *cells, key=key) for key, cells in plan.added]
    for start in range(0, len(changes), BATCH):
        if start:
            yield
        for change in changes[start : start + BATCH]:
            change()
    if plan.rebuild:
        table.scroll_to(scroll.x, scroll.y, animate=False)
    if cursor_key is not None and cursor_key in dict(plan.rows):
        table.move_cursor(row=table.get_row_index(cursor_key), animate=False, scroll=False)


def apply_rows(table: DataTable, rows: Sequence[Row]) -> None:
    """Bring ``table`` to ``rows`` at once (a small table: the steps of a run)."""
    shown = [(str(key.value), tuple(str(c) for c in table.get_row(key))) for key in table.rows]
    for _ in apply_plan(table, plan_rows(shown, rows)):
        pass


class Polling:
    """Reads in a thread worker on an interval, never two at once (a mixin for a widget or a
    screen): :meth:`fetch` runs in the worker, :meth:`show` or :meth:`show_error` gets its
    result on the event loop (the next read waits until :meth:`show` returns, which may be a
    coroutine that applies the result in slices)."""

    #: A read is running in a worker or its result is being shown (set and cleared on the loop).
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
        self.run_worker(self._fetch_in_turn, thread=True, exit_on_error=False, group=self.poll_group)

    def _fetch_in_turn(self) -> Any:
        """:meth:`fetch`, one read at a time in the process: each worker running Python takes
        the GIL from the event loop in turn, so four at once left the loop a fifth of it."""
        with READ_TURN:
            return self.fetch()

    @property
    def poll_group(self: Any) -> str:
        return f"poll-{self.id}"

    def fetch(self) -> Any:
        raise NotImplementedError

    def show(self, data: Any) -> Any:
        raise NotImplementedError

    def show_error(self, error: BaseException | None) -> Any:
        raise NotImplementedError

    async def on_worker_state_changed(self: Any, event: Worker.StateChanged) -> None:
        if event.worker.group != self.poll_group or not event.worker.is_finished:
            return
        event.stop()
        try:
            shown = None
            if event.state == WorkerState.SUCCESS and event.worker.result is not None:
                shown = self.show(event.worker.result)
            elif event.state == WorkerState.ERROR:
                error = event.worker.error
                if not isinstance(error, MimirError):
                    log.error("reading %s failed", self.id, exc_info=error)
                shown = self.show_error(error)
            if inspect.isawaitable(shown):
                await shown
        finally:
            self.polling = False
        self.shown_polled()

    def shown_polled(self) -> None:
        """After a read's result was shown (a pane reads again here when asked to meanwhile)."""


class Pane(Polling, Vertical):
    """A live table over one read of :mod:`mimir_tui.ops.overview`."""

    #: The table's class (a pane whose rows open shows Enter in the footer with its own).
    TABLE: type[Table] = Table
    #: What the help says under the columns (the marks' meaning), if anything.
    LEGEND = ""

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
        #: The rows the table holds (as text), which the next read's plan starts from.
        self.shown: list[Row] = []
        #: The last read shown (its summary and its rows' details).
        self.data = PaneData()

    def compose(self) -> ComposeResult:
        yield Static("loading...", id=f"{self.id}-summary", classes="summary")
        table = self.TABLE(id=f"{self.id}-table")
        table.add_columns(*self.columns)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.start_polling(self.interval)

    def fetch(self) -> tuple[PaneData, Plan]:
        """In the worker: the rows, and the changes that bring the table to them."""
        data = self.adjust(self.read_data())
        return data, plan_rows(self.shown, data.rows)

    def read_data(self) -> PaneData:
        backend = self.app.backend()  # type: ignore[attr-defined]
        return self.read(backend, self.app.now(backend))  # type: ignore[attr-defined]

    def adjust(self, data: PaneData) -> PaneData:
        """The rows as shown (in the worker)."""
        return data

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

    async def show(self, result: tuple[PaneData, Plan]) -> None:
        if not self.refetch:
            await self.fill(*result)

    def shown_polled(self) -> None:
        if self.refetch:
            self.refetch = False
            self.action_poll()

    async def fill(self, data: PaneData, plan: Plan) -> None:
        """Apply ``plan`` in slices, giving the event loop its turn between them. One pane at a
        time, and painted once when whole: a changed DataTable renders every visible cell again,
        so four tables in one frame, or one table after each slice, held the loop 50-150 ms."""
        self.data = data
        if plan.rebuild or plan.removed or plan.updated or plan.added:
            async with self.app.paint_turn:  # type: ignore[attr-defined]
                with self.app.batch_update():
                    for _ in apply_plan(self.table, plan):
                        await asyncio.sleep(0)
                    self.say_row()  # in the same frame as the rows
                with contextlib.suppress(TimeoutError):  # (no repaint while the app stops)
                    await asyncio.wait_for(self.table.wait_for_refresh(), PAINT_WAIT_S)
        else:
            self.say_row()
        self.shown = plan.rows

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.say_row()

    def say_row(self) -> None:
        """The summary, and the detail of the row under the cursor when the read gave one (also
        the table's tooltip, for the mouse)."""
        key = self.selected
        detail = self.data.details.get(key, "") if key is not None else ""
        self.say(f"{self.data.summary} | {detail}" if detail else self.data.summary)
        if self.table.tooltip != (detail or None):
            self.table.tooltip = detail or None

    def say(self, summary: str) -> None:
        """The one-line summary above the table (as text, not markup), when it changed; its
        height is fixed, so the screen is not laid out again."""
        line = self.query_one(".summary", Static)
        if str(line.content) != summary:
            line.update(Text(summary, end=""), layout=False)

    async def show_error(self, error: BaseException | None) -> None:
        """The rows stay as last read; the summary says why they are not fresh."""
        self.say(f"not refreshed: {error}")


class HealthPane(Pane):
    """The store's health rows, and the round-trip latency of the last :attr:`LATENCIES` reads
    as a sparkline over them."""

    LATENCIES = 60

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies: deque[float] = deque(maxlen=self.LATENCIES)
        #: The vector store's status at the last read (:func:`~mimir_tui.vectors.status.vector_status`).
        self.vectors: dict[str, Any] | None = None
        #: The newest backup archive at the last read (:func:`~mimir_tui.ops.archive.last_backup`).
        self.backups: dict[str, Any] | None = None

    def _fetch_in_turn(self) -> Any:
        """The vector store's status first, outside the turn of reads (it never imports
        chromadb; a slow vector server, up to 5 s a request, delays this pane, not the others),
        then the database's health in turn."""
        from pathlib import Path

        from ..ops.archive import last_backup
        from ..vectors.status import vector_status

        settings = self.app.settings  # type: ignore[attr-defined]
        self.vectors = vector_status(settings)
        self.backups = last_backup(Path(settings.persistence.backup_path))
        return super()._fetch_in_turn()

    def compose(self) -> ComposeResult:
        summary, table = super().compose()
        yield summary
        yield Sparkline([], id="health-latency", summary_function=max)
        yield table

    def read_data(self) -> PaneData:
        """The first read leaves out the integrity check (up to 2 s on a large SQLite file), so
        the pane shows its rows at once; the next, at the refresh interval, makes it (not at
        once: it would compete with the first paint)."""
        app: Any = self.app
        backend = app.backend()
        read: Any = self.read  # overview.read_health, which takes ``integrity`` and ``timer``
        return read(
            backend,
            app.now(backend),
            integrity=self.polls > 1,
            timer=app.timer,
            vectors=self.vectors,
            backups=self.backups,
        )

    def adjust(self, data: PaneData) -> PaneData:
        """As read, with this dashboard's own scheduler marked among the instances."""
        here = f"instance:{self.app.instance}"  # type: ignore[attr-defined]
        rows = [(k, (f"{cells[0]} (this dashboard)", *cells[1:]) if k == here else cells) for k, cells in data.rows]
        return PaneData(rows, data.summary, values=data.values)

    async def fill(self, data: PaneData, plan: Plan) -> None:
        """The rows; the latency joins the sparkline."""
        await super().fill(data, plan)
        if "latency_ms" in data.values:
            self.latencies.append(data.values["latency_ms"])
            self.query_one(Sparkline).data = list(self.latencies)

    async def show_error(self, error: BaseException | None) -> None:
        """A store that cannot be opened is unhealthy: that is the health pane's content."""
        backend = self.app.settings.persistence.backend  # type: ignore[attr-defined]
        report = {"status": "unhealthy", "backend": backend, "error": str(error)}
        if self.vectors is not None:
            report["vectors"] = self.vectors
        data = overview.health_data(report)
        await self.fill(data, plan_rows(self.shown, data.rows))


class PipelinesTable(Table):
    BINDINGS = [Binding("enter", "select_cursor", "Open", id="open-pipeline")]


class PipelinesPane(Pane):
    """Enter opens a pipeline: its steps, its YAML, run now and validate."""

    TABLE = PipelinesTable

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        from .screens.pipeline import PipelineScreen

        if (key := self.selected) is not None:
            self.app.push_screen(PipelineScreen(key))


class RunsTable(Table):
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

    def read_data(self) -> PaneData:
        backend = self.app.backend()  # type: ignore[attr-defined]
        read: Any = self.read  # overview.read_executions, which takes the filters
        return read(backend, self.app.now(backend), status=self.status, job=self.job)  # type: ignore[attr-defined]

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
