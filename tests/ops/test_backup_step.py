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
