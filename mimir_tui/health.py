"""The health of the store: a timed round trip, size and row counts (CLI and dashboard)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .errors import DatabaseCorrupt, MimirError


def check_health(
    backend,
    *,
    stale_after: float = 30.0,
    integrity: bool = True,
    now: datetime | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """``{status, backend, database, latency_ms, integrity, size_bytes, row_counts,
    schema_version, instances}``; ``instances``: the live scheduler instances (heartbeat within
    ``stale_after`` seconds) and their load. A damaged database (SQLite's quick check, or any
    operation of this process that met the damage) is unhealthy, its error saying what to do.
    ``integrity=False`` leaves the quick check (up to 2 s on a large SQLite file) out.
    Heartbeat ages are judged at ``now`` (default: the database's clock); the latency is
    measured with ``timer`` (both fixed in the dashboard's snapshots)."""
    report: dict[str, Any] = {"backend": backend.backend, "database": backend.url}
    try:
        latency = backend.health(timer)
        verdict = backend.integrity() if integrity else "not checked yet"
        if verdict is not None:
            report["integrity"] = verdict
        report.update(backend.stats())
        now = now or backend.database_now()
        live = backend.workers.live_workers(stale_after=stale_after, now=now)
        report["instances"] = [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "version": w.version,
                "status": w.status,
                "heartbeat_age_s": round((now - w.heartbeat_at).total_seconds(), 1),
                "run_slots": w.capacity,
                "runs": w.running,
                "queues": sorted(w.serves()),
            }
            for w in live
        ]
        # Each queue with enabled jobs or queued runs, and how many running instances serve it
        # (0: nothing runs them until an instance serving the queue starts).
        queues: dict[str, dict[str, int]] = {}

        def entry(name: str) -> dict[str, int]:
            return queues.setdefault(name, {"jobs": 0, "queued": 0, "instances": 0})

        for name, count in backend.jobs.counts_by_queue().items():
            entry(name)["jobs"] = count
        for request in backend.runs.list_queue():
            entry(request.queue)["queued"] += 1
        for w in live:
            if w.status == "running":  # a stopping instance takes no more work
                for name in w.serves():
                    entry(name)["instances"] += 1
        report["queues"] = dict(sorted(queues.items()))
        if backend.corruption:  # met earlier by this process (the dashboard's), on a page not read here
            raise DatabaseCorrupt(backend.corruption)
    except MimirError as exc:
        report.update(status="unhealthy", error=str(exc))
        return report
    report["status"] = "healthy"
    report["latency_ms"] = round(latency * 1000, 3)
    return report
