"""The dashboard names the config keys set without effect (issue 10, item 8): its log goes to a
file, so it says so on screen too, once, at start."""

from __future__ import annotations

from pathlib import Path

from mimir_tui.config import load_settings
from mimir_tui.tui.app import MimirApp


async def test_the_dashboard_shows_the_keys_without_effect_once(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("persistence:\n  database_path: ./data/m.db\nscheduler:\n  max_jobs: 10\n")
    settings = load_settings(config, environ={})
    settings.pipelines.watch = False
    app = MimirApp(settings)
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = [n.message for n in app._notifications if "without effect" in n.message]
    assert shown == [settings.no_effect_notice()]
    assert "scheduler.max_jobs (the original's; scheduler.max_concurrency limits the runs at once)" in shown[0]
