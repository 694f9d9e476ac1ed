"""Attack: ``database_path`` pointed at something that is not a database file (issue 9, item 3).

As root, Mimir pointed at ``/dev/null`` read it (empty), then chmodded it to 0600 although the
open failed: other programs on the machine broke. A device, a FIFO, a socket or a directory is
refused with one line naming the path, before anything opens or chmods it; only a regular file
Mimir made, an empty one, or a SQLite database has its mode narrowed.

The chmod is tested on objects in the test's own folder (a FIFO, a socket, a character device
like /dev/null): a broken build must not be able to change the machine's ``/dev/null``, which
is given to Mimir only once a device of the test's own was refused untouched.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bad_input import assert_one_line_failure

from mimir_tui.config import Settings
from mimir_tui.errors import PersistenceError
from mimir_tui.persistence import open_backend
from mimir_tui.persistence.engine import prepare_sqlite_file, restrict_file_modes


def _state(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_mode, st.st_ino, st.st_size


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "mimir.db"
    path.parent.mkdir()
    os.mkfifo(path, 0o644)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    # AF_UNIX paths are short (108 bytes): bind in a short folder of the test's own
    folder = Path(f"/tmp/mimir-sock-{os.getpid()}-{tmp_path.name[-8:]}")
    folder.mkdir()
    path = folder / "mimir.db"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o666)
        yield path
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory"])
def test_a_fifo_socket_or_directory_at_database_path_is_refused_unchanged(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, run_cli, sqlite_settings: Settings
) -> None:
    """Attack: database_path is a FIFO (opening it for reading used to hang), a socket or a
    directory; its mode must stay as it was (0644/0666/0755), not become 0600, and nothing is
    created next to it."""
    if kind == "directory":
        path = tmp_path / "data" / "mimir.db"
        path.mkdir(parents=True)
        os.chmod(path, 0o755)
    else:
        path = request.getfixturevalue("fifo" if kind == "fifo" else "unix_socket")
    before = _state(path)
    # A process first: without the fix, opening the FIFO hangs it (the timeout fails the test).
    proc = run_cli("health", env={"MIMIR_DATABASE_PATH": str(path)}, timeout=30)
    assert_one_line_failure(proc, mentions=str(path))
    with pytest.raises(PersistenceError) as info:
        prepare_sqlite_file(str(path))
    assert str(path) in str(info.value) and "left untouched" in str(info.value)
    sqlite_settings.persistence.database_path = str(path)
    with pytest.raises(PersistenceError):
        open_backend(sqlite_settings)
    assert _state(path) == before
    assert [p.name for p in path.parent.iterdir()] == ["mimir.db"]  # no -wal, -shm, lock file


def _probe_devices_are_refused(tmp_path: Path, run_cli) -> None:
    """Before /dev/null is given to Mimir: prove on a device of the test's own that it is
    refused untouched, so that a broken build fails here, on the probe, and never chmods the
    machine's /dev/null. The probe is a character device like /dev/null (1, 3) made in
    ``tmp_path`` (needs CAP_MKNOD), else a FIFO (a broken build hangs on it: the timeout fails)."""
    probe = tmp_path / "probe" / "mimir.db"
    probe.parent.mkdir()
    try:
        os.mknod(probe, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        os.mkfifo(probe, 0o666)
    before = _state(probe)
    proc = run_cli("health", env={"MIMIR_DATABASE_PATH": str(probe)}, timeout=30)
    assert_one_line_failure(proc, mentions=f"{probe} is a ")
    assert _state(probe) == before


def test_dev_null_is_refused_unchanged(tmp_path: Path, run_cli) -> None:
    """Attack: database_path: /dev/null (as root, Mimir chmodded it to 0600)."""
    _probe_devices_are_refused(tmp_path, run_cli)
    null = Path(os.devnull)
    before = _state(null)
    proc = run_cli("health", env={"MIMIR_DATABASE_PATH": os.devnull})
    assert_one_line_failure(proc, mentions="/dev/null is a character device")
    proc = run_cli("jobs", "list", env={"MIMIR_DATABASE_PATH": os.devnull})
    assert_one_line_failure(proc, mentions="/dev/null")
    with pytest.raises(PersistenceError, match="/dev/null is a character device"):
        prepare_sqlite_file(os.devnull)
    assert _state(null) == before
    assert stat.S_ISCHR(null.stat().st_mode)


def test_wal_and_shm_are_chmodded_only_if_regular_files(tmp_path: Path, fifo: Path) -> None:
    """Attack: a ``-wal``/``-shm`` name that is a symbolic link to someone else's file, or a
    FIFO: restrict_file_modes must not follow it or chmod it."""
    db = tmp_path / "other" / "mimir.db"
    db.parent.mkdir()
    prepare_sqlite_file(str(db))
    victim = tmp_path / "victim.txt"
    victim.write_text("world-readable\n")
    os.chmod(victim, 0o644)
    db.with_name("mimir.db-wal").symlink_to(victim)
    os.rename(fifo, db.with_name("mimir.db-shm"))
    shm_before = _state(db.with_name("mimir.db-shm"))
    restrict_file_modes(db)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert _state(db.with_name("mimir.db-shm")) == shm_before
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_an_empty_regular_file_becomes_the_database(tmp_path: Path, sqlite_settings: Settings) -> None:
    """An empty regular file is what SQLite treats as a new database: accepted, made 0600."""
    path = tmp_path / "data" / "mimir.db"
    path.parent.mkdir()
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    sqlite_settings.persistence.database_path = str(path)
    with open_backend(sqlite_settings) as backend:
        assert backend.list_jobs() == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"SQLite format 3\x00")
