"""The dashboard's health pane and pipelines watcher, over a real SQLite file."""

from __future__ import annotations

import time

from mimir_tui.config import load_settings
from mimir_tui.demo import seed_demo
from mimir_tui.persistence import open_backend
from mimir_tui.tui.app import MimirApp


async def test_dashboard_shows_health_of_real_store(tmp_path):
    (tmp_path / "config.yaml").write_text("persistence:\n  database_path: ./data/mimir.db\n")
    settings = load_settings(tmp_path / "config.yaml")
    with open_backend(settings) as backend:
        seed_demo(backend)
        expected_runs = backend.stats()["row_counts"]["job_executions"]
    app = MimirApp(settings, theme_name="mimir")
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = str(app.query_one("#health-summary").render())
        assert "healthy (sqlite)" in status
        table = app.query_one("#health-table")
        cells = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        assert cells["rows in job_executions"] == str(expected_runs)
        assert app.theme == "mimir"
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.press("q")


async def test_dashboard_reports_a_broken_store_without_crashing(tmp_path):
    bogus = tmp_path / "not-a-db.db"
    bogus.write_bytes(b"this is not sqlite at all" * 10)
    (tmp_path / "config.yaml").write_text(f"persistence:\n  database_path: {bogus}\n")
    settings = load_settings(tmp_path / "config.yaml")
    app = MimirApp(settings)
    async with app.run_test() as pilot:
        # Not workers.wait_for_complete(): it raises for the pane's read that failed, the very
        # failure the pane shows (a race: only while that worker is still listed).
        deadline = time.monotonic() + 10
        while "unhealthy" not in str(app.query_one("#health-summary").render()):
            assert time.monotonic() < deadline, str(app.query_one("#health-summary").render())
            await pilot.pause(0.05)
    assert bogus.read_bytes() == b"this is not sqlite at all" * 10


async def test_dashboard_watches_the_pipelines_folder(tmp_path):
    """A YAML file dropped into pipelines.directory while the dashboard runs reaches the
    database (the watcher runs in its own thread), and a bad one is reported, not loaded."""
    import asyncio
    import time

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (tmp_path / "config.yaml").write_text(
        "persistence:\n  database_path: ./data/mimir.db\npipelines:\n  directory: ./pipelines\n"
    )
    settings = load_settings(tmp_path / "config.yaml")
    app = MimirApp(settings)
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        deadline = time.monotonic() + 10
        while (app._watcher is None or not app._watcher.ready.is_set()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        (pipelines / "hello.yaml").write_text(
            "name: hello\nsteps:\n  - name: wait\n    plugin: Data_Processing.delay\n    config: {seconds: 0}\n"
            "    output: waited\n"
        )
        with open_backend(settings) as backend:
            deadline = time.monotonic() + 5
            names: list[str] = []
            while time.monotonic() < deadline:
                names = [p.name for p in backend.list_pipelines()]
                if "hello" in names:
                    break
                await asyncio.sleep(0.1)
            assert "hello" in names
        await pilot.pause()
        assert any("pipelines reloaded: hello" in str(n.message) for n in app._notifications)
    assert app._watcher is not None and not app._watcher.running
