"""``mimir-tui --demo``: runs happen while you watch. The demo seeded into a real SQLite file, the
dashboard with its in-process scheduler (as ``mimir-tui`` runs it; the panes read every 0.5 s), and a run that appears
in the Executions pane, goes step by step and finishes within seconds."""

from __future__ import annotations

import re
import time

from test_dashboard_scheduler import _until
from test_panes import _row, _settings

from mimir_tui.constants import FINISHED
from mimir_tui.demo import LIVE_JOBS, LIVE_PIPELINE, seed_demo, start_demo
from mimir_tui.persistence import open_backend
from mimir_tui.tui.app import MimirApp


def _counts(backend) -> tuple[int, int, int]:
    return len(backend.list_pipelines()), len(backend.list_jobs()), len(backend.list_executions(limit=10_000))


def _shown(app, run: str) -> list[str] | None:
    table = app.query_one("#executions-table")
    return _row(app, "executions", run) if run in {str(k.value) for k in table.rows} else None


async def test_the_demo_runs_a_live_job_at_once_and_the_executions_pane_shows_it_go(tmp_path):
    settings = _settings(tmp_path, "ui:\n  refresh_interval: 0.5\n")  # the panes read often: seen sooner
    with open_backend(settings) as backend:
        run = start_demo(backend)
        assert run is not None
        counts = _counts(backend)
        assert start_demo(backend) is None  # reused: the run queued is still there, no second one
        seed_demo(backend)
        assert _counts(backend) == counts  # reused: nothing written twice
        for job_id, _, cron, zone in LIVE_JOBS:
            job = backend.get_job(job_id)
            assert (job.pipeline, job.cron_expr, job.timezone, job.enabled) == (LIVE_PIPELINE, cron, zone, True)
        assert backend.get_execution(run).status == "queued"
    assert settings.ui.run_scheduler  # what `mimir-tui --demo` runs
    started = time.monotonic()
    app = MimirApp(settings, scheduler=settings.ui.run_scheduler)
    async with app.run_test(size=(120, 40)):
        seen: list[list[str]] = []

        def step() -> bool:
            row = _shown(app, run)
            if row is not None and (not seen or seen[-1] != row):
                seen.append(row)
            return row is not None and row[0] in FINISHED

        await _until(step, 14)
        with open_backend(settings) as backend:
            record = backend.get_execution(run)
    assert time.monotonic() - started < 15
    running = [row for row in seen if row[0] == "running"]
    # step k of 3 as the run goes (0/3 when read between its claim and its first step), with the
    # bar and the current step's name once a step runs
    assert running and all(re.fullmatch(r"(\S+ )?[0-3]/3( .+)?", row[3]) for row in running), seen
    assert any(row[3].split()[-1] in ("readings", "sample", "Publish") for row in running), seen
    assert seen[-1][0] == record.status and record.status in ("success", "failed")
    assert record.worker_id and record.triggered_by == "manual" and record.job_id == LIVE_JOBS[0][0]
    assert len(record.steps) == (3 if record.status == "success" else 2)
