"""What the benchmark scripts share: a report of figures against targets, and percentiles.

The scripts run as ``python bench/NAME.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field


@dataclass
class Report:
    """Lines printed as they come; those kept in ``lines`` are repeated in the summary, and a
    missed target counts in ``failed`` (the exit status)."""

    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def info(self, line: str) -> None:
        self.lines.append(line)
        self.say(line)

    def target(self, text: str, value: float, limit: float, unit: str = "") -> bool:
        """``text (target <= limit unit) PASS``, or ``MISS`` counted in :attr:`failed`, kept for
        the summary; whether ``value`` met it. ``unit`` is written right after the limit (give
        ``" ms"`` for a space, ``"x"`` for a ratio)."""
        ok = value <= limit
        self.failed += not ok
        self.info(f"{text} (target <= {limit:.4g}{unit}) {'PASS' if ok else 'MISS'}")
        return ok

    def summary(self, started: float) -> int:
        """The kept lines (not the indented details) once more, the verdict, the exit status."""
        self.say(f"\n== summary ({time.perf_counter() - started:.0f} s)")
        for line in self.lines:
            if not line.startswith("  "):
                print(line)
        print("ALL TARGETS MET" if not self.failed else f"{self.failed} TARGET(S) MISSED")
        return 0 if not self.failed else 1


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``samples``, nearest rank; NaN for none."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def child_env() -> dict[str, str]:
    """The environment of a measured process: bytecode written and read, as in an installed
    Mimir (this workplace sets ``PYTHONDONTWRITEBYTECODE``, which made every start compile
    Mimir's modules)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
