"""Retention as a use case: ``apply_retention`` deletes finished history older than
``persistence.retention_days`` and the stopped workers it no longer names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mimir_tui.ops.retention import apply_retention
from mimir_tui.persistence import JobExecutionRecord, Worker

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def execution(backend, status: str, days_ago: float) -> JobExecutionRecord:
    started = NOW - timedelta(days=days_ago)
    record = JobExecutionRecord(
        pipeline="p", start_time=started, status=status, triggered_by="manual", context={}, steps=[]
    )
    if status != "running":
        record.end_time, record.duration = started + timedelta(seconds=1), 1000
    backend.save_execution(record)
    return record


def worker(backend, worker_id: str, status: str, days_ago: float) -> None:
    seen = NOW - timedelta(days=days_ago)
    backend.workers.register_worker(
        Worker(id=worker_id, host="h", pid=1, version="t", started_at=seen, heartbeat_at=seen)
    )
    if status != "running":
        backend.workers.heartbeat(worker_id, now=seen, status=status)


def test_apply_retention(backend, backend_settings) -> None:
    backend_settings.persistence.retention_days = 10
    old = execution(backend, "success", 11)
    old_failed = execution(backend, "failed", 30)
    still_running = execution(backend, "running", 30)  # unfinished: never deleted
    recent = execution(backend, "success", 9)
    worker(backend, "gone", "stopped", 11)
    worker(backend, "recently-gone", "stopped", 9)
    worker(backend, "silent", "running", 11)  # live as far as its row says: the reaper's business

    assert apply_retention(backend, backend_settings, now=NOW)["deleted"] == 2
    left = {r.id for r in backend.list_executions(None, 100)}
    assert left == {still_running.id, recent.id}
    assert not left & {old.id, old_failed.id}
    assert {w.id for w in backend.workers.list_workers()} == {"recently-gone", "silent"}


def test_no_retention_days_keeps_everything(backend, backend_settings) -> None:
    backend_settings.persistence.retention_days = 0
    record = execution(backend, "success", 3650)
    worker(backend, "gone", "stopped", 3650)
    assert apply_retention(backend, backend_settings, now=NOW)["deleted"] == 0
    assert [r.id for r in backend.list_executions(None, 10)] == [record.id]
    assert [w.id for w in backend.workers.list_workers()] == ["gone"]
