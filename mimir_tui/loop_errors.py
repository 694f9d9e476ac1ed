"""Errors of the long-running loops (fire, queue, heartbeat, retention, the pipelines
watcher), logged so that a bug shows its stack without flooding the log.

A loop must survive whatever one pass raises, and try again at the next. A
:class:`~mimir_tui.errors.MimirError` is an expected condition (the database is briefly away)
and stays one line each time, as it says all there is to say. A *fatal* one (a damaged
database: no pass will go through again) is handed to the loop's ``on_fatal``, which stops
what the loop drives; it is not logged here (the database logged it once, when it met it). Anything else is a bug: its
traceback is logged the first time, and its repeats (a bug in ``tick()`` fails every poll) are
counted and summed up at most once a minute instead of filling the log with the same stack.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import MimirError

#: Seconds between two summaries of one error's repeats.
SUMMARY_EVERY = 60.0
#: Distinct errors remembered per loop (the oldest is forgotten: it logs its stack again).
MAX_KEYS = 256

ErrorKey = tuple[str, str, str]


def error_key(exc: BaseException) -> ErrorKey:
    """What makes two errors the same: the type, the message and where it was raised (the
    innermost frame's file:line)."""
    tb = exc.__traceback__
    where = ""
    if tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}", str(exc), where


@dataclass
class _Seen:
    label: str  # the first occurrence's, for the summary
    message: str
    last_line: float  # clock() of the last line logged for this error
    repeats: int = 0  # not yet summed up


class LoopErrors:
    """Logs what one loop's passes raise: :meth:`report` it from the loop's ``except
    Exception``, call :meth:`ok` after a pass that went through (it writes summaries that are
    due), :meth:`flush` when the loop ends.

    ``what`` names the failing step in each line ("scheduler tick failed"); ``report(exc,
    what=...)`` overrides it for one error (the key leaves it out: one bug in every job's fire
    is one error). ``level`` is for bugs, ``mimir_level`` for MimirErrors."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.ERROR,
        mimir_level: int | None = None,
        summary_every: float = SUMMARY_EVERY,
        clock: Callable[[], float] = time.monotonic,
        on_fatal: Callable[[MimirError], None] | None = None,
    ) -> None:
        self.log = logger
        self.on_fatal = on_fatal
        self.what = what
        self.level = level
        self.mimir_level = level if mimir_level is None else mimir_level
        self.summary_every = summary_every
        self.clock = clock
        self._seen: OrderedDict[ErrorKey, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def report(self, exc: BaseException, what: str | None = None) -> None:
        label = what or self.what
        if isinstance(exc, MimirError) and exc.fatal:
            if self.on_fatal is not None:
                self.on_fatal(exc)
            return
        if isinstance(exc, MimirError):
            self.log.log(self.mimir_level, "%s: %s", label, exc)
            return
        key = error_key(exc)
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                self._seen.move_to_end(key)
                seen.repeats += 1
            else:
                self._seen[key] = _Seen(label, f"{type(exc).__name__}: {exc}", now)
                if len(self._seen) > MAX_KEYS:
                    self._seen.popitem(last=False)
        if seen is None:
            self.log.log(self.level, "%s: %s: %s", label, type(exc).__name__, exc, exc_info=exc)
        self._summarise(now)

    def ok(self) -> None:
        """A pass went through: write the summaries that are due."""
        self._summarise(self.clock())

    def flush(self) -> None:
        """Write every pending summary (the loop ends)."""
        self._summarise(None)

    def _summarise(self, now: float | None) -> None:
        """Sum up the repeats of each error whose last line is ``summary_every`` old (all of
        them when ``now`` is None)."""
        due = now is None
        now = self.clock() if now is None else now
        lines = []
        with self._lock:
            for seen in self._seen.values():
                if seen.repeats and (due or now - seen.last_line >= self.summary_every):
                    lines.append((seen.label, seen.message, seen.repeats, now - seen.last_line))
                    seen.repeats, seen.last_line = 0, now
        for label, message, repeats, span in lines:
            self.log.log(
                self.level,
                "%s: %s repeated %d time%s in the last %.0f s (traceback logged at its first)",
                label,
                message,
                repeats,
                "" if repeats == 1 else "s",
                span,
            )
