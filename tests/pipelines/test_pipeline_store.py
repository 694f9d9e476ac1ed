"""Pipelines in the database: import (all-or-nothing per file) and the directory watcher."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mimir_tui.errors import NotFound
from mimir_tui.pipelines.spec import PipelineError
from mimir_tui.pipelines.store import PipelineWatcher, get_spec, import_path

GOOD = """
pipelines:
  - name: alpha
    description: first version
    steps:
      - {name: one, plugin: Test.echo, config: {value: 1}, output: a}
  - name: beta
    steps:
      - {name: one, plugin: Test.echo, output: a}
"""


def test_import_a_file_then_reimport_changes_and_removals(store, registry, write_yaml):
    path = write_yaml("p.yaml", GOOD)
    result = import_path(store, path, registry)
    assert result.ok and result.added == ["alpha", "beta"]
    row = store.get_pipeline("alpha")
    assert row.description == "first version" and row.enabled is True
    assert row.source_path == str(path.resolve()) and row.checksum and row.load_error is None
    assert json.loads(row.config)["steps"][0]["plugin"] == "Test.echo"
    assert get_spec(store, "alpha").steps[0].config == {"value": 1}

    again = import_path(store, path, registry)
    assert again.unchanged == ["alpha", "beta"] and not again.changed

    write_yaml(
        "p.yaml",
        GOOD.replace("first version", "second version").replace(
            "  - name: beta\n    steps:\n      - {name: one, plugin: Test.echo, output: a}\n", ""
        ),
    )
    changed = import_path(store, path, registry)
    assert changed.updated == ["alpha"] and changed.removed == ["beta"]
    assert store.get_pipeline("alpha").description == "second version"
    with pytest.raises(NotFound):
        store.get_pipeline("beta")


def test_an_invalid_file_changes_nothing(store, registry, write_yaml):
    path = write_yaml("p.yaml", GOOD)
    import_path(store, path, registry)
    before = {r.name: (r.config, r.updated_at) for r in store.list_pipelines()}
    write_yaml("p.yaml", GOOD.replace("first version", "third").replace("Test.echo, output", "Test.nope, output"))
    result = import_path(store, path, registry)
    assert not result.ok
    assert any("unknown plugin 'Test.nope'" in str(i) for i in result.issues)
    assert {r.name: (r.config, r.updated_at) for r in store.list_pipelines()} == before


def test_import_a_directory_imports_the_valid_files_only(store, registry, tmp_path, write_yaml):
    folder = tmp_path / "dir"
    write_yaml("good.yml", GOOD, folder)
    write_yaml("bad.yaml", "name: broken\nsteps: [", folder)
    write_yaml("notes.txt", "not a pipeline", folder)
    result = import_path(store, folder, registry)
    assert sorted(result.added) == ["alpha", "beta"]
    assert [r.path for r in result.files if not r.ok] == [str(folder / "bad.yaml")]
    assert {r.name for r in store.list_pipelines()} == {"alpha", "beta"}


def test_a_name_imported_from_another_file_is_a_duplicate(store, registry, write_yaml, tmp_path):
    first = write_yaml("a.yaml", "name: same\nsteps: [{name: s, plugin: Test.echo}]\n", tmp_path / "a")
    second = write_yaml("b.yaml", "name: same\nsteps: [{name: t, plugin: Test.echo}]\n", tmp_path / "b")
    assert import_path(store, first, registry).ok
    result = import_path(store, second, registry)
    assert not result.ok
    assert f"{second}:1: pipeline 'same': duplicate pipeline name (already imported from {first.resolve()})" in [
        str(i) for i in result.issues
    ]
    assert store.get_pipeline("same").source_path == str(first.resolve())


def test_a_placeholder_row_cannot_run(store, registry, tmp_path, write_yaml):
    folder = tmp_path / "watched"
    write_yaml("never.yaml", "name: never\nsteps:\n  - {name: s, plugin: Nope.nope}\n", folder)
    import_path(store, folder, registry, record_errors=True)
    row = store.get_pipeline("never")
    assert row.enabled is False and "unknown plugin 'Nope.nope'" in row.load_error
    with pytest.raises(PipelineError, match="has no valid definition"):
        get_spec(store, "never")


def _wait(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    return predicate()


def _row(store, name):
    try:
        return store.get_pipeline(name)
    except NotFound:
        return None


def test_the_watcher_reloads_changed_files_within_two_seconds(store, settings, registry, write_yaml):
    folder = Path(settings.pipelines.directory)
    write_yaml("start.yaml", "name: start\nsteps: [{name: s, plugin: Test.echo}]\n", folder)
    watcher = PipelineWatcher(store, settings, registry)
    with watcher:
        assert watcher.ready.wait(5)
        assert _row(store, "start") is not None  # the first sync imports what is there

        write_yaml("w.yaml", "name: watched\ndescription: v1\nsteps: [{name: s, plugin: Test.echo}]\n", folder)
        t0 = time.monotonic()
        assert _wait(lambda: _row(store, "watched")), "a new file was not imported within 2 s"
        assert time.monotonic() - t0 < 2

        write_yaml("w.yaml", "name: watched\ndescription: v2\nsteps: [{name: s, plugin: Test.echo}]\n", folder)
        t0 = time.monotonic()
        assert _wait(lambda: (row := _row(store, "watched")) is not None and row.description == "v2")
        assert time.monotonic() - t0 < 2

        write_yaml("w.yaml", "name: watched\ndescription: v3\nsteps: [{name: s, plugin: Test.nope}]\n", folder)
        assert _wait(lambda: _row(store, "watched").load_error)
        row = _row(store, "watched")
        assert row.description == "v2" and json.loads(row.config)["steps"][0]["plugin"] == "Test.echo"
        assert "w.yaml:3: pipeline 'watched', step 's', key 'plugin': unknown plugin 'Test.nope'" in row.load_error

        write_yaml("w.yaml", "name: watched\ndescription: v4\nsteps: [{name: s, plugin: Test.echo}]\n", folder)
        assert _wait(lambda: _row(store, "watched").description == "v4")
        assert _row(store, "watched").load_error is None

        (folder / "w.yaml").unlink()
        assert _wait(lambda: _row(store, "watched") is None)
    assert not watcher.running


# -- files that define the same name (issue 10, item 7) -------------------------------------------

#: What writes the pipelines table: a sync may use the first only, once.
WRITE_OPS = ("apply_pipeline_changes", "save_pipeline", "update_pipeline", "delete_pipeline")
VALID_X = "name: x\ndescription: {what}\nsteps: [{{name: s, plugin: Test.echo}}]\n"
BROKEN_X = "name: x\nsteps: [{name: s, plugin: Test.nope}]\n"


def test_removing_a_file_hands_its_name_to_the_copy_that_defines_it_too(store, settings, registry, write_yaml):
    """The bug: a.yaml defines x, b.yaml (a copy) too, refused as a duplicate while a.yaml is
    there. On a.yaml's removal one sync imported b.yaml's x, then deleted it as a.yaml's (from
    the rows read before): x was gone until some other file changed."""
    folder = Path(settings.pipelines.directory)
    write_yaml("a.yaml", VALID_X.format(what="original"), folder)
    write_yaml("b.yaml", VALID_X.format(what="copy"), folder)
    with PipelineWatcher(store, settings, registry) as watcher:
        assert watcher.ready.wait(5)
        assert _row(store, "x").source_path == str((folder / "a.yaml").resolve())
        (folder / "a.yaml").unlink()
        assert _wait(lambda: (row := _row(store, "x")) is not None and row.description == "copy", timeout=3)
        time.sleep(0.5)  # and it stays: nothing else is coming to sync again
        row = _row(store, "x")
    assert row is not None and row.source_path == str((folder / "b.yaml").resolve()) and row.load_error is None
    assert get_spec(store, "x").steps[0].plugin == "Test.echo"


def test_a_sync_is_one_transaction_and_a_handed_over_name_is_never_missing(store, settings, registry, write_yaml):
    """x moves from a removed file to its copy, back and forth, while a reader looks for it:
    each sync writes in one transaction, so the reader never finds x missing (when each file's
    rows were written on their own, it sometimes did)."""
    folder = Path(settings.pipelines.directory)
    files = {name: VALID_X.format(what=name) for name in ("a.yaml", "b.yaml")}
    for name, text in files.items():
        write_yaml(name, text, folder)
    import_path(store, folder, registry, record_errors=True, prune_missing=True)
    missing, done = [], threading.Event()

    def read() -> None:
        while not done.is_set():
            if _row(store, "x") is None:
                missing.append(time.monotonic())

    def writes() -> dict[str, int]:
        ops = store.metrics.snapshot()
        return {op: ops.get(op, {}).get("count", 0) for op in WRITE_OPS}

    def sync():
        before = writes()
        result = import_path(store, folder, registry, record_errors=True, prune_missing=True)
        after = writes()
        assert after["apply_pipeline_changes"] - before["apply_pipeline_changes"] <= 1
        assert {op: n for op, n in after.items() if op != "apply_pipeline_changes"} == {
            op: n for op, n in before.items() if op != "apply_pipeline_changes"
        }
        return result

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            gone = ("a.yaml", "b.yaml")[i % 2]
            (folder / gone).unlink()
            result = sync()
            assert result.removed == ["x"] and result.added == ["x"], result
            write_yaml(gone, files[gone], folder)  # back, as a duplicate of x
            assert not sync().changed
    finally:
        done.set()
        reader.join()
    assert missing == []


def test_two_instances_syncing_one_folder_at_once_both_end_with_the_same_table(settings, registry, write_yaml):
    """Two processes import the same folder into one database at the same moment: the one
    whose transaction comes second finds the names taken, judges the files again on what the
    first left, and succeeds too (nothing added twice, no error)."""
    from mimir_tui.persistence import open_backend

    folder = Path(settings.pipelines.directory)
    backends = [open_backend(settings), open_backend(settings)]

    def sync(i: int, barrier: threading.Barrier, results: list) -> None:
        barrier.wait()
        results[i] = import_path(backends[i], folder, registry, record_errors=True, prune_missing=True)

    try:
        for round_ in range(4):
            names = {f"p{round_}-{i}" for i in range(15)}
            for name in names:
                write_yaml(f"{name}.yaml", f"name: {name}\nsteps: [{{name: s, plugin: Test.echo}}]\n", folder)
            barrier = threading.Barrier(2)
            results: list = [None, None]
            threads = [threading.Thread(target=sync, args=(i, barrier, results)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for result in results:
                assert result is not None and result.ok
                assert names <= set(result.added) | set(result.unchanged)
            assert sorted(set(results[0].added) & set(results[1].added)) == []
            assert names <= {row.name for row in backends[0].list_pipelines()}
    finally:
        for backend in backends:
            backend.close()


def test_removing_a_file_shows_the_broken_file_it_had_shadowed(store, settings, registry, write_yaml):
    """a.yaml defines x; b.yaml defines x too and is broken. Removing a.yaml used to leave no
    row of x at all after its sync (b.yaml's error was judged against a.yaml's row, read
    before the removal): the broken file was out of sight. Now the same sync leaves the
    placeholder of b.yaml's x, with b.yaml's error, which cannot run."""
    folder = Path(settings.pipelines.directory)
    write_yaml("a.yaml", VALID_X.format(what="good"), folder)
    write_yaml("b.yaml", BROKEN_X, folder)
    with PipelineWatcher(store, settings, registry) as watcher:
        assert watcher.ready.wait(5)
        assert _row(store, "x").description == "good"
        (folder / "a.yaml").unlink()
        assert _wait(lambda: (row := _row(store, "x")) is not None and row.load_error, timeout=3)
    row = _row(store, "x")
    assert row.source_path == str((folder / "b.yaml").resolve()) and row.enabled is False
    assert "unknown plugin 'Test.nope'" in row.load_error
    assert {r.name for r in store.list_pipelines()} == {"x"}  # no row named after a file
    with pytest.raises(PipelineError, match="has no valid definition"):
        get_spec(store, "x")


def test_a_broken_file_does_not_shadow_a_valid_one(store, settings, registry, write_yaml):
    """a.yaml (first in order) is broken and defines x; b.yaml defines x and is valid. x used
    to be a.yaml's placeholder with 0 steps, and b.yaml refused as its duplicate: a pipeline
    nobody could run. The valid file's x is imported; the broken file is the duplicate."""
    folder = Path(settings.pipelines.directory)
    write_yaml("a.yaml", BROKEN_X, folder)
    write_yaml("b.yaml", VALID_X.format(what="valid"), folder)
    result = PipelineWatcher(store, settings, registry).sync()
    row = store.get_pipeline("x")
    assert row.source_path == str((folder / "b.yaml").resolve()) and row.load_error is None and row.enabled
    assert get_spec(store, "x").steps[0].plugin == "Test.echo"
    (bad,) = [r for r in result.files if not r.ok]
    assert bad.path == str(folder / "a.yaml")
    assert any("duplicate pipeline name" in str(i) for i in bad.issues)
