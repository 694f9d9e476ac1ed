"""The health of the store: a timed round trip, size and row counts (CLI and dashboard)."""

from __future__ import annotations

from typing import Any

from .errors import MimirError
from .scheduler.core import serves


def check_health(backend, *, stale_after: float = 30.0) -> dict[str, Any]:
    """``{status, backend, database, latency_ms, size_bytes, row_counts, schema_version,
    instances}``; ``instances``: the live scheduler instances (heartbeat within
    ``stale_after`` seconds) and their load."""
    report: dict[str, Any] = {"backend": backend.backend, "database": backend.url}
    try:
        latency = backend.health()
        report.update(backend.stats())
        now = backend.database_now()
        live = backend.live_workers(stale_after=stale_after, now=now)
        report["instances"] = [
            {
                "id": w["id"], "host": w["host"], "pid": w["pid"], "version": w["version"], "status": w["status"],
                "heartbeat_age_s": round((now - w["heartbeat_at"]).total_seconds(), 1),
                "run_slots": w.get("capacity"), "runs": w.get("running"), "queues": sorted(serves(w)),
            }
            for w in live
        ]
        # Each queue with enabled jobs, and how many live instances serve it (0: nothing runs
        # those jobs until an instance serving the queue starts).
        queues: dict[str, dict[str, int]] = {}
        for job in backend.list_jobs(enabled=True):
            queues.setdefault(job.queue, {"jobs": 0, "instances": 0})["jobs"] += 1
        for w in live:
            for name in serves(w):
                queues.setdefault(name, {"jobs": 0, "instances": 0})["instances"] += 1
        report["queues"] = dict(sorted(queues.items()))
    except MimirError as exc:
        report.update(status="unhealthy", error=str(exc))
        return report
    report["status"] = "healthy"
    report["latency_ms"] = round(latency * 1000, 3)
    return report
