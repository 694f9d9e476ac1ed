"""Sample jobs, pipelines and runs for ``mimir-tui --demo`` and the screenshots.

The pipelines are the examples in the repository's ``pipelines/`` folder (an API to JSON, a file
transform, an HTML report, and ``live-checks``: three steps of a few seconds that fail about one
run in four), imported as they are; ``hello-report`` is a tiny built-in one that exists even when
the package is installed without the repository. Idempotent: what exists already is left as it is.
Given the same ``now`` (and folder of examples), the seed is the same to the byte: the
dashboard's snapshot tests and screenshots stand on it (:mod:`.tui.stage`).

The live jobs run ``live-checks`` every minute or two in their zones: the dashboard's in-process
scheduler fires them, and :func:`start_demo` queues one run at once, so a newcomer watches a run
go step by step within seconds of the start.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .constants import Status
from .errors import BadInput, NotFound
from .persistence import JobExecutionRecord, PersistenceBackend, PipelineConfig, StepRecord, utcnow

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "pipelines"

DEMO_PIPELINES: dict[str, dict[str, Any]] = {
    "hello-report": {
        "name": "hello-report",
        "description": "Writes a small HTML report",
        "steps": [{"name": "report", "plugin": "Output.html", "config": {"title": "Hello"}, "output": "html"}],
    },
}

# (job id, name, pipeline, cron, enabled)
DEMO_JOBS = [
    ("demo-hourly-report", "Hourly report", "orders-report", "0 * * * *", True),
    ("demo-nightly-report", "Nightly totals", "orders-by-region", "30 2 * * *", True),
    ("demo-api-export", "API export", "api-to-json", "*/15 * * * *", False),
    ("demo-hello", "Hello report", "hello-report", "0 9 * * 1-5", True),
]


#: Jobs the dashboard's scheduler runs while you watch: (job id, name, cron, zone); their
#: pipeline is :data:`LIVE_PIPELINE` (created only when it was imported).
LIVE_PIPELINE = "live-checks"
LIVE_JOBS = [
    ("demo-live-checks", "Live checks", "* * * * *", "Europe/Berlin"),
    ("demo-live-tokyo", "Live checks (Tokyo)", "*/2 * * * *", "Asia/Tokyo"),
]


def example_pipelines(folder: Path = EXAMPLES_DIR) -> list:
    """The example pipelines in ``folder`` (valid ones only), as specs."""
    if not folder.is_dir():
        return []
    from .pipelines.registry import default_registry
    from .pipelines.spec import validate_files

    reports = validate_files([folder], default_registry())
    return [spec for report in reports if report.ok for spec in report.pipelines]


def steps_of(backend: PersistenceBackend, pipeline: str) -> list[tuple[str, str]]:
    try:
        config = json.loads(backend.get_pipeline(pipeline).config)
        return [(s["name"], s["plugin"]) for s in config.get("steps", [])]
    except Exception:
        return [("report", "Output.html")]


def run_id(job_id: str, start: datetime) -> str:
    """A demo run's id, made from its job and start as :func:`~.persistence.models.new_id`
    makes one from the clock (its start in ms, then 80 bits): it sorts by start time, and the
    same seed gives the same ids."""
    tail = hashlib.sha256(f"{job_id}@{start.isoformat()}".encode()).hexdigest()[:20]
    return f"{int(start.timestamp() * 1000):012x}{tail}"


def seed_demo(backend: PersistenceBackend, *, now: datetime | None = None, examples: Path = EXAMPLES_DIR) -> None:
    """Idempotent: what exists already is left as it is. The history ends at ``now`` (default:
    this machine's clock); the pipelines are the valid files of ``examples``, each stored with
    its path as given (a relative folder gives relative paths)."""
    from .pipelines.store import save_spec
    from .scheduler.jobs import create_job

    have_pipelines = {p.name for p in backend.list_pipelines()}
    for spec in example_pipelines(examples):
        if spec.name not in have_pipelines:
            save_spec(backend, spec, source_path=spec.source_path)
    for name, spec in DEMO_PIPELINES.items():
        if name not in have_pipelines:
            backend.save_pipeline(PipelineConfig(name=name, description=spec["description"], config=json.dumps(spec)))
    have_jobs = {j.id for j in backend.list_jobs()}
    now = now or utcnow()
    for job_id, name, pipeline, cron, enabled in DEMO_JOBS:
        if job_id in have_jobs:
            continue
        # Through the jobs' one way in, which stores its next run (as `jobs add` does). The
        # examples' pipelines are missing when the package is installed without the repository.
        create_job(
            backend,
            name=name,
            pipeline=pipeline,
            cron_expr=cron,
            job_id=job_id,
            enabled=enabled,
            require_pipeline=False,
            now=now,
        )
        if not enabled:
            continue
        steps = steps_of(backend, pipeline)
        for hours in range(1, 6):
            start = now - timedelta(hours=hours)
            failed = hours == 3
            records = []
            at = start
            for index, (step_name, plugin) in enumerate(steps, 1):
                fails_here = failed and index == min(2, len(steps))
                records.append(
                    StepRecord(
                        step_name=step_name,
                        plugin=plugin,
                        start_time=at,
                        end_time=at + timedelta(milliseconds=300),
                        duration=300,
                        status="failed" if fails_here else "success",
                        error="demo failure" if fails_here else None,
                        output=None if fails_here else {"rows": 40 * index + hours},
                    ).to_json()
                )
                at += timedelta(milliseconds=300)
                if fails_here:
                    break
            failing = records[-1]["step_name"] if failed else None
            backend.save_execution(
                JobExecutionRecord(
                    id=run_id(job_id, start),
                    job_id=job_id,
                    pipeline=pipeline,
                    start_time=start,
                    end_time=at,
                    duration=int((at - start).total_seconds() * 1000),
                    status="failed" if failed else "success",
                    error=f"step {len(records)} ({failing}) failed: demo failure" if failed else None,
                    triggered_by="scheduler",
                    context={"rows": 40 * len(records) + hours},
                    steps=records,
                )
            )
    if LIVE_PIPELINE in {p.name for p in backend.list_pipelines()}:
        for job_id, name, cron, zone in LIVE_JOBS:
            if job_id not in have_jobs:
                create_job(
                    backend, name=name, pipeline=LIVE_PIPELINE, cron_expr=cron, timezone=zone, job_id=job_id, now=now
                )


def start_demo(backend: PersistenceBackend) -> str | None:
    """:func:`seed_demo`, then a run of the first live job queued now (unless one is queued or
    running already), for the dashboard's scheduler to take at once; its execution id.

    Only into a SQLite file: on a PostgreSQL or MariaDB database every instance sharing it would
    run the demo's jobs every minute (refused in one line, nothing written)."""
    if backend.dialect != "sqlite":
        raise BadInput(
            f"--demo writes sample jobs that run every minute: not into the shared {backend.dialect} "
            "database; run it on a SQLite file (MIMIR_BACKEND=sqlite MIMIR_DATABASE_PATH=./data/demo.db)"
        )
    seed_demo(backend)
    job_id = LIVE_JOBS[0][0]
    try:
        backend.get_job(job_id)
    except NotFound:
        return None  # installed without the examples: no live pipeline
    if backend.executions.page(job_id, 1, status=[Status.queued.value, Status.running.value]):
        return None
    from .scheduler.jobs import run_job_now

    return run_job_now(backend, job_id).execution_id
