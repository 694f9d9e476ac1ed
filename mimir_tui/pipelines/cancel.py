"""A request to stop a run, made in this process: by the scheduler when it shuts down, by the
command line on Ctrl-C. (A request from another process goes through the database instead:
``mimir-tui executions cancel ID``.)"""

from __future__ import annotations

import threading


class CancelToken:
    """Set once, with the reason to record as the run's error; never cleared.

    The first reason given is kept: the run is recorded with why it was asked to stop first,
    not with a later request that came while it was stopping. Thread-safe (a signal handler
    or another thread may cancel)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: str | None = None
        self._status = "cancelled"
        self._lock = threading.Lock()

    def cancel(self, reason: str | None = None, *, status: str = "cancelled") -> None:
        """Ask the run to stop; ``reason`` (e.g. ``"cancelled: interrupted (SIGINT)"``) becomes
        its error, and ``status`` its status (``interrupted``: the instance running it stops,
        and the run is retried). Later calls change nothing."""
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._status = status
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def is_set(self) -> bool:
        """Same as :attr:`cancelled` (the spelling of ``threading.Event``)."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """Why it was cancelled, if a reason was given."""
        return self._reason

    @property
    def status(self) -> str:
        """The status the stopped run is recorded with."""
        return self._status

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; True if cancelled."""
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        state = f"cancelled: {self._reason!r}" if self.cancelled else "active"
        return f"<CancelToken {state}>"


__all__ = ["CancelToken"]
