"""File modes (issue 9, item 13): ``logs/`` was 0755, ``mimir.log`` and ``logs/executions/*.log``
0644, readable by every user of the machine (the logs hold pipeline output). Like the database,
folders Mimir creates are 0700 and its files 0600, whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mimir_tui.logsetup import setup_logging
from mimir_tui.pipelines.spec import PipelineSpec

ONE_STEP = {"name": "p", "steps": [{"name": "a", "plugin": "Test.echo", "config": {"value": 1}}]}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0: only the modes Mimir asks for keep the files private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_run_creates_its_log_folders_0700_and_its_log_0600(runner, settings, open_umask):
    record = runner.run(PipelineSpec.from_config(ONE_STEP))
    log = runner.log_path(record.id)
    executions = Path(settings.logging.executions_dir)
    assert log.parent == executions and executions.parent.name == "logs"
    assert (mode(executions.parent), mode(executions), mode(log)) == (0o700, 0o700, 0o600)
    # a second run appends to a folder that exists: its log is 0600 too
    second = runner.log_path(runner.run(PipelineSpec.from_config(ONE_STEP)).id)
    assert mode(second) == 0o600


def test_the_service_log_and_its_rotations_are_0600(sqlite_settings, open_umask, restore_logging):
    cfg = sqlite_settings.logging
    cfg.output, cfg.max_size, cfg.max_backups = "file", 1, 2
    setup_logging(sqlite_settings, console=False)
    log = Path(cfg.file_path)
    assert (mode(log.parent), mode(log)) == (0o700, 0o600)
    line = "x" * 1000
    for _ in range(1200):  # past 1 MB: one rotation
        logging.getLogger("mimir.test").warning(line)
    rotated = log.with_name(log.name + ".1")
    assert rotated.exists()
    assert (mode(log), mode(rotated)) == (0o600, 0o600)


def test_an_existing_log_is_narrowed_and_an_existing_folder_left_alone(sqlite_settings, restore_logging):
    """A ``mimir.log`` left 0644 by an earlier version is narrowed; the folder, which the
    operator may share (``/var/log``), is not Mimir's to change."""
    log = Path(sqlite_settings.logging.file_path)
    log.parent.mkdir()
    os.chmod(log.parent, 0o755)
    log.write_text("old line\n")
    os.chmod(log, 0o644)
    sqlite_settings.logging.output = "file"
    setup_logging(sqlite_settings, console=False)
    logging.getLogger("mimir.test").warning("new line")
    assert (mode(log.parent), mode(log)) == (0o755, 0o600)
    assert log.read_text().startswith("old line\n")
