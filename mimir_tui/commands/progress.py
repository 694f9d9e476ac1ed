"""Progress of a long copy on stderr: a bar redrawn in place when stderr is a terminal, a line now
and then otherwise (logs, pipes, CI). Standard library only (cheap to import)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30


class ProgressReport:
    """``start(counts)`` with the rows per table, then ``report(table, done, total)`` after each
    batch (the :data:`mimir_tui.ops.tables.Progress` signature), then ``finish()``.

    On a terminal: ``label [#######-------]  45%  1,200/2,650 rows  job_executions`` redrawn in
    place at most ten times a second. Otherwise: a line when a table is done, and one every
    ``every`` seconds within a long table."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.every = every
        self.clock = clock
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.total = 0
        self._finished = 0  # rows of the tables done
        self._table = ""
        self._last = float("-inf")
        self._drawn = False

    def start(self, counts: dict[str, int]) -> None:
        self.total = sum(counts.values())
        self._last = self.clock()
        if not self.tty:
            self._line(f"{self.total} rows in {len(counts)} tables")

    def report(self, table: str, done: int, total: int) -> None:
        if table != self._table:
            self._table = table
        overall = self._finished + done
        ended = done >= total >= 0
        now = self.clock()
        if self.tty:
            if ended or now - self._last >= 0.1:
                self._draw(overall, table)
                self._last = now
        elif ended or now - self._last >= self.every:
            self._line(f"{table}: {done}/{total} rows ({self._percent(overall)}% of all)")
            self._last = now
        if ended:
            self._finished += done

    def finish(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _percent(self, overall: int) -> int:
        return 100 if not self.total else min(100, overall * 100 // self.total)

    def _draw(self, overall: int, table: str) -> None:
        filled = BAR_WIDTH if not self.total else min(BAR_WIDTH, overall * BAR_WIDTH // self.total)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"{self.label} [{bar}] {self._percent(overall):3d}%  {overall:,}/{self.total:,} rows  {table}"
        self.stream.write("\r" + text.ljust(100))
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()
