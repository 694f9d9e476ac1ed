"""Time for the scheduler, so that DST, misfire and lease logic can run on a fake clock."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("mimir.scheduler")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds`` or until ``event`` is set; True if it was set."""
        return event.wait(max(0.0, seconds))


class DatabaseClock(SystemClock):
    """This machine's clock, set to the database server's.

    Every instance decides when a schedule is due on this clock, so an instance on a machine
    whose clock is off still fires on time (and fires once either way: the run key). The
    offset is measured against ``backend.database_now()`` by :meth:`sync` (at start and at each
    heartbeat); of the last few measurements the one with the shortest round trip counts, as
    in NTP, since half the round trip bounds its error. A measurement that disagrees with it by
    more than both error bounds means a clock was stepped: the older ones are dropped. On
    SQLite the database's clock is this machine's and the offset stays 0.
    """

    SAMPLES = 8
    WARN_AFTER = timedelta(seconds=1)

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.offset = timedelta(0)
        self._samples: deque[tuple[float, timedelta]] = deque(maxlen=self.SAMPLES)  # (round trip s, offset)
        self._lock = threading.Lock()
        self._warned = False

    def now(self) -> datetime:
        return super().now() + self.offset

    def sync(self) -> timedelta:
        """Measure the offset once more; returns the offset in use."""
        if getattr(self.backend, "dialect", None) == "sqlite":
            return self.offset
        started, local = time.perf_counter(), super().now()
        remote = self.backend.database_now()
        trip = time.perf_counter() - started
        measured = remote - (local + timedelta(seconds=trip / 2))
        with self._lock:
            if self._samples:
                best_trip, best = min(self._samples, key=lambda s: s[0])
                if abs(measured - best) > timedelta(seconds=(best_trip + trip) / 2 + 0.001):
                    self._samples.clear()  # a clock was stepped since
            self._samples.append((trip, measured))
            self.offset = min(self._samples, key=lambda s: s[0])[1]
            offset = self.offset
        off = abs(offset) >= self.WARN_AFTER
        if off and not self._warned:
            log.warning(
                "this machine's clock is %.3f s %s the database server's; schedules fire on the database's",
                abs(offset.total_seconds()),
                "behind" if offset > timedelta(0) else "ahead of",
            )
        self._warned = off
        return offset


class FakeClock:
    """A clock that moves only when told to. ``wait`` advances it instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, seconds))
        return event.is_set()
