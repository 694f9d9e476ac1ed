"""Sample jobs, pipelines and runs for ``mimir-tui --demo`` and the screenshots."""

from __future__ import annotations

import json
from datetime import timedelta

from .persistence import JobExecutionRecord, PersistenceBackend, PipelineConfig, ScheduledJob, utcnow

DEMO_PIPELINES = {
    "hello-report": {
        "name": "hello-report",
        "description": "Writes a small HTML report",
        "steps": [{"name": "report", "plugin": "Output.html", "config": {"title": "Hello"}, "output": "html"}],
    },
}

DEMO_JOBS = [
    ("demo-hourly-report", "Hourly report", "hello-report", "0 * * * *"),
    ("demo-nightly-report", "Nightly report", "hello-report", "30 2 * * *"),
]


def seed_demo(backend: PersistenceBackend) -> None:
    """Idempotent: what exists already is left as it is."""
    have_pipelines = {p.name for p in backend.list_pipelines()}
    for name, spec in DEMO_PIPELINES.items():
        if name not in have_pipelines:
            backend.save_pipeline(
                PipelineConfig(name=name, description=spec["description"], config=json.dumps(spec))
            )
    have_jobs = {j.id for j in backend.list_jobs()}
    now = utcnow()
    for job_id, name, pipeline, cron in DEMO_JOBS:
        if job_id in have_jobs:
            continue
        backend.save_job(ScheduledJob(id=job_id, name=name, pipeline=pipeline, cron_expr=cron))
        for hours in range(1, 6):
            start = now - timedelta(hours=hours)
            backend.save_execution(
                JobExecutionRecord(
                    job_id=job_id, pipeline=pipeline, start_time=start, end_time=start + timedelta(seconds=2),
                    duration=2000, status="success" if hours != 3 else "failed",
                    error=None if hours != 3 else "step 1 (report) failed: demo failure",
                    triggered_by="scheduler", context={}, steps=[],
                )
            )
