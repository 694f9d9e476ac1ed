"""The dashboard app: themes, the store (opened once, used from the panes' worker threads),
the pipelines-folder watcher, and the main screen (:mod:`.screens.dashboard`). Screens of later
issues are pushed over the main one.

With ``scheduler=True`` (``ui.run_scheduler``, the default of ``mimir-tui``) the app runs the
headless service's objects in-process (:class:`~mimir_tui.service.Service`: scheduler, run pool,
queue poller, heartbeat, retention, watcher), started and stopped in thread workers; ``q`` stops
it as SIGTERM stops the service, after a confirmation when runs are in progress here."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState

from ..config import Settings
from ..persistence.types import utcnow
from ..service import Service
from .commands import MimirCommands
from .panes import Pane, Polling
from .screens.dashboard import DashboardScreen
from .widgets.confirm import ConfirmScreen

log = logging.getLogger("mimir.tui")


class MimirApp(App):
    TITLE = "Mimir"
    SUB_TITLE = "pipelines on schedules"
    CSS_PATH = Path(__file__).with_name("mimir.tcss")
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="refresh"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark,f1", "help", "Help", id="help"),
    ]
    COMMANDS = App.COMMANDS | {MimirCommands}

    class PipelinesSynced(Message):
        def __init__(self, result: Any) -> None:
            super().__init__()
            self.result = result

    def __init__(
        self,
        settings: Settings,
        *,
        backend: Any = None,
        theme_name: str | None = None,
        scheduler: bool = False,
        clock: Callable[[], datetime] | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.settings = settings
        #: What "now" is (UTC) for the relative times, ages and elapsed times shown; None: the
        #: database's clock (schedules fall due on it). The snapshot tests give a fixed one.
        self.clock = clock
        #: What the health pane measures the database's round trip with (seconds, monotonic).
        self.timer = timer
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._theme_name = theme_name
        self._watcher: Any = None
        self._remembered = ""
        self.run_scheduler = scheduler
        #: The in-process service, once started; the lock keeps start and stop apart.
        self.service: Service | None = None
        self._service_lock = threading.Lock()
        self.quitting = False
        #: The turn of one pane at a time to apply its changes and have them painted (Pane.fill).
        self.paint_turn = asyncio.Lock()
        #: The quit confirmation while it is shown (q, ctrl+q and the palette's Quit ask once).
        self._quit_question: ConfirmScreen | None = None

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

    def on_mount(self) -> None:
        """The file themes join Textual's (the palette's "Change theme" lists them all); the
        theme is ``--theme``, else the one last chosen, else ``ui.theme``. A theme chosen while
        the dashboard runs is remembered (:func:`~.themes.save_theme`)."""
        from .themes import load_themes, saved_theme

        for theme in load_themes().values():
            self.register_theme(theme)
        name = self._theme_name or saved_theme(self.settings) or self.settings.ui.theme
        if name in self.available_themes:
            self.theme = name
        else:
            self.notify(f"unknown theme {name!r}", severity="warning")
        self._remembered = self.theme  # the start's theme is not a choice to save
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        notice = self.settings.no_effect_notice()
        if notice:  # the log has it too, but the terminal is the dashboard's
            self.notify(notice, severity="warning", timeout=15)
        self.call_after_refresh(_freeze_startup_objects)
        if self.run_scheduler:
            self.run_worker(self._start_service, thread=True, exit_on_error=False, group="service")

    def _remember_theme(self, theme: Any) -> None:
        from .themes import save_theme

        if theme.name == self._remembered:
            return
        self._remembered = theme.name
        self.run_worker(lambda: save_theme(self.settings, theme.name), thread=True, group="save-theme")

    def backend(self) -> Any:
        """The store, opened by the first pane that reads (in its worker thread; a store that
        cannot be opened raises, and the next read tries again)."""
        with self._backend_lock:
            if self._backend is None:
                from ..persistence import open_backend

                self._backend = open_backend(self.settings)
                self._start_watcher()
            return self._backend

    def now(self, backend: Any = None) -> datetime:
        """Now, in UTC, as the dashboard shows times against it: :attr:`clock`'s, else
        ``backend``'s (the database's clock: call it in a worker), else this machine's (on the
        event loop, which never waits for the database)."""
        if self.clock is not None:
            return self.clock()
        return backend.database_now() if backend is not None else utcnow()

    def action_refresh(self) -> None:
        """Read every pane (and the screen, if it reads) now; one whose read still runs skips this."""
        for pane in self.screen.query(Pane):
            pane.action_poll()
        if isinstance(self.screen, Polling):  # a screen that reads (the execution screen)
            self.screen.action_poll()

    def _start_watcher(self) -> None:
        """Keep the pipelines folder and the database in step while the dashboard runs (in the
        watcher's own thread; results come back as messages)."""
        if not self.settings.pipelines.watch or self._watcher is not None or self.run_scheduler:
            return  # (the in-process service runs the watcher)
        from ..pipelines.store import PipelineWatcher

        self._watcher = PipelineWatcher(self._backend, self.settings, on_sync=self._synced).start()

    def _synced(self, result: Any) -> None:
        self.post_message(self.PipelinesSynced(result))

    # -- the in-process scheduler ----------------------------------------------------------

    def _start_service(self) -> None:
        backend = self.backend()
        with self._service_lock:
            if self.quitting:
                return
            self.service = Service(self.settings, backend=backend, on_sync=self._synced)
            self.service.start()
        scheduler = self.service.scheduler
        if scheduler is not None and self.settings.scheduler.enabled:
            self.call_from_thread(setattr, self, "sub_title", f"scheduler {scheduler.worker_id}")

    def _stop_service(self) -> None:
        with self._service_lock:
            if self.service is not None and not self.service.stop_event.is_set():
                self.service.stop()

    @property
    def instance(self) -> str | None:
        """The worker id of this dashboard's scheduler, while it runs."""
        service = self.service
        if service is None or service.scheduler is None or service.stop_event.is_set():
            return None
        return service.scheduler.worker_id

    async def action_quit(self) -> None:
        """Quit; the in-process scheduler stops as the service does on SIGTERM (runs in progress
        get ``scheduler.shutdown_grace`` seconds, the rest are interrupted and retried elsewhere
        if their job allows), after a confirmation when runs are in progress here."""
        if self.quitting or (self._quit_question is not None and self._quit_question in self.screen_stack):
            return
        running = self.service.running if self.service is not None else 0
        if not running:
            self._quit()
            return
        grace = self.settings.scheduler.shutdown_grace
        question = (
            f"{running} run(s) in progress here. Quit? They get {grace:g} s to finish; the rest are marked "
            "interrupted (and retried by another instance if their job allows)."
        )
        self._quit_question = ConfirmScreen(question)
        self.push_screen(self._quit_question, lambda yes: self._quit() if yes else None)

    def get_system_commands(self, screen: Any) -> Iterable[SystemCommand]:
        """Textual's, its "Quit" said as :meth:`action_quit` does it (the same action as q and
        ctrl+q, Textual's quit key)."""
        for command in super().get_system_commands(screen):
            if command.title == "Quit":
                command = SystemCommand("Quit", "Quit (asks first when runs are in progress here)", self.action_quit)
            yield command

    def _quit(self) -> None:
        self.quitting = True
        if not self.run_scheduler:
            self.exit()
            return
        self.notify("stopping the scheduler...", timeout=30)
        self.run_worker(self._stop_service, thread=True, exit_on_error=False, group="service-stop")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if group not in ("service", "service-stop") or not event.worker.is_finished:
            return
        if event.state == WorkerState.ERROR:
            log.error("the in-process scheduler failed to %s", group, exc_info=event.worker.error)
            self.notify(f"scheduler: {event.worker.error}", severity="error", timeout=10)
        if group == "service-stop":
            self.exit()

    def action_help(self) -> None:
        from .screens.help import HelpScreen, help_markdown

        self.push_screen(HelpScreen(help_markdown(self.screen)))

    def on_mimir_app_pipelines_synced(self, message: MimirApp.PipelinesSynced) -> None:
        result = message.result
        if result.ok:
            changed = [*result.added, *result.updated, *result.removed]
            self.notify(f"pipelines reloaded: {', '.join(changed)}", timeout=4)
        else:
            first = str(result.issues[0])
            self.notify(f"pipeline file rejected (last good version kept): {first}", severity="error", timeout=8)

    def on_unmount(self) -> None:
        self.quitting = True
        self._stop_service()  # quit other than by q (the end of a test, an error): stop it here
        if self._watcher is not None:
            self._watcher.stop()
        if self._backend is not None:
            self._backend.close()


def _freeze_startup_objects() -> None:
    """Leave what the start made (modules, styles, widgets: most of the process's objects) out
    of every later garbage collection (:func:`gc.freeze`): a full collection over them took
    60-90 ms, a stall of the event loop every few refreshes."""
    gc.freeze()


def run_dashboard(settings: Settings, *, theme: str | None = None, demo: bool = False) -> int:
    from ..logsetup import setup_logging

    setup_logging(settings, console=False)  # the terminal belongs to the dashboard
    if demo:
        from ..demo import start_demo
        from ..persistence import open_backend

        with open_backend(settings) as backend:
            start_demo(backend)  # the sample data, and a live run queued for the scheduler
    MimirApp(settings, theme_name=theme, scheduler=settings.ui.run_scheduler).run()
    return 0
