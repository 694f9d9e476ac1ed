"""Per-operation counters and latency percentiles, cheap enough for every call."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of sorted samples in seconds, in milliseconds; None without samples."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000, 3)


@dataclass
class OpStats:
    count: int = 0
    failures: int = 0
    total_s: float = 0.0
    samples: deque = field(default_factory=lambda: deque(maxlen=2048))


class OperationMetrics:
    """Counts, failures and p50/p95 latency (over the last 2048 calls) per operation name."""

    def __init__(self) -> None:
        self._ops: dict[str, OpStats] = {}
        self._lock = threading.Lock()

    def record(self, op: str, seconds: float, ok: bool) -> None:
        with self._lock:
            stats = self._ops.get(op)
            if stats is None:
                stats = self._ops[op] = OpStats()
            stats.count += 1
            stats.total_s += seconds
            stats.samples.append(seconds)
            if not ok:
                stats.failures += 1

    def snapshot(self) -> dict[str, dict[str, float | int | None]]:
        """``{op: {count, failures, p50_ms, p95_ms, mean_ms}}``, sorted by name."""
        with self._lock:
            ops = {name: (s.count, s.failures, s.total_s, list(s.samples)) for name, s in self._ops.items()}
        out: dict[str, dict[str, float | int | None]] = {}
        for name in sorted(ops):
            count, failures, total, samples = ops[name]
            samples.sort()
            out[name] = {
                "count": count,
                "failures": failures,
                "p50_ms": _percentile_ms(samples, 0.50),
                "p95_ms": _percentile_ms(samples, 0.95),
                "mean_ms": round(total / count * 1000, 3) if count else None,
            }
        return out
