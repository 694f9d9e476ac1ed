"""A request to stop a run, made in this process: by the scheduler when it shuts down, by the
command line on Ctrl-C. (A request from another process goes through the database instead:
``mimir-tui executions cancel ID``.)"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol

#: Longest sleep of :func:`pause` between two looks at its flag.
PAUSE_LOOK = 0.05

#: Every token's lock: a cancel is rare, and a lock (with an Event's condition) per token cost
#: 1.4 KiB for each run a scheduler has claimed and not yet ended (1,000 in a burst). Reentrant:
#: a signal handler cancels on the main thread, which may hold it just then (a second signal
#: while the first one's cancel runs), and a plain lock would wait there for ever.
_LOCK = threading.RLock()


class CancelToken:
    """Set once, with the reason to record as the run's error; never cleared.

    The first reason given is kept: the run is recorded with why it was asked to stop first,
    not with a later request that came while it was stopping. Thread-safe (a signal handler
    or another thread may cancel). The event :meth:`wait` blocks on is made by the first wait:
    most runs never wait on their token."""

    __slots__ = ("_cancelled", "_event", "_reason", "_status")

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None
        self._reason: str | None = None
        self._status = "cancelled"

    def cancel(self, reason: str | None = None, *, status: str = "cancelled") -> None:
        """Ask the run to stop; ``reason`` (e.g. ``"cancelled: interrupted (SIGINT)"``) becomes
        its error, and ``status`` its status (``interrupted``: the instance running it stops,
        and the run is retried). Later calls change nothing."""
        with _LOCK:
            if self._cancelled:
                return
            self._reason = reason
            self._status = status
            self._cancelled = True
            if self._event is not None:
                self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def is_set(self) -> bool:
        """Same as :attr:`cancelled` (the spelling of ``threading.Event``)."""
        return self._cancelled

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
        with _LOCK:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            event = self._event
        return event.wait(timeout)

    def __repr__(self) -> str:
        state = f"cancelled: {self._reason!r}" if self.cancelled else "active"
        return f"<CancelToken {state}>"


class _Flag(Protocol):
    def is_set(self) -> bool: ...


async def pause(seconds: float, flag: _Flag | None) -> bool:
    """Sleep ``seconds`` on the running loop, less if ``flag`` (a :class:`CancelToken`, a
    ``threading.Event``) is set meanwhile, looked at every :data:`PAUSE_LOOK` seconds; whether
    it is set."""
    end = time.monotonic() + seconds
    while not (flag is not None and flag.is_set()) and (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, PAUSE_LOOK))
    return flag is not None and flag.is_set()


__all__ = ["CancelToken", "pause"]
