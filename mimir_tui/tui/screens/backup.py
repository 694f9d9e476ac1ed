"""The Backup screen: the archives in ``persistence.backup_path`` (time, age, size, row counts,
verification), newest first; ``c`` creates one (with a progress bar), ``E`` an encrypted one,
``V`` verifies the selected archive, ``R`` restores it after a confirmation that says what will
be replaced. Escape goes back.

Every operation runs in a thread worker through the same functions as ``mimir-tui backup``
(:mod:`mimir_tui.ops.backup`, :mod:`mimir_tui.ops.restore`), one at a time: a second one while
one runs is refused in the status line. A restore's confirmation is asked from its worker once
the archive is verified (the worker waits for the answer), so what the question states (the
counts now and in the archive) is what the restore then does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static
from textual.worker import Worker

from ...errors import MimirError
from ...ops.archive import listing
from ...ops.overview import relative, size
from ..outcome import FINISHED, deliver
from ..panes import apply_rows
from ..widgets.confirm import ConfirmScreen
from ..widgets.table import Table

#: The archive's name holds its UTC time; the age is against the dashboard's clock.
COLUMNS = ("Archive (UTC time)", "Age", "Size", "Jobs", "Runs", "Verified")


def archive_rows(folder: Path, now: Any) -> list[tuple[str, tuple[str, ...]]]:
    """The table's rows (keyed by archive name), newest first."""
    rows: list[tuple[str, tuple[str, ...]]] = []
    for a in listing(folder):
        counts = a["row_counts"]
        verified = {True: "ok", False: "FAILED", None: "not yet"}[a["verified"]]
        rows.append(
            (
                a["archive"],
                (
                    a["archive"],
                    relative(a["created"], now),
                    size(a["size_bytes"]),
                    str(counts.get("scheduled_jobs", "-")),
                    str(counts.get("job_executions", "-")),
                    verified,
                ),
            )
        )
    return rows


class BackupScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("c", "create(False)", "Create backup", id="backup-create"),
        Binding("E", "create(True)", "Create encrypted", id="backup-create-encrypted"),
        Binding("V", "verify", "Verify", id="backup-verify"),
        Binding("R", "restore", "Restore", id="backup-restore"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="backup-reload"),
    ]

    def __init__(self) -> None:
        super().__init__(id="backup")
        self._operation: str | None = None  # the operation in progress (one at a time)
        self._then: dict[Worker[Any], Callable[[Any], None]] = {}
        self._gone = threading.Event()  # the screen closed: a restore waiting for its answer says no

    def on_unmount(self) -> None:
        self._gone.set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="backup-top", classes="ops-top"):
            yield Static("loading...", id="backup-status", classes="ops-status")
            yield ProgressBar(total=100, show_eta=False, id="backup-progress")
        table = Table(id="backup-archives")
        table.add_columns(*COLUMNS)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "backups"
        table = self.query_one("#backup-archives", DataTable)
        table.border_title = f"Archives in {self.app.settings.persistence.backup_path}"  # type: ignore[attr-defined]
        self.query_one("#backup-progress").display = False
        table.focus()
        self.action_reload()

    def say(self, line: str, *, error: bool = False) -> None:
        status = self.query_one("#backup-status", Static)
        status.set_class(error, "-error")
        status.update(Text(" ".join(line.split()), end=""))

    # -- workers -------------------------------------------------------------------------------

    def run(self, what: str, job: Callable[[], Any], then: Callable[[Any], None], *, exclusive: bool = True) -> None:
        """``job()`` in a thread worker, ``then(result)`` back on the event loop; an operation
        (``exclusive``) while another runs is refused."""
        if exclusive:
            if self._operation is not None:
                self.say(f"{self._operation} is running: one operation at a time", error=True)
                return
            self._operation = what
            self.say(f"{what}...")
            bar = self.query_one("#backup-progress", ProgressBar)
            bar.update(total=100, progress=0)
            bar.display = True
        worker = self.run_worker(job, thread=True, exit_on_error=False, group="backup", name=what)
        self._then[worker] = then

    def progress(self, phase: str, fraction: float | None) -> None:
        """From a worker thread: the phase in the status line, the fraction on the bar."""
        self.app.call_from_thread(self._show_progress, phase, fraction)

    def _show_progress(self, phase: str, fraction: float | None) -> None:
        if self._operation is None:
            return
        self.say(f"{self._operation}: {phase}...")
        bar = self.query_one("#backup-progress", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=round(fraction * 100))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker not in self._then or event.state not in FINISHED:
            return
        event.stop()
        then = self._then.pop(worker)
        operation = worker.name == self._operation
        if operation:
            self._operation = None
            self.query_one("#backup-progress").display = False
        deliver(worker, event.state, worker.name, then, self.say)
        if operation:
            self.action_reload(quiet=True)

    # -- the list ------------------------------------------------------------------------------

    def action_reload(self, quiet: bool = False) -> None:
        app: Any = self.app
        folder = Path(app.settings.persistence.backup_path)

        def read() -> list[tuple[str, tuple[str, ...]]]:
            return archive_rows(folder, app.now())

        def show(rows: list[tuple[str, tuple[str, ...]]]) -> None:
            apply_rows(self.query_one("#backup-archives", DataTable), rows)
            if not quiet:
                hint = "c creates one" if not rows else "c create, V verify, R restore the selected archive"
                self.say(f"{len(rows)} archive(s); {hint}")

        self.run("reading the archives", read, show, exclusive=False)

    def selected(self) -> Path | None:
        table = self.query_one("#backup-archives", DataTable)
        if not table.row_count:
            self.say("no archive selected", error=True)
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return Path(self.app.settings.persistence.backup_path) / key  # type: ignore[attr-defined]

    # -- operations ----------------------------------------------------------------------------

    def action_create(self, encrypt: bool) -> None:
        from ...ops.backup import create_backup

        app: Any = self.app

        def job() -> Any:
            return create_backup(app.settings, app.backend(), encrypt=encrypt or None, progress=self.progress)

        def done(result: Any) -> None:
            if result.verified:
                rotated = f"; rotated out {len(result.rotated)}" if result.rotated else ""
                self.say(f"created {result.path.name} ({size(result.size_bytes)}), verified{rotated}")
            else:
                self.say(f"created {result.path.name}, but it FAILED verification: {result.verify_error}", error=True)

        self.run("creating a backup", job, done)

    def action_verify(self) -> None:
        from ...ops.backup import verify_backup

        archive = self.selected()
        if archive is None:
            return
        settings = self.app.settings  # type: ignore[attr-defined]

        def job() -> Any:
            return verify_backup(settings, archive, progress=self.progress)

        self.run(
            f"verifying {archive.name}", job, lambda v: self.say(f"{archive.name}: ok, every checksum and count holds")
        )

    def action_restore(self) -> None:
        from ...ops.restore import RestorePlan, restore_backup

        archive = self.selected()
        if archive is None:
            return
        app: Any = self.app

        def ask(plan: RestorePlan) -> bool:
            """In the worker: the question on the screen, then wait for the answer."""
            answered = threading.Event()
            answer: list[bool] = []

            def show() -> None:
                def got(yes: bool | None) -> None:
                    answer.append(bool(yes))
                    answered.set()

                app.push_screen(ConfirmScreen(f"Restore? This will {plan.describe()}."), got)

            app.call_from_thread(show)
            while not answered.wait(0.2):
                if self._gone.is_set():
                    return False
            return answer[0]

        def job() -> Any:
            service = app.service
            if service is not None and service.running:
                raise MimirError(f"{service.running} run(s) in progress in this dashboard: restore once they end")
            return restore_backup(
                app.settings,
                archive,
                confirm=ask,
                progress=self.progress,
                own_worker=app.instance,
                backend=app.backend(),
            )

        def done(result: Any) -> None:
            counts = ", ".join(f"{t} {n}" for t, n in sorted(result.row_counts.items()))
            self.say(f"restored {result.archive.name}: {counts}; previous database kept at {result.safety_copy}")
            app.action_refresh()

        self.run(f"restoring {archive.name}", job, done)
