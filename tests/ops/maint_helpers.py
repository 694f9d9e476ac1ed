"""Helpers of the database upkeep tests (``db``, ``retention``): a config file for a backend's
settings. (A module of its own, not a conftest: tests/ops's other tests import the root
conftest by name.)"""

from __future__ import annotations

from pathlib import Path

import yaml


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


def site_config(tmp_path: Path, settings, **extra) -> Path:
    """The path of a config file for ``settings`` under ``tmp_path``."""
    return write_config(tmp_path / "site", settings, **extra)


def fire_on_three_instances(settings, start, advance) -> None:
    """Three schedulers, each with a backend of its own on ``settings``' database and one fake
    clock at ``start``: registered, then the clock moved on by ``advance`` and a tick of each at
    once (threads), then one more tick each at the same instant. What a system job's
    once-across-instances tests stand on."""
    import threading

    from mimir_tui.persistence import open_backend
    from mimir_tui.scheduler.clock import FakeClock
    from mimir_tui.scheduler.core import Scheduler

    stores = [open_backend(settings) for _ in range(3)]
    clock = FakeClock(start)
    try:
        instances = [Scheduler(s, settings, clock=clock, inline=True, worker_id=f"i{n}") for n, s in enumerate(stores)]
        for instance in instances:
            instance.register()
        clock.set(start + advance)
        ticks = [threading.Thread(target=i.tick) for i in instances]
        for t in ticks:
            t.start()
        for t in ticks:
            t.join()
        for instance in instances:  # later ticks at the same instant fire nothing more
            instance.tick()
    finally:
        for s in stores:
            s.close()
