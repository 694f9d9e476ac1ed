"""Pipeline and config files an attacker (or a bad day) puts where Mimir reads YAML: alias
bombs, a FIFO, ``/dev/zero``, a file past ``pipelines.max_file_bytes`` (issue 9, items 7 and 12).
Each is refused with one line naming the file, and never hangs or fills memory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hostile import alias_bomb, fifo, limited_memory

from mimir_tui.config import load_settings
from mimir_tui.errors import ConfigError, NotFound
from mimir_tui.pipelines.spec import load_file
from mimir_tui.pipelines.store import PipelineWatcher, import_path

BOMB_MESSAGE = "invalid YAML: aliases expand past 10,000 nodes at *a3 (refused: a YAML alias bomb?)"


def validate(capsys, *args: str) -> tuple[int, str, str]:
    """``mimir-tui pipelines validate ARGS`` in this process: (exit code, stdout, stderr)."""
    from mimir_tui.cli import main

    capsys.readouterr()
    code = main(["pipelines", "validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_alias_bomb_is_refused_by_validate_with_its_file_and_line(capsys, tmp_path):
    """Attack: billion laughs, a 500-byte pipeline whose nested anchors stand for 59,049
    strings (the issue's took 64 s to validate at 7 levels)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(levels=5))
    code, out, err = validate(capsys, str(bomb))
    assert code == 2
    assert err.splitlines() == [f"{bomb}:6:12: {BOMB_MESSAGE}"]
    assert out == ""


def test_an_alias_bomb_in_the_watched_folder_is_refused_and_the_rest_loads(store, settings, registry, write_yaml):
    """Attack: the bomb dropped into ``pipelines.directory``: the watcher's sync refuses it
    with the file's error on a placeholder row, and imports the good file next to it."""
    folder = Path(settings.pipelines.directory)
    write_yaml("bomb.yaml", alias_bomb(levels=5), folder)
    write_yaml("good.yaml", "name: good\nsteps: [{name: s, plugin: Test.echo}]\n", folder)
    result = PipelineWatcher(store, settings, registry).sync()
    assert result.added == ["good"]
    [issue] = result.issues
    assert str(issue) == f"{folder / 'bomb.yaml'}:6:12: {BOMB_MESSAGE}"
    row = store.get_pipeline("bomb.yaml")  # a file that never loaded: a disabled placeholder
    assert not row.enabled and row.load_error == str(issue)


def test_a_recursive_alias_is_refused(store, registry, write_yaml):
    path = write_yaml("loop.yaml", "name: loop\nsteps: &s [{name: a, plugin: Test.echo, config: {value: *s}}]\n")
    result = import_path(store, path, registry)
    assert [str(i) for i in result.issues] == [
        f"{path}:2:57: invalid YAML: alias *s refers to a node that contains it (refused)"
    ]
    with pytest.raises(NotFound):
        store.get_pipeline("loop")


def test_anchors_and_merge_keys_within_the_budget_still_work(registry, write_yaml):
    path = write_yaml(
        "reuse.yaml",
        """
        name: reuse
        steps:
          - {name: a, plugin: Test.echo, config: &cfg {value: [1, 2, 3], count: 2}}
          - {name: b, plugin: Test.echo, config: *cfg}
          - {name: c, plugin: Test.echo, config: {<<: *cfg}}
        """,
    )
    [spec] = load_file(path, registry)
    assert [s.config for s in spec.steps] == [{"value": [1, 2, 3], "count": 2}] * 3


def test_a_config_file_alias_bomb_is_refused_with_its_file_and_line(tmp_path):
    """Attack: the same bomb in config.yaml (same loader)."""
    config = tmp_path / "config.yaml"
    config.write_text("ui:\n" + "".join(f"  {line}\n" for line in alias_bomb(levels=5).splitlines()))
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(info.value) == f"{config}:7:14: {BOMB_MESSAGE}"


def test_validating_a_fifo_is_refused_without_waiting_for_a_writer(capsys, tmp_path):
    """Attack: ``pipelines validate`` on a FIFO hung forever, waiting for a writer."""
    with fifo(tmp_path / "pipe.yaml") as path:
        code, out, err = validate(capsys, str(path))
    assert code == 2
    assert err.splitlines() == [f"{path}: refused: the file is a FIFO, not a regular file"]


def test_a_pipeline_file_past_the_cap_is_refused(capsys, store, settings, registry, write_yaml):
    """Attack: a huge pipeline file: refused past ``pipelines.max_file_bytes`` (configured
    small here), by validate and by the watcher."""
    folder = Path(settings.pipelines.directory)
    big = write_yaml(
        "big.yaml", "name: big\ndescription: " + "x" * 4096 + "\nsteps: [{name: s, plugin: Test.echo}]\n", folder
    )
    expected = f"{big}: refused: the file is {big.stat().st_size:,} bytes, more than pipelines.max_file_bytes (2,048)"

    Path("config.yaml").write_text("pipelines:\n  max_file_bytes: 2048\n")  # the working directory's config
    code, _, err = validate(capsys, str(big))
    assert (code, err.splitlines()) == (2, [expected])

    settings.pipelines.max_file_bytes = 2048
    assert [str(i) for i in PipelineWatcher(store, settings, registry).sync().issues] == [expected]
    settings.pipelines.max_file_bytes = 4 * 4096
    assert PipelineWatcher(store, settings, registry).sync().added == ["big"]


@pytest.mark.slow
def test_validating_dev_zero_is_refused_as_a_real_process(cli_argv):
    """Attack: ``mimir-tui pipelines validate /dev/zero`` read until memory ran out. (The
    process's memory is capped, so that a regression fails here instead of taking the machine.)"""
    result = subprocess.run(
        [*cli_argv, "pipelines", "validate", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limited_memory(),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["/dev/zero: refused: the file is a character device, not a regular file"]
