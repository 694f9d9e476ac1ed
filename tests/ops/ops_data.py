"""Realistic rows for the logical-copy tests: jobs in several time zones with ids that sort
differently under a locale's collation than by code point, pipelines, a few hundred executions
with steps and context JSON (unicode, nested, unsorted keys, floats), a running one, a pipeline
run outside any job, workers and queued runs. Written through the backend's own operations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from mimir_tui.persistence import JobExecutionRecord, PipelineConfig, RunRequest, ScheduledJob, Worker

T0 = datetime(2026, 3, 29, 0, 30, 0, 123456, tzinfo=UTC)  # a DST night in Europe
ZONES = ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]
# Upper case before lower case by code point, not in en_US; a non-ASCII id; a trailing space.
JOB_IDS = ["Zeta", "alpha", "Beta-2", "ünïcode-jöb", "b", "a b "]


def fill(backend: Any, executions: int = 240) -> dict[str, int]:
    """Put a realistic history into ``backend``; rows written per table."""
    for i, name in enumerate(["fetch", "Summarise", "ëxport-🚀"]):
        backend.save_pipeline(
            PipelineConfig(
                name=name,
                description=f"pipeline {i}: naïve café ✓" if i != 1 else None,
                config=json.dumps({"name": name, "steps": [{"plugin": "delay", "config": {"seconds": 0.5}}]}),
                created_at=T0 + timedelta(minutes=i),
                updated_at=T0 + timedelta(hours=i, microseconds=7),
                enabled=i != 2,
                source_path=f"/srv/pipelines/{name}.yaml",
                checksum="ab" * 32,
                load_error="bad step: ∅" if i == 2 else None,
            )
        )
    for i, job_id in enumerate(JOB_IDS):
        backend.save_job(
            ScheduledJob(
                id=job_id,
                name=f"Job {job_id} — nightly",
                pipeline=["fetch", "Summarise", "ëxport-🚀"][i % 3],
                cron_expr="30 2 * * *" if i % 2 else "*/5 * * * * 30",
                enabled=i != 3,
                next_run=T0 + timedelta(days=1, seconds=i) if i != 4 else None,
                last_run=T0 - timedelta(seconds=i * 61.5),
                last_result="success" if i % 2 else "failed: ☠ timeout",
                created_at=T0 - timedelta(days=30),
                updated_at=T0 - timedelta(days=1, microseconds=i),
                description="multi\nline\tdescription «ok»",
                timezone=ZONES[i % len(ZONES)],
                timeout_seconds=[None, 3600.123, 12.5, 0.25, 90.0, 7.0][i],
                max_retries=i % 3,
                retry_backoff_seconds=30.0 + i,
                misfire_policy=["skip", "once", "all"][i % 3],
                misfire_grace_seconds=60.0,
                misfire_cap=10 + i,
                max_concurrent=1 + i % 2,
                priority=i - 2,
                queue="default" if i % 2 else "gpu",
            )
        )
    for i in range(executions):
        job_id = JOB_IDS[i % len(JOB_IDS)] if i % 17 else None
        start = T0 + timedelta(minutes=5 * i, microseconds=i)
        running = i == executions - 1
        backend.save_execution(
            JobExecutionRecord(
                id=f"{i:04d}" + ("X" if i % 5 == 0 else "x") + f"{i:027x}",
                job_id=job_id,
                pipeline="fetch" if i % 2 else "ëxport-🚀",
                start_time=start,
                end_time=None if running else start + timedelta(seconds=i % 90, microseconds=999999),
                duration=None if running else (i % 90) * 1000,
                status="running" if running else ["success", "failed", "timed_out", "cancelled"][i % 4],
                error=None if i % 4 == 0 else f"step {i} failed: ошибка «{i}»",
                context={"z": i, "a": {"nested": [1, 2.5, None, True], "ключ": "значение"}, "emoji": "🙂"},
                steps=[
                    {
                        "step_name": f"step-{k}",
                        "plugin": "input.api" if k == 0 else "transform",
                        "status": "success",
                        "start_time": (start + timedelta(seconds=k)).isoformat(),
                        "output": {"rows": k * i, "ratio": k / 3, "text": "日本語"},
                    }
                    for k in range(3)
                ],
                triggered_by=["scheduler", "manual", "retry", "api"][i % 4],
                scheduled_for=start if job_id and i % 3 == 0 else None,
                attempt=1 + i % 2,
                worker_id=f"host-{i % 3}:{1000 + i % 3}",
                cancel_requested=i % 11 == 0,
                updated_at=start + timedelta(seconds=1),
            )
        )
    for i in range(3):
        backend.workers.register_worker(
            Worker(
                id=f"host-{i}:{1000 + i}",
                host=f"host-{i}.example",
                pid=1000 + i,
                version="0.6.0",
                started_at=T0 - timedelta(hours=i),
                heartbeat_at=T0 + timedelta(seconds=i, microseconds=1),
                status=["running", "stopped", "dead"][i],
                instance_key=None if i == 2 else f"boot-{i}",
                capacity=None if i == 2 else 4,
                running=None if i == 2 else i,
                queues="default,gpu" if i == 0 else None,
            )
        )
    for i in range(5):
        backend.runs.enqueue(
            RunRequest(
                id=f"q{i:031d}",
                job_id=JOB_IDS[i] if i != 4 else None,
                pipeline="fetch",
                priority=5 - i,
                available_at=T0 + timedelta(minutes=i),
                triggered_by="manual" if i % 2 else "retry",
                attempt=1 + i,
                scheduled_for=T0 if i == 1 else None,
                requested_by="opérateur" if i == 0 else None,
            )
        )
    return {"scheduled_jobs": len(JOB_IDS), "pipelines": 3, "job_executions": executions, "workers": 3, "run_queue": 5}
