"""The Backup screen driven by Pilot over a real SQLite store: create (one operation at a time),
verify, restore after a confirmation that says what it replaces; the health pane's last backup."""

from __future__ import annotations

import sqlite3
import threading

from test_execution import _until
from textual.widgets import DataTable, Static

from mimir_tui.persistence import ScheduledJob, open_backend
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.screens.backup import BackupScreen
from mimir_tui.tui.widgets.confirm import ConfirmScreen


def _status(app) -> str:
    return str(app.screen.query_one("#backup-status", Static).render())


def _archives(app) -> list[str]:
    return [str(k.value) for k in app.screen.query_one("#backup-archives", DataTable).rows]


def _jobs(settings) -> list[str]:
    conn = sqlite3.connect(settings.persistence.database_path)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM scheduled_jobs ORDER BY name")]
    finally:
        conn.close()


async def test_create_verify_and_restore_from_the_screen(sqlite_settings) -> None:
    with open_backend(sqlite_settings) as backend:
        backend.save_job(ScheduledJob(name="nightly", pipeline="etl", cron_expr="0 2 * * *"))
    app = MimirApp(sqlite_settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("b")
        assert await _until(pilot, lambda: isinstance(app.screen, BackupScreen) and "0 archive" in _status(app))
        gate = threading.Event()
        app.screen.run("holding", lambda: gate.wait(10), lambda _: None)  # an operation in progress
        await pilot.press("c")
        assert "holding is running: one operation at a time" in _status(app)
        gate.set()
        assert await _until(pilot, lambda: app.screen._operation is None)
        assert _archives(app) == []
        await pilot.press("c")
        assert await _until(pilot, lambda: "created" in _status(app) and len(_archives(app)) == 1), _status(app)
        assert "verified" in _status(app)
        cells = [str(c) for c in app.screen.query_one("#backup-archives", DataTable).get_row(_archives(app)[0])]
        assert cells[3:] == ["1", "0", "ok"]

        await pilot.press("V")
        assert await _until(pilot, lambda: "ok, every checksum" in _status(app))

        with open_backend(sqlite_settings) as backend:
            backend.save_job(ScheduledJob(name="later", pipeline="etl", cron_expr="0 3 * * *"))
        await pilot.press("R")
        assert await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = str(app.screen.query_one("#confirm-question").render())
        assert "replace every row of sqlite:///" in question and "scheduled_jobs 2" in question
        await pilot.press("n")
        assert await _until(pilot, lambda: "cancelled" in _status(app))
        assert _jobs(sqlite_settings) == ["later", "nightly"]

        await pilot.press("R")
        assert await _until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        assert await _until(pilot, lambda: "restored" in _status(app))
        assert _jobs(sqlite_settings) == ["nightly"]
        await pilot.press("escape")
        assert await _until(pilot, lambda: not isinstance(app.screen, BackupScreen))
        await pilot.press("r")  # the panes read now (they did not while the Backup screen was in front)
        health = app.screen.query_one("#health-table", DataTable)

        def last_backup() -> str:
            keys = [str(k.value) for k in health.rows]
            return str(health.get_row("last_backup")[1]) if "last_backup" in keys else ""

        assert await _until(pilot, lambda: "verified" in last_backup()), last_backup()
