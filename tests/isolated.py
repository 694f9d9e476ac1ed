"""Settings for a test: Mimir's defaults with every path under the test's folder. A module of its
own, not the root conftest's, so that tests import it by one name whatever other conftest
files pytest has loaded as ``conftest``."""

from __future__ import annotations

from pathlib import Path

from mimir_tui.config import Settings, load_settings


def make_settings(tmp_path: Path) -> Settings:
    """Defaults (no config file), with every path under ``tmp_path``."""
    settings = load_settings(use_search=False, environ={})
    data = tmp_path / "data"
    settings.persistence.database_path = str(data / "mimir.db")
    settings.persistence.vector_db_path = str(data / "chromem.db")
    settings.persistence.backup_path = str(tmp_path / "backups")
    settings.pipelines.directory = str(tmp_path / "pipelines")
    settings.plugins.directories = [str(tmp_path / "plugins")]
    settings.logging.file_path = str(tmp_path / "logs" / "mimir.log")
    settings.logging.executions_dir = str(tmp_path / "logs" / "executions")
    return settings
