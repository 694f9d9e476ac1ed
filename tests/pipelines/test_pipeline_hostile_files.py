"""Pipeline and config files an attacker (or a bad day) puts where Mimir reads YAML: alias
bombs (issue 9, item 7). Each is refused with one line naming the file, and never hangs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import alias_bomb

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
