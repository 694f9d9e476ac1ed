"""The Vacuum and Retention screens driven by Pilot over a real SQLite file (issue 13, items 6
and 7): what they show, a second run refused while one goes, the policy saved into the config
file with its comments, a dry run that changes nothing, and Apply after a confirmation."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from mimir_tui.config import load_settings
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend
from mimir_tui.persistence.types import utcnow
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.stage import settle

CONFIG = """\
# the plant's Mimir
persistence:
  database_path: ./data/mimir.db
  retention_days: 30     # a month of history
  enable_vector_db: false
logging:
  executions_dir: ./logs/executions
pipelines:
  watch: false
"""


def site(tmp_path: Path, old_runs: int = 0):
    path = tmp_path / "site" / "config.yaml"
    path.parent.mkdir()
    path.write_text(CONFIG)
    settings = load_settings(path, use_search=False, environ={})
    logs = Path(settings.logging.executions_dir)
    logs.mkdir(parents=True)
    with open_backend(settings) as store:
        store.save_job(ScheduledJob(id="nightly", name="nightly", pipeline="p", cron_expr="0 0 * * *"))
        for i in range(old_runs):
            run = JobExecutionRecord(
                job_id="nightly",
                pipeline="p",
                status="success",
                start_time=utcnow() - timedelta(days=40 + i),
                error="e" * 3000,
            )
            store.save_execution(run)
            (logs / f"{run.id}.log").write_text("line\n" * 20)
        store.save_execution(JobExecutionRecord(job_id="nightly", pipeline="p", status="success"))
    return path, settings


def status(app) -> str:
    return str(app.screen.query_one(".ops-status").render())


async def test_vacuum_screen_checks_vacuums_and_refuses_a_second_run(tmp_path):
    path, settings = site(tmp_path, old_runs=60)
    with open_backend(settings) as store:
        store.delete_old_executions(utcnow() - timedelta(days=1))  # free pages for VACUUM
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert app.screen.id == "vacuum"
        tables = app.screen.query_one("#vacuum-tables")
        assert str(tables.get_row("job_executions")[1]) == "1"
        figures = str(app.screen.query_one("#vacuum-figures").render())
        assert "free" in figures and "pages of 4096" in figures
        await pilot.press("c")
        await settle(pilot)
        assert "check (integrity_check, foreign_key_check): ok" in str(app.screen.query_one("#vacuum-result").render())
        # A writer holds the write gate: VACUUM waits for it, and a second run is refused meanwhile.
        gate = app.backend().db.gate
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with gate:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(5)
        await pilot.press("u")
        await pilot.pause(0.3)
        assert app.screen.running == "VACUUM"
        await pilot.press("a")
        await pilot.pause()
        assert "VACUUM is running" in status(app) and "ANALYZE refused: one at a time" in status(app)
        await pilot.pause(0.6)  # still said at the next ticks of the elapsed time
        assert "ANALYZE refused" in status(app)
        release.set()
        holder.join()
        await settle(pilot)
        result = str(app.screen.query_one("#vacuum-result").render())
        assert result.startswith("vacuum: size before") and "reclaimed" in result
        assert app.screen.last["reclaimed_bytes"] > 60 * 2000
        assert status(app).startswith("vacuum done in")
        await pilot.press("escape")
        assert app.screen.id == "dashboard"


async def test_retention_screen_dry_run_save_and_apply(tmp_path):
    path, settings = site(tmp_path, old_runs=5)
    app = MimirApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("k")
        await settle(pilot)
        assert app.screen.id == "retention"
        plan = app.screen.query_one("#retention-plan")
        assert [str(c) for c in plan.get_row_at(0)[:2]] == ["nightly", "5"]
        summary = str(app.screen.query_one("#retention-summary").render())
        assert "would delete 5 execution(s), 5 log file(s)" in summary
        with open_backend(settings) as store:
            assert store.stats()["row_counts"]["job_executions"] == 6  # the dry run changed nothing
        # keep the latest 3: a new dry run, from the form
        await pilot.press("e", "tab", "ctrl+u", "3", "enter")
        await settle(pilot)
        assert "would delete 3 execution(s)" in str(app.screen.query_one("#retention-summary").render())
        # a bad schedule is refused by name, nothing saved
        await pilot.press("tab", "ctrl+u", *"99 * * * *", "escape", "s")
        await settle(pilot)
        assert app.screen.query_one(".ops-status").has_class("-error")
        assert "99" in status(app) and "minute" in status(app), status(app)
        assert path.read_text() == CONFIG
        await pilot.press("e", "tab", "tab", "ctrl+u", *"15 4 * * *", "escape", "s")
        await settle(pilot)
        assert status(app).startswith(f"saved in {path}"), status(app)
        text = path.read_text()
        assert "retention_keep_last: 3" in text and "retention_schedule: 15 4 * * *" in text
        assert "# the plant's Mimir" in text and "retention_days: 30     # a month of history" in text
        with open_backend(settings) as store:
            job = store.get_job("mimir-retention")
            assert job.cron_expr == "15 4 * * *" and job.enabled
        await pilot.press("a")
        await settle(pilot)
        assert app.screen.id == "confirm"
        await pilot.press("y")
        await settle(pilot)
        assert status(app).startswith("deleted 3 execution(s), 3 log file(s)"), status(app)
        assert "would delete 0 execution(s)" in str(app.screen.query_one("#retention-summary").render())
    with open_backend(settings) as store:
        assert store.stats()["row_counts"]["job_executions"] == 3
    assert len(list(Path(settings.logging.executions_dir).iterdir())) == 2
