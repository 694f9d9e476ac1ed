"""The dashboard app: themes, the store (opened once, used from the panes' worker threads),
the pipelines-folder watcher, and the main screen (:mod:`.screens.dashboard`). Screens of later
issues are pushed over the main one."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.message import Message

from ..config import Settings
from .panes import Pane, Polling
from .screens.dashboard import DashboardScreen


class MimirApp(App):
    TITLE = "Mimir"
    SUB_TITLE = "pipelines on schedules"
    CSS_PATH = Path(__file__).with_name("mimir.tcss")
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="refresh"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    class PipelinesSynced(Message):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self.result = result

    def __init__(self, settings: Settings, *, backend: Any = None, theme_name: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._theme_name = theme_name
        self._watcher: Any = None

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

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

    def backend(self) -> Any:
        """The store, opened by the first pane that reads (in its worker thread; a store that
        cannot be opened raises, and the next read tries again)."""
        with self._backend_lock:
            if self._backend is None:
                from ..persistence import open_backend

                self._backend = open_backend(self.settings)
                self._start_watcher()
            return self._backend

    def action_refresh(self) -> None:
        """Read every pane (and the screen, if it reads) now; one whose read still runs skips this."""
        for pane in self.screen.query(Pane):
            pane.action_poll()
        if isinstance(self.screen, Polling):  # a screen that reads (the execution screen)
            self.screen.action_poll()

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
