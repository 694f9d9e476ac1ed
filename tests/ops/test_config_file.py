"""Saving keys into the config file keeps its comments, key order and mode (issue 13, item 7:
the Retention screen's policy)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mimir_tui.config import load_settings
from mimir_tui.errors import BadInput, ConfigError
from mimir_tui.ops.config_file import set_keys
from mimir_tui.ops.retention import save_policy
from mimir_tui.persistence import open_backend

ORIGINAL = """\
# Mimir at the plant: keep this header.
persistence:
  backend: "sqlite"            # quoted, and this comment stays
  database_path: ./data/mimir.db
  retention_days: 30           # days of history

  busy_timeout_ms: 4000
# between sections
scheduler:
  timezone: "Europe/Berlin"    # the plant's zone
"""


def test_set_keys_keeps_comments_order_quotes_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "site" / "config.yaml"
    path.parent.mkdir()
    path.write_text(ORIGINAL)
    os.chmod(path, 0o640)
    set_keys(path, {"persistence.retention_days": 7, "persistence.retention_keep_last": 5})
    text = path.read_text()
    assert text == ORIGINAL.replace("retention_days: 30 ", "retention_days: 7  ").replace(
        "  busy_timeout_ms: 4000\n", "  busy_timeout_ms: 4000\n  retention_keep_last: 5\n"
    ), text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    settings = load_settings(path, use_search=False, environ={})
    assert settings.persistence.retention_days == 7 and settings.persistence.retention_keep_last == 5
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left


def test_an_invalid_result_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "site" / "config.yaml"
    path.parent.mkdir()
    path.write_text(ORIGINAL)
    with pytest.raises(ConfigError, match=f"{path}.*retention_days"):
        set_keys(path, {"persistence.retention_days": -3})
    with pytest.raises(ConfigError, match="retention_schedule"):
        set_keys(path, {"persistence.retention_schedule": "99 * * * *"})
    assert path.read_text() == ORIGINAL
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]


def test_save_policy_writes_the_file_the_settings_and_the_job(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ORIGINAL)
    settings = load_settings(path, use_search=False, environ={})
    with open_backend(settings) as store:
        changed = save_policy(store, settings, days=14, keep_last=3, schedule="0  4 * * *")
        assert changed == ["mimir-retention: added", "mimir-backup: added"]  # the backup job: off
        job = store.get_job("mimir-retention")
        assert job.cron_expr == "0 4 * * *" and job.timezone == "Europe/Berlin" and job.enabled
        with pytest.raises(BadInput):
            save_policy(store, settings, days=-1, keep_last=0, schedule="0 4 * * *")
    again = load_settings(path, use_search=False, environ={})
    assert (again.persistence.retention_days, again.persistence.retention_keep_last) == (14, 3)
    assert again.persistence.retention_schedule == "0 4 * * *"
    assert settings.persistence.retention_days == 14
    assert "# days of history" in path.read_text() and "# the plant's zone" in path.read_text()
