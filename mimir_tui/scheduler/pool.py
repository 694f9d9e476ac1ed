"""The run slots of one instance: a fixed number of threads that execute claimed runs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from ..pipelines.loops import thread_loop

log = logging.getLogger("mimir.scheduler")


class RunPool:
    """A fixed number of daemon threads running executions (daemon: a stopping service never
    waits on a stuck plugin beyond its grace period). ``turns``: their runs take turns (on
    SQLite: see pipelines.loops)."""

    def __init__(self, size: int, name: str = "mimir-run", *, turns: bool = False) -> None:
        self.size = size
        self.turns = turns
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._open = threading.Event()  # cleared by hold(): no new run starts
        self._open.set()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._busy += 1
        self._queue.put(fn)

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    @property
    def free(self) -> int:
        return max(0, self.size - self.busy)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def hold(self) -> None:
        """Start no new run until :meth:`release` (runs under way go on)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _work(self) -> None:
        with thread_loop(turns=self.turns):  # one event loop for the runs of this slot (see pipelines.loops)
            self._serve()

    def _serve(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            self._open.wait()
            try:
                fn()
            except Exception:  # a run's failure is recorded by the runner; never kill the pool
                log.exception("run crashed")
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
