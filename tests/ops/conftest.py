"""Helpers of the database operations' tests (``db``, ``retention``, scheduled operations)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))


def write_config(root: Path, settings, **extra) -> Path:
    """A config file for ``settings``' database (any backend), its logs and pipelines under
    ``root``; ``extra``: more keys per section."""
    data: dict = {
        "persistence": {
            "backend": settings.persistence.backend,
            "database_path": settings.persistence.database_path,
            "connection_string": settings.persistence.connection_string,
            "enable_vector_db": False,
        },
        "pipelines": {"directory": str(root / "pipelines"), "watch": False},
        "plugins": {"directories": [str(root / "plugins")]},
        "logging": {"executions_dir": settings.logging.executions_dir, "file_path": str(root / "logs" / "mimir.log")},
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def config_of(tmp_path: Path):
    """``config_of(settings, **extra)``: the path of a config file for those settings."""

    def make(settings, **extra) -> Path:
        return write_config(tmp_path / "site", settings, **extra)

    return make
