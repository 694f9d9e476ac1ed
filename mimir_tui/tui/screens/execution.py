"""The Execution screen: one run's step timeline, its context and step outputs as a JSON tree,
and its log followed live while it runs. Cancel (after a confirmation) and re-run from here;
Escape goes back.

The run is read by :func:`mimir_tui.ops.execution.read_execution` in a polling worker (the
panes' :class:`~mimir_tui.tui.panes.Polling`); the log file is followed with watchfiles in a
thread worker that posts the new lines and stops when the screen closes. A log that is not on
this machine (the run is on another instance) is told from the run's records instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Log, Static, Tree
from textual.widgets.tree import TreeNode

from ...constants import Status
from ...errors import MimirError
from ...ops.execution import STEP_COLUMNS, ExecutionDetail, LogTail, read_execution, record_lines, rerun
from ...pipelines.execlog import no_log_reason
from ..panes import Polling, apply_rows
from ..widgets.confirm import ConfirmScreen
from ..widgets.table import Table

#: The most nodes the JSON tree holds (a huge output is cut, with a note).
TREE_NODES = 5000
#: The most lines the log view keeps (the file has them all).
LOG_LINES = 10_000


def confirm_cancel(node: Widget, execution_id: str, *, after: Callable[[], None] | None = None) -> None:
    """Ask, then cancel ``execution_id`` the way ``mimir-tui executions cancel`` does (through the
    database, so it reaches the instance running it wherever that is), in a thread worker."""
    app: Any = node.app

    def cancel() -> None:
        try:
            record = app.backend().request_cancel(execution_id)
        except MimirError as exc:
            app.call_from_thread(app.notify, str(exc), severity="error")
            return
        said = "was still queued: cancelled" if record.status == "cancelled" else "cancel requested"
        app.call_from_thread(app.notify, f"execution {execution_id}: {said}")
        if after is not None:
            app.call_from_thread(after)

    def answered(yes: bool | None) -> None:
        if yes:
            node.run_worker(cancel, thread=True, exit_on_error=False, group="cancel")

    app.push_screen(ConfirmScreen(f"Cancel execution {execution_id}?"), answered)


def queue_and_open(app: Any, queue: Callable[[Any], Any]) -> None:
    """In the app's thread worker (it outlives the screen that asked): ``queue(backend)`` queues
    a run (a :class:`RunRequest`), whose execution screen then opens (:func:`open_execution`)
    while the run is followed, and run here when no instance takes it (as ``jobs run --wait``
    does)."""

    def queue_and_follow() -> None:
        from ...scheduler.jobs import wait_for_run

        backend = app.backend()
        try:
            request = queue(backend)
        except MimirError as exc:
            app.call_from_thread(app.notify, str(exc), severity="error")
            return
        app.call_from_thread(open_execution, app, request.execution_id)
        try:
            wait_for_run(backend, app.settings, request)
        except MimirError as exc:
            app.call_from_thread(app.notify, f"execution {request.execution_id}: {exc}", severity="error")

    app.run_worker(queue_and_follow, thread=True, exit_on_error=False, group="run-now")


def open_execution(app: Any, execution_id: str) -> None:
    """Open the run's screen: over the current one, or in place of another run's (not awaited:
    it completes on the event loop)."""
    opened = ExecutionScreen(execution_id)
    if isinstance(app.screen, ExecutionScreen):
        app.switch_screen(opened)
    else:
        app.push_screen(opened)


def add_json(node: TreeNode, name: str, value: Any, budget: list[int]) -> None:
    """``value`` under ``node`` as ``name``; keys and values are shown as text, never markup.
    ``budget``: nodes left (shared across the tree)."""
    if budget[0] <= 0:
        return
    budget[0] -= 1
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        brackets = "{}" if isinstance(value, dict) else "[]"
        child = node.add(Text(f"{name} {brackets[0]}{len(value)}{brackets[1]}"), expand=budget[0] > TREE_NODES - 50)
        for key, item in items:
            add_json(child, str(key), item, budget)
            if budget[0] <= 0:
                child.add_leaf(Text("... (cut)"))
                return
    else:
        shown = json.dumps(value, ensure_ascii=False, default=str)
        node.add_leaf(Text(f"{name}: {shown[:500]}"))


class ExecutionScreen(Polling, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("c", "cancel", "Cancel run", id="cancel-run"),
        Binding("R", "rerun", "Re-run", id="rerun"),
        Binding("ctrl+r", "poll", "Reload", id="reload-execution"),
    ]

    class LogLines(Message):
        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

    def __init__(self, execution_id: str) -> None:
        super().__init__()
        self.execution_id = execution_id
        self.detail: ExecutionDetail | None = None
        #: Where the log view's lines come from: ``"file"``, ``"records"``, or None (not yet).
        self.log_source: str | None = None
        self._records: list[str] = []
        self._data: str | None = None
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading...", id="execution-summary", classes="summary")
        yield Static("", id="execution-error")
        steps = Table(id="execution-steps")
        steps.add_columns(*STEP_COLUMNS)
        yield steps
        with Horizontal(id="execution-body"):
            tree: Tree[None] = Tree(Text("run"), id="execution-data")
            tree.show_root = False
            yield tree
            yield Log(id="execution-log", max_lines=LOG_LINES)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"execution {self.execution_id}"
        self.query_one("#execution-error").display = False
        self.query_one("#execution-data").border_title = "context and outputs"
        self.query_one("#execution-log").border_title = "log"
        self.start_polling(self.app.settings.ui.refresh_interval)  # type: ignore[attr-defined]

    def on_unmount(self) -> None:
        self._stop.set()  # the log stops being followed

    # -- the run ------------------------------------------------------------------------------

    @property
    def poll_group(self) -> str:
        return f"poll-execution-{self.execution_id}"

    def fetch(self) -> ExecutionDetail:
        backend = self.app.backend()  # type: ignore[attr-defined]
        settings = self.app.settings  # type: ignore[attr-defined]
        return read_execution(backend, settings, self.execution_id, self.app.now(backend))  # type: ignore[attr-defined]

    def show(self, detail: ExecutionDetail) -> None:
        self.detail = detail
        record = detail.record
        apply_rows(self.query_one("#execution-steps", DataTable), detail.steps)
        self.query_one("#execution-summary", Static).update(Text(detail.summary))
        error = self.query_one("#execution-error", Static)
        error.display = bool(record.error)
        error.update(Text(f"error: {record.error}" if record.error else ""))
        data = json.dumps(detail.data, sort_keys=True, default=str)
        if data != self._data:  # rebuilt only when it changed (the cursor stays otherwise)
            self._data = data
            tree = self.query_one("#execution-data", Tree)
            tree.clear()
            for name, value in detail.data.items():
                add_json(tree.root, name, value, [TREE_NODES])
        self._show_log(detail)

    def show_error(self, error: BaseException | None) -> None:
        self.query_one("#execution-summary", Static).update(Text(f"not refreshed: {error}"))

    # -- the log ------------------------------------------------------------------------------

    def _show_log(self, detail: ExecutionDetail) -> None:
        """Where the log comes from is settled once the run has left the queue (until then no
        instance has it, and its file, if it ever has one here, does not exist): its file when
        it is here or may appear (running here), else its records."""
        path = detail.log_path
        if self.log_source is None and detail.record.status != Status.queued.value:
            local = path.is_file()
            if local or (not detail.finished and path.parent.is_dir()):  # it may appear: follow
                self.run_worker(lambda: self._follow(path), thread=True, exit_on_error=False, group="follow-log")
            self.log_source = "file" if local else "records"
            if local and self._records:  # "none yet" was shown while it was queued
                self._records = []
                self.query_one("#execution-log", Log).clear()
        if self.log_source != "file":  # the records, or why there is no log yet
            reason = no_log_reason(detail.record)
            lines = [f"log file {path}: {reason}; the run's records", *record_lines(detail.record)]
            if lines != self._records:
                self._records = lines
                log = self.query_one("#execution-log", Log)
                log.clear()
                log.write_lines(lines)

    def _follow(self, path: Path) -> None:
        """In a thread: post what is appended to the log file, until the screen closes."""
        import watchfiles

        tail = LogTail(path)
        if lines := tail.read():
            self.post_message(self.LogLines(lines))
        # Each change to the file, and once a second anyway (a file system without events).
        for _ in watchfiles.watch(
            path.parent,
            watch_filter=lambda _change, changed: Path(changed).name == path.name,
            stop_event=self._stop,
            debounce=50,
            step=50,
            rust_timeout=1000,
            yield_on_timeout=True,
        ):
            if lines := tail.read():
                self.post_message(self.LogLines(lines))

    def on_execution_screen_log_lines(self, message: ExecutionScreen.LogLines) -> None:
        log = self.query_one("#execution-log", Log)
        if self.log_source != "file":  # the file appeared: it replaces the records
            self.log_source = "file"
            log.clear()
        log.write_lines(message.lines)

    # -- actions ------------------------------------------------------------------------------

    def action_cancel(self) -> None:
        confirm_cancel(self, self.execution_id, after=self.action_poll)

    def action_rerun(self) -> None:
        """Queue a run like this one (as ``jobs run`` does) and open it; it is followed, and
        run here when no instance takes it (as ``jobs run --wait`` does)."""
        if self.detail is None:
            return
        record = self.detail.record
        queue_and_open(self.app, lambda backend: rerun(backend, record))
