"""The embedded vector store goes into the archive (its SQLite part through the backup API, its
owner lock never) and comes back with a restore; the replaced store is kept."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from mimir_tui.config import Settings
from mimir_tui.ops.backup import create_backup
from mimir_tui.ops.restore import RestoreRefused, restore_backup
from mimir_tui.persistence import open_backend
from mimir_tui.vectors import open_store

DOCS = [
    {"id": "a", "text": "Quantum mechanics describes matter at atomic scales"},
    {"id": "b", "text": "Bake the bread for forty minutes in a hot oven"},
]


def test_vector_store_round_trip(sqlite_settings: Settings) -> None:
    open_backend(sqlite_settings).close()
    store = open_store(sqlite_settings)
    store.create("facts")
    store.add("facts", DOCS)
    store.close()
    result = create_backup(sqlite_settings)
    assert result.verified, result.verify_error
    with tarfile.open(result.path) as tar:
        names = tar.getnames()
    assert "vectors/chroma.sqlite3" in names and not any(n.endswith("mimir-owner.lock") for n in names)
    assert result.manifest["vectors"]["quiescent"] is True

    store = open_store(sqlite_settings)
    store.drop("facts")
    store.create("other")
    store.close()
    restored = restore_backup(sqlite_settings, result.path)
    assert restored.vectors_safety_copy and Path(restored.vectors_safety_copy).is_dir()
    store = open_store(sqlite_settings)
    try:
        assert store.names() == ["facts"]
        assert store.count("facts") == 2 and store.query("facts", "bread oven", n=1)[0].id == "b"
    finally:
        store.close()


def test_restore_refused_while_another_process_holds_the_store(sqlite_settings: Settings, tmp_path: Path) -> None:
    import subprocess
    import sys

    open_backend(sqlite_settings).close()
    store = open_store(sqlite_settings)
    store.create("facts")
    store.add("facts", DOCS)
    store.close()
    archive = create_backup(sqlite_settings).path
    folder = sqlite_settings.persistence.vector_db_path
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from mimir_tui.vectors import owner; "
            f"owner.acquire(Path({folder!r}), 5); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RestoreRefused, match="in use by another process"):
            restore_backup(sqlite_settings, archive)
    finally:
        holder.kill()
        holder.wait()
