"""The headless runtime: scheduler, queue workers, the pipelines watcher and the heartbeat,
stopped cleanly by SIGTERM or SIGINT. Imports no Textual. Mimir's own periodic operations
(retention, backups) are system jobs the scheduler fires once across all instances
(:mod:`mimir_tui.ops.scheduled`), brought up to the config at each start; not timers here.

On a stop signal: stop firing and claiming, give running executions
``scheduler.shutdown_grace`` seconds, mark the rest ``interrupted``, exit 0. On a damaged
database the same stop, at once, and :class:`~mimir_tui.errors.DatabaseCorrupt` (exit 1, one
line naming the file and what to do) instead of an error logged at every poll.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import DatabaseCorrupt, MimirError
from .persistence import open_backend

if TYPE_CHECKING:  # imported in start(), where they are needed
    from .pipelines.store import PipelineWatcher
    from .scheduler.core import Scheduler

log = logging.getLogger("mimir.service")


class Service:
    def __init__(self, settings: Settings, *, backend: Any = None, on_sync: Any = None) -> None:
        self.settings = settings
        # A store handed in (the dashboard's) stays open for its owner when the service stops.
        self._owns_backend = backend is None
        self.backend = backend or open_backend(settings)
        self.on_sync = on_sync  # the pipelines watcher's ``on_sync(result)``
        self.stop_event = threading.Event()
        self.scheduler: Scheduler | None = None
        self.watcher: PipelineWatcher | None = None

    def start(self) -> None:
        from .pipelines.registry import default_registry
        from .pipelines.runner import PipelineRunner
        from .pipelines.store import PipelineWatcher
        from .scheduler.core import Scheduler

        registry = default_registry(self.settings)
        if self.settings.pipelines.watch:
            self.watcher = PipelineWatcher(self.backend, self.settings, registry, on_sync=self.on_sync).start()
            self.watcher.ready.wait(10)
        runner = PipelineRunner(self.backend, self.settings, registry)
        self.scheduler = Scheduler(self.backend, self.settings, runner=runner)
        if self.settings.scheduler.enabled:
            self._upsert_scheduled_ops()
            self.scheduler.start()
        else:
            log.info("scheduler.enabled is false: not firing schedules or claiming runs")

    def _upsert_scheduled_ops(self) -> None:
        from .ops.scheduled import upsert_scheduled_ops

        try:
            upsert_scheduled_ops(self.backend, self.settings)
        except DatabaseCorrupt:
            raise
        except MimirError as exc:  # the system jobs keep their last state; users' jobs still run
            log.error("cannot bring Mimir's system jobs up to the config: %s", exc)

    def stop(self) -> None:
        self.stop_event.set()
        if self.watcher is not None:
            self.watcher.stop()
        if self.scheduler is not None and self.settings.scheduler.enabled:
            self.scheduler.stop()
        if self._owns_backend:
            self.backend.close()

    @property
    def running(self) -> int:
        """Runs in progress in this instance (what :meth:`stop` gives the grace to)."""
        pool = self.scheduler.pool if self.scheduler is not None else None
        return pool.busy if pool is not None else 0

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        received: list[int] = []

        def on_signal(signum: int, _frame: Any) -> None:
            # Only noted (list.append takes no lock): the handler runs between two bytecodes of
            # the main thread, which may hold the lock of stop_event or of a log handler just
            # then, or be in this handler already (`timeout` sends SIGTERM to the process and
            # to its group). Setting the event here deadlocked the service for good.
            received.append(signum)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            log.info(
                "mimir service running (backend %s, worker %s)",
                self.backend.url,
                self.scheduler.worker_id if self.scheduler else "-",
            )
            while not received and not self.stop_event.wait(0.5) and not self.backend.corruption:
                pass
            if received:
                log.info(
                    "received %s: draining (grace %.0f s)",
                    signal.Signals(received[0]).name,
                    self.settings.scheduler.shutdown_grace,
                )
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.backend.corruption:
            log.info("mimir service stopped: the database is damaged")
            raise DatabaseCorrupt(self.backend.corruption)
        log.info("mimir service stopped")
        return 0


def run_headless(settings: Settings) -> int:
    from .logsetup import setup_logging

    setup_logging(settings, console=True)
    return Service(settings).serve()
