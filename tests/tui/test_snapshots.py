"""Snapshot tests: each view of the dashboard at 80x24 and 120x40, over the stage's fixed data
and clock (:mod:`mimir_tui.tui.stage`, which the screenshots use too), compared with the SVGs in
``__snapshots__/test_snapshots/``. After a change to what the dashboard shows, look at the
report of the failures, then accept the new views:

    pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mimir_tui.demo import run_id
from mimir_tui.tui import stage
from mimir_tui.tui.stage import SHOTS, SIZES, build_stage, settle, stage_app


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stage, built once (its paths are relative: each test copies it to its own folder)."""
    folder = tmp_path_factory.mktemp("stage")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        build_stage()
    return folder


@pytest.fixture
def settings(built: Path, monkeypatch: pytest.MonkeyPatch):
    """The stage in this test's working directory; colours on whatever the terminal says."""
    shutil.copytree(built, Path.cwd(), dirs_exist_ok=True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return stage.stage_settings()


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("view", list(SHOTS))
def test_view(view, size, settings, snap_compare):
    assert snap_compare(stage_app(settings), terminal_size=size, run_before=SHOTS[view])


async def test_every_time_shown_is_the_stage_clocks(settings):
    """The fixed clock reaches each read (next runs, elapsed, ages, the editor's fires) and the
    still timer the latency: a read left on the database's clock would fail here, not only
    make a snapshot differ from one run to the next."""
    app = stage_app(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        jobs = app.query_one("#jobs-table")
        assert str(jobs.get_row("demo-hourly-report")[7]) == "in 18m"  # 09:41:30 -> 10:00 (whole minutes under an hour)
        assert str(jobs.get_row("demo-hello")[7]) == "in 23h18m"  # Monday 09:41:30 -> Tuesday 09:00
        running = app.query_one("#executions-table").get_row(run_id(stage.RUNNING_JOB, stage.RUNNING_START))
        assert [str(c) for c in running[4:7]] == ["1m35s", "1m ago", stage.INSTANCE]
        health = app.query_one("#health-table")
        assert str(health.get_row("latency_ms")[1]) == "0.0 ms"
        assert str(health.get_row(f"instance:{stage.INSTANCE}")[1]).startswith("running, beat 4s ago")
        assert str(health.get_row("database")[1]) == "sqlite:///data/mimir.db"
        await pilot.press("n")
        await settle(pilot)
        app.screen.query_one("#job-cron").value = "0 * * * *"
        await pilot.pause()
        fires = str(app.screen.query_one("#job-cron-help").render()).splitlines()
        assert fires[1].strip() == "Mon 2026-03-02 10:00:00 UTC"


def test_the_stage_built_twice_holds_the_same_runs(tmp_path, monkeypatch):
    """What the snapshots stand on: two stages built apart hold the same runs, ids and times
    included (ids made from the clock would differ)."""
    from mimir_tui.persistence import open_backend

    seen = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        with open_backend(build_stage()) as backend:
            runs = backend.list_executions(limit=1000)
            seen.append([(r.id, r.job_id, r.start_time, r.status, r.steps, r.worker_id) for r in runs])
    assert seen[0] == seen[1]
    assert len(seen[0]) == 16
