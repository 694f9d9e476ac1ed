"""The ``Mimir.backup`` step: a pipeline run makes a verified archive (what the scheduled
backups' system job runs), and a bad ``backup_schedule`` is refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimir_tui.config import load_settings
from mimir_tui.errors import ConfigError
from mimir_tui.ops import archive as arc
from mimir_tui.persistence import open_backend
from mimir_tui.pipelines.registry import StepContext, default_registry


def test_the_backup_step_writes_a_verified_archive(sqlite_settings) -> None:
    open_backend(sqlite_settings).close()
    plugin = default_registry(sqlite_settings).get("Mimir.backup")
    assert plugin is not None
    lines: list[str] = []
    ctx = StepContext(
        execution_id="e1",
        pipeline="mimir-backup",
        step_name="backup",
        context={},
        settings=sqlite_settings,
        log=lambda level, message: lines.append(message),
    )
    result = plugin().execute(plugin.Config(), ctx)
    assert result["verified"] is True and result["row_counts"]["scheduled_jobs"] == 0
    assert arc.archives(Path(sqlite_settings.persistence.backup_path))[0].name == result["archive"]
    assert lines and lines[0].startswith(f"backup {result['archive']}")


def test_a_bad_backup_schedule_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("persistence:\n  backup_schedule: '61 * * * *'\n")
    with pytest.raises(ConfigError, match=r"persistence\.backup_schedule"):
        load_settings(str(config), environ={})


def test_scheduled_backups_fire_once_across_three_instances(backend, backend_settings) -> None:
    """``backup_enabled``: the system job ``mimir-backup`` fires at ``backup_schedule`` once,
    however many schedulers share the database, and the backup is a run in the history."""
    import shutil
    from datetime import UTC, datetime, timedelta

    from maint_helpers import fire_on_three_instances

    from mimir_tui.ops.scheduled import upsert_scheduled_ops

    settings = backend_settings
    if settings.persistence.backend != "sqlite" and not shutil.which("pg_dump"):
        pytest.skip("no dump tool")
    settings.scheduler.timezone = "UTC"
    settings.persistence.backup_enabled = True
    settings.persistence.backup_schedule = "0 2 * * *"
    before = datetime(2026, 1, 6, 1, 59, 45, tzinfo=UTC)
    assert "mimir-backup: added" in upsert_scheduled_ops(backend, settings, now=before)
    assert backend.get_job("mimir-backup").enabled
    fire_on_three_instances(settings, before, timedelta(seconds=16))
    runs = backend.list_executions("mimir-backup", 10)
    assert len(runs) == 1, [(r.worker_id, r.status) for r in runs]
    assert runs[0].status == "success", runs[0].error
    made = arc.archives(Path(settings.persistence.backup_path))
    assert [p.name for p in made] == [runs[0].context["backup"]["archive"]]
    assert runs[0].context["backup"]["verified"] is True
