"""The dashboard. For now: the store's health, refreshed in a worker thread (the event loop
never touches the database). The panes and screens of later issues plug in here."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from ..config import Settings


class HealthPane(Vertical):
    DEFAULT_CSS = """
    HealthPane { border: round $primary; height: auto; padding: 0 1; }
    HealthPane #status { text-style: bold; }
    HealthPane DataTable { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("checking the database...", id="status")
        table: DataTable = DataTable(id="health-table", show_cursor=False)
        table.add_columns("what", "value")
        yield table


class MimirApp(App):
    TITLE = "Mimir"
    SUB_TITLE = "pipelines on schedules"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="refresh"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    class HealthReady(Message):
        def __init__(self, report: dict[str, Any]) -> None:
            super().__init__()
            self.report = report

    class PipelinesSynced(Message):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self.result = result

    def __init__(self, settings: Settings, *, backend: Any = None, theme_name: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._backend = backend
        self._theme_name = theme_name
        self._watcher: Any = None
        self._poll_timer: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield HealthPane(id="health")
        yield Footer()

    def on_mount(self) -> None:
        from .themes import load_themes

        for theme in load_themes().values():
            self.register_theme(theme)
        if self._theme_name:
            if self._theme_name in self.available_themes:
                self.theme = self._theme_name
            else:
                self.notify(f"unknown theme {self._theme_name!r}", severity="warning")
        notice = self.settings.no_effect_notice()
        if notice:  # the log has it too, but the terminal is the dashboard's
            self.notify(notice, severity="warning", timeout=15)
        self.action_refresh()

    def action_refresh(self) -> None:
        self.poll_health()

    @work(thread=True, exclusive=True, exit_on_error=False, group="health")
    def poll_health(self) -> None:
        from ..errors import MimirError
        from ..health import check_health
        from ..persistence import open_backend

        try:
            if self._backend is None:
                self._backend = open_backend(self.settings)
                self._start_watcher()
            report = check_health(self._backend, stale_after=self.settings.scheduler.stale_after)
        except MimirError as exc:
            report = {"status": "unhealthy", "backend": self.settings.persistence.backend, "error": str(exc)}
        self.post_message(self.HealthReady(report))

    def _start_watcher(self) -> None:
        """Keep the pipelines folder and the database in step while the dashboard runs (in the
        watcher's own thread; results come back as messages)."""
        if not self.settings.pipelines.watch or self._watcher is not None:
            return
        from ..pipelines.store import PipelineWatcher

        self._watcher = PipelineWatcher(
            self._backend, self.settings, on_sync=lambda result: self.post_message(self.PipelinesSynced(result))
        ).start()

    def on_mimir_app_pipelines_synced(self, message: MimirApp.PipelinesSynced) -> None:
        result = message.result
        if result.ok:
            changed = [*result.added, *result.updated, *result.removed]
            self.notify(f"pipelines reloaded: {', '.join(changed)}", timeout=4)
        else:
            first = str(result.issues[0])
            self.notify(f"pipeline file rejected (last good version kept): {first}", severity="error", timeout=8)

    def on_mimir_app_health_ready(self, message: MimirApp.HealthReady) -> None:
        report = message.report
        status = self.query_one("#status", Static)
        status.update(f"Store: {report['status']} ({report['backend']})")
        table = self.query_one("#health-table", DataTable)
        table.clear()
        for key in ("database", "latency_ms", "size_bytes", "schema_version", "error"):
            if key in report:
                table.add_row(key, str(report[key]))
        for name, count in report.get("row_counts", {}).items():
            table.add_row(f"rows in {name}", str(count))
        # One poll at a time: the next is armed only when this one has ended (as Dolphie does).
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(self.settings.ui.refresh_interval, self.poll_health)

    def on_unmount(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._backend is not None:
            self._backend.close()


def run_dashboard(settings: Settings, *, theme: str | None = None, demo: bool = False) -> int:
    from ..logsetup import setup_logging

    setup_logging(settings, console=False)  # the terminal belongs to the dashboard
    if demo:
        from ..demo import seed_demo
        from ..persistence import open_backend

        with open_backend(settings) as backend:
            seed_demo(backend)
    MimirApp(settings, theme_name=theme or settings.ui.theme).run()
    return 0
