"""The health of the store: a timed round trip, size and row counts (CLI and dashboard)."""

from __future__ import annotations

from typing import Any

from .errors import MimirError


def check_health(backend) -> dict[str, Any]:
    """``{status, backend, database, latency_ms, size_bytes, row_counts, schema_version}``."""
    report: dict[str, Any] = {"backend": backend.backend, "database": backend.url}
    try:
        latency = backend.health()
        report.update(backend.stats())
    except MimirError as exc:
        report.update(status="unhealthy", error=str(exc))
        return report
    report["status"] = "healthy"
    report["latency_ms"] = round(latency * 1000, 3)
    return report
