"""Backups on real SQLite files: online under concurrent writes, verification (tamper,
truncation, wrong passphrase, unsafe members), restore (refused while an instance is live,
row for row equal), encryption and rotation."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimir_tui.config import Settings
from mimir_tui.errors import BadInput
from mimir_tui.ops import archive as arc
from mimir_tui.ops.backup import create_backup, verify_backup
from mimir_tui.ops.crypto import ArchiveDamaged
from mimir_tui.ops.overview import size
from mimir_tui.ops.restore import RestoreRefused, restore_backup
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend
from mimir_tui.persistence.models import Worker

PASS = "correct horse battery staple"


def fill(settings: Settings, executions: int = 200, big_rows: int = 0) -> None:
    """Jobs, a pipeline and executions through the backend; ``big_rows`` 4 KiB rows besides."""
    with open_backend(settings) as backend:
        job = backend.save_job(ScheduledJob(name="nightly", pipeline="etl", cron_expr="0 2 * * *"))
        for i in range(executions):
            backend.save_execution(
                JobExecutionRecord(job_id=job.id, pipeline="etl", status="success", error=f"e{i}", context={"i": i})
            )
    if big_rows:
        conn = sqlite3.connect(settings.persistence.database_path)
        conn.executemany(
            "INSERT INTO job_executions (id, pipeline, start_time, status, error, triggered_by, attempt, "
            "cancel_requested) VALUES (?, 'bulk', '2024-01-01 00:00:00.000000', 'success', ?, 'manual', 1, 0)",
            ((f"bulk-{i:08d}", os.urandom(2048).hex()) for i in range(big_rows)),
        )
        conn.commit()
        conn.close()


def rows(path: str | Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        conn.close()


def tables(path: str | Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    finally:
        conn.close()


def extracted_db(settings: Settings, archive: Path, into: Path) -> Path:
    into.mkdir()
    return arc.extract(archive, settings, into).files["database/mimir.db"]


# -- online, consistent -------------------------------------------------------------------------


def test_backup_under_concurrent_writes_is_consistent_and_restores_row_for_row(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    fill(sqlite_settings, executions=50, big_rows=12_000)  # ~50 MB: the copy takes many steps
    db = sqlite_settings.persistence.database_path
    backend = open_backend(sqlite_settings)
    job = backend.list_jobs()[0]
    stop = threading.Event()
    waits: list[float] = []
    committed: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            saved = backend.save_execution(JobExecutionRecord(job_id=job.id, pipeline="etl", status="running"))
            waits.append(time.perf_counter() - start)
            committed.append(saved.id)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(committed) < 20:
            time.sleep(0.005)
        before = len(committed)
        result = create_backup(sqlite_settings)
        after = len(committed)
    finally:
        stop.set()
        thread.join()
    assert result.verified, result.verify_error
    assert after > before, "the writer made no progress during the backup"
    assert max(waits) < 0.5, f"a write waited {max(waits):.3f} s during the backup"

    copy = extracted_db(sqlite_settings, result.path, tmp_path / "x")
    copied = {r[0] for r in rows(copy, "job_executions")}
    ours = [i for i in committed if i in copied]
    # A snapshot: every write committed before the backup began is in, and what is in is a
    # prefix of the writer's commits (no later row without the earlier ones).
    assert set(committed[:before]) <= copied
    assert ours == committed[: len(ours)]
    assert result.manifest["row_counts"]["job_executions"] == len(copied)

    # The database moves on, then is restored: every row equals the archive's.
    backend.save_job(ScheduledJob(name="later", pipeline="etl", cron_expr="0 3 * * *"))
    backend.close()
    restored = restore_backup(sqlite_settings, result.path)
    assert restored.row_counts == result.manifest["row_counts"]
    for table in tables(copy):
        assert rows(db, table) == rows(copy, table), table
    assert not Path(db + "-wal").exists() or Path(db + "-wal").stat().st_size == 0
    safety = Path(restored.safety_copy)
    assert stat.S_IMODE(safety.stat().st_mode) == 0o600
    assert len(rows(safety, "scheduled_jobs")) == 2  # the replaced database, "later" included
    with open_backend(sqlite_settings) as again:  # Mimir opens the restored file as its own
        assert [j.name for j in again.list_jobs()] == ["nightly"]


def test_a_plain_file_copy_without_the_wal_loses_committed_rows(sqlite_settings: Settings, tmp_path: Path) -> None:
    """The control: the seed's `cp` of a WAL-mode database misses what is still in the WAL."""
    fill(sqlite_settings, executions=5)
    db = sqlite_settings.persistence.database_path
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # as between two of SQLite's automatic checkpoints
    for i in range(100):
        conn.execute(
            "INSERT INTO job_executions (id, pipeline, start_time, status, triggered_by, attempt, cancel_requested) "
            "VALUES (?, 'etl', '2024-01-01 00:00:00', 'success', 'manual', 1, 0)",
            (f"wal-{i}",),
        )
    committed = conn.execute("SELECT count(*) FROM job_executions").fetchone()[0]
    plain = tmp_path / "plain.db"
    shutil.copyfile(db, plain)  # the seed's backup
    result = create_backup(sqlite_settings)
    conn.close()
    assert rows(plain, "job_executions").__len__() < committed
    assert result.manifest["row_counts"]["job_executions"] == committed


def test_archive_layout_modes_and_manifest(sqlite_settings: Settings, tmp_path: Path) -> None:
    fill(sqlite_settings, executions=3)
    pipelines = Path(sqlite_settings.pipelines.directory)
    pipelines.mkdir(parents=True)
    (pipelines / "etl.yaml").write_text("name: etl\nsteps: []\n")
    result = create_backup(sqlite_settings)
    folder = Path(sqlite_settings.persistence.backup_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert arc.archive_time(result.path.name) is not None and result.path.suffix == ".tar"
    with tarfile.open(result.path) as tar:
        names = tar.getnames()
    assert names[-1] == "manifest.json"
    assert "database/mimir.db" in names and "pipelines/etl.yaml" in names
    assert not any(n.endswith(("-mimir.lock", "-wal", "-shm")) for n in names)
    m = result.manifest
    assert m["backend"] == "sqlite" and m["schema_revision"] and m["mimir_version"]
    assert m["row_counts"]["job_executions"] == 3 and m["row_counts"]["scheduled_jobs"] == 1
    assert set(m["members"]) == set(names) - {"manifest.json"}
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no staging left
    listed = arc.listing(folder)
    assert listed[0]["archive"] == result.path.name and listed[0]["verified"] is True


# -- verification --------------------------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_a_flipped_byte_is_found(sqlite_settings: Settings) -> None:
    fill(sqlite_settings)
    result = create_backup(sqlite_settings)
    flip(result.path, 512 + 4096 * 3)  # inside the database member's data
    with pytest.raises(ArchiveDamaged, match="SHA-256"):
        verify_backup(sqlite_settings, result.path)
    assert arc.listing(Path(sqlite_settings.persistence.backup_path))[0]["verified"] is False


def test_a_truncated_archive_is_found(sqlite_settings: Settings) -> None:
    fill(sqlite_settings)
    result = create_backup(sqlite_settings)
    with open(result.path, "r+b") as f:
        f.truncate(result.size_bytes // 2)
    with pytest.raises(ArchiveDamaged, match="truncated|unreadable|manifest"):
        verify_backup(sqlite_settings, result.path)


@pytest.mark.parametrize("cut", ["half", "last_chunk", "header"])
def test_encrypted_archive_truncated_or_changed_is_found(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    from mimir_tui.ops import crypto

    monkeypatch.setenv("MIMIR_BACKUP_PASSPHRASE", PASS)
    monkeypatch.setattr(crypto, "CHUNK", 4096)  # many chunks in a small archive
    fill(sqlite_settings)
    result = create_backup(sqlite_settings, encrypt=True)
    assert result.verified and result.path.name.endswith(".tar.enc")
    size = result.size_bytes
    sealed = 4096 + crypto.TAG
    if cut == "half":
        with open(result.path, "r+b") as f:
            f.truncate(crypto.HEADER_SIZE + sealed * ((size - crypto.HEADER_SIZE) // sealed // 2))  # on a boundary
    elif cut == "last_chunk":
        flip(result.path, size - 3)
    else:
        flip(result.path, 12)  # a scrypt parameter in the header
    with pytest.raises(ArchiveDamaged):
        verify_backup(sqlite_settings, result.path)


def test_encrypted_round_trip_and_wrong_passphrase(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MIMIR_BACKUP_PASSPHRASE", PASS)
    fill(sqlite_settings, executions=30)
    result = create_backup(sqlite_settings, encrypt=True)
    raw = result.path.read_bytes()
    assert b"SQLite format 3" not in raw and b"scheduled_jobs" not in raw and b"manifest" not in raw
    before = {
        t: rows(sqlite_settings.persistence.database_path, t) for t in tables(sqlite_settings.persistence.database_path)
    }

    monkeypatch.setenv("MIMIR_BACKUP_PASSPHRASE", "not it")
    with open_backend(sqlite_settings) as backend:
        backend.save_job(ScheduledJob(name="after", pipeline="etl", cron_expr="0 3 * * *"))
    with pytest.raises(ArchiveDamaged, match="wrong passphrase"):
        restore_backup(sqlite_settings, result.path)
    assert len(rows(sqlite_settings.persistence.database_path, "scheduled_jobs")) == 2  # untouched

    key = tmp_path / "backup.key"
    key.write_text(PASS + "\n")
    sqlite_settings.persistence.backup_key_file = str(key)  # a key file serves as well
    monkeypatch.delenv("MIMIR_BACKUP_PASSPHRASE")
    restore_backup(sqlite_settings, result.path)
    for table, content in before.items():
        assert rows(sqlite_settings.persistence.database_path, table) == content


def test_no_passphrase_is_bad_input_and_writes_nothing(sqlite_settings: Settings) -> None:
    fill(sqlite_settings, executions=1)
    with pytest.raises(BadInput, match="MIMIR_BACKUP_PASSPHRASE"):
        create_backup(sqlite_settings, encrypt=True)
    assert arc.archives(Path(sqlite_settings.persistence.backup_path)) == []


def craft(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "member",
    [
        ("../evil", b"x"),
        ("database/../../evil", b"x"),
        ("/tmp/evil-absolute", b"x"),
        ("elsewhere/file", b"x"),
        _link("database/mimir.db", "/etc/passwd", tarfile.SYMTYPE),
        _link("database/mimir.db", "../../evil", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "unknown-root", "symlink", "hardlink"],
)
def test_unsafe_members_are_refused_and_nothing_is_written(
    sqlite_settings: Settings, tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes]
) -> None:
    fill(sqlite_settings, executions=2)
    before = rows(sqlite_settings.persistence.database_path, "job_executions")
    archive = tmp_path / "mimir-20260101T000000Z.tar"
    craft(archive, [member, ("manifest.json", b"{}")])
    with pytest.raises(ArchiveDamaged, match="refused"):
        restore_backup(sqlite_settings, archive, force=True)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-absolute").exists()
    assert rows(sqlite_settings.persistence.database_path, "job_executions") == before


def test_a_member_missing_from_the_manifest_is_refused(sqlite_settings: Settings, tmp_path: Path) -> None:
    fill(sqlite_settings, executions=1)
    good = create_backup(sqlite_settings).path
    sneaky = tmp_path / "mimir-20260101T000000Z.tar"
    with tarfile.open(good) as src, tarfile.open(sneaky, "w") as dst:
        for m in src.getmembers():
            if m.name == "manifest.json":
                extra = tarfile.TarInfo("pipelines/extra.yaml")
                extra.size = 3
                dst.addfile(extra, io.BytesIO(b"x: 1"[:3]))
            dst.addfile(m, src.extractfile(m))
    with pytest.raises(ArchiveDamaged, match="not in the manifest"):
        verify_backup(sqlite_settings, sneaky)


# -- restore --------------------------------------------------------------------------------------


def test_restore_is_refused_while_an_instance_is_live(sqlite_settings: Settings) -> None:
    fill(sqlite_settings, executions=2)
    archive = create_backup(sqlite_settings).path
    with open_backend(sqlite_settings) as backend:
        backend.workers.register_worker(Worker(id="host-a:1234", host="host-a", pid=1234, version="t"))
        backend.save_job(ScheduledJob(name="kept", pipeline="etl", cron_expr="0 3 * * *"))
    with pytest.raises(RestoreRefused, match="live instance.*host-a:1234"):
        restore_backup(sqlite_settings, archive)
    assert len(rows(sqlite_settings.persistence.database_path, "scheduled_jobs")) == 2
    # A stale heartbeat is no live instance.
    with open_backend(sqlite_settings) as backend:
        backend.workers.heartbeat("host-a:1234", now=datetime.now(UTC) - timedelta(hours=1))
    result = restore_backup(sqlite_settings, archive)
    assert result.row_counts["scheduled_jobs"] == 1


def test_restore_with_force_while_live_and_a_declined_confirmation(sqlite_settings: Settings) -> None:
    fill(sqlite_settings, executions=2)
    archive = create_backup(sqlite_settings).path
    with open_backend(sqlite_settings) as backend:
        backend.workers.register_worker(Worker(id="live", host="h", pid=1, version="t"))
    with pytest.raises(RestoreRefused, match="cancelled"):
        restore_backup(sqlite_settings, archive, force=True, confirm=lambda plan: False)
    assert rows(sqlite_settings.persistence.database_path, "workers")  # unchanged: the worker is there
    seen = []
    restore_backup(sqlite_settings, archive, force=True, confirm=lambda plan: seen.append(plan.describe()) or True)
    assert "replace every row of sqlite:///" in seen[0] and "safety copy" in seen[0]
    assert rows(sqlite_settings.persistence.database_path, "workers") == []


def test_restore_of_a_damaged_database_needs_force(sqlite_settings: Settings) -> None:
    fill(sqlite_settings, executions=2)
    archive = create_backup(sqlite_settings).path
    db = Path(sqlite_settings.persistence.database_path)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
    with pytest.raises(RestoreRefused, match="--force"):
        restore_backup(sqlite_settings, archive)
    result = restore_backup(sqlite_settings, archive, force=True)
    assert result.row_counts["job_executions"] == 2


# -- rotation ------------------------------------------------------------------------------------


def test_rotation_keeps_last_daily_and_weekly() -> None:
    start = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # a Monday
    # Four a day for 30 days, newest first.
    times = [start - timedelta(hours=6 * i) for i in range(120)]
    keep = arc.to_keep(times, keep_last=3, keep_daily=0, keep_weekly=0)
    assert keep == {0, 1, 2}
    keep = arc.to_keep(times, keep_last=0, keep_daily=5, keep_weekly=0)
    assert sorted(times[i] for i in keep) == [start - timedelta(days=d) for d in range(4, -1, -1)]
    keep = arc.to_keep(times, keep_last=0, keep_daily=0, keep_weekly=3)
    kept = sorted((times[i] for i in keep), reverse=True)
    assert [t.isocalendar()[:2] for t in kept] == [(2026, 49), (2026, 48), (2026, 47)]
    assert kept[1] == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # the newest of the week before: its Sunday
    assert arc.to_keep(times, 0, 0, 0) == set(range(120))  # no policy: keep all
    union = arc.to_keep(times, keep_last=2, keep_daily=2, keep_weekly=2)
    assert {times[i] for i in union} == {
        start,
        start - timedelta(hours=6),
        start - timedelta(days=1),
        datetime(2026, 11, 29, 23, 0, tzinfo=UTC),
    }


def test_rotate_deletes_archives_and_sidecars_it_does_not_keep_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    for d in range(10):
        name = f"mimir-{arc.stamp(start - timedelta(days=d))}.tar"
        (folder / name).write_bytes(b"x")
        (folder / (name + ".json")).write_text("{}")
    (folder / "notes.txt").write_text("mine")
    removed = arc.rotate(folder, keep_last=2, keep_daily=3, keep_weekly=2)
    left = sorted(p.name for p in folder.iterdir())
    assert "notes.txt" in left
    kept = [n for n in left if n.endswith(".tar")]
    # 3 newest days, plus the newest of the week before (Sunday 2026-11-29 is in it: already kept).
    assert kept == sorted(f"mimir-{arc.stamp(start - timedelta(days=d))}.tar" for d in (0, 1, 2))
    assert len(removed) == 7 and all(not Path(str(p) + ".json").exists() for p in removed)


def test_create_rotates(sqlite_settings: Settings) -> None:
    fill(sqlite_settings, executions=1)
    sqlite_settings.persistence.backup_keep_last = 2
    sqlite_settings.persistence.backup_keep_daily = 0
    sqlite_settings.persistence.backup_keep_weekly = 0
    made = [create_backup(sqlite_settings, now=datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC)).path for i in range(4)]
    assert arc.archives(Path(sqlite_settings.persistence.backup_path)) == [made[3], made[2]]


# -- the command line -------------------------------------------------------------------------------


def test_cli_create_list_verify_restore(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("persistence:\n  database_path: ./data/m.db\n  backup_path: ./bk\n  enable_vector_db: false\n")
    env = {"MIMIR_BACKUP_PASSPHRASE": PASS}
    made = run_cli("backup", "create", "--encrypt", "--json", "--config", str(config), env=env)
    assert made.returncode == 0, made.stderr
    archive = json.loads(made.stdout)["path"]
    listed = run_cli("backup", "list", "--json", "--config", str(config))
    assert json.loads(listed.stdout)[0]["verified"] is True
    wrong = run_cli("backup", "verify", archive, "--config", str(config), env={"MIMIR_BACKUP_PASSPHRASE": "x"})
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and "wrong passphrase" in wrong.stderr
    missing = run_cli("backup", "verify", "nope.tar", "--config", str(config))
    assert missing.returncode == 2 and "nope.tar" in missing.stderr
    no = run_cli("backup", "restore", archive, "--config", str(config), env=env)
    assert no.returncode == 2 and "--yes" in no.stderr
    flip(Path(archive), Path(archive).stat().st_size // 2)
    bad = run_cli("backup", "verify", archive, "--config", str(config), env=env)
    assert bad.returncode == 1 and "changed" in bad.stderr and bad.stderr.count("\n") == 1
    refused = run_cli("backup", "restore", archive, "--yes", "--config", str(config), env=env)
    assert refused.returncode == 1


def test_backup_list_shows_the_safety_copies_restores_kept(run_cli, tmp_path: Path) -> None:
    """A restore keeps what it replaced as ``<database>.pre-restore-<time>`` and never rotates
    it; ``backup list`` says where each one is and its size, so that it is not forgotten on the
    disk. ``--json`` stays the list of archives."""
    config = tmp_path / "config.yaml"
    config.write_text("persistence:\n  database_path: ./data/m.db\n  backup_path: ./bk\n  enable_vector_db: false\n")
    made = run_cli("backup", "create", "--json", "--config", str(config))
    assert made.returncode == 0, made.stderr
    listed = run_cli("backup", "list", "--config", str(config))
    assert listed.returncode == 0 and "safety copies" not in listed.stdout
    restored = run_cli("backup", "restore", json.loads(made.stdout)["path"], "--yes", "--config", str(config))
    assert restored.returncode == 0, restored.stderr
    (copy,) = (tmp_path / "data").glob("m.db.pre-restore-*")
    listed = run_cli("backup", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    tail = listed.stdout.split("\n\n")[-1].splitlines()
    assert tail[0].startswith("safety copies that restores kept of what they replaced (1;")
    assert tail[1].split() == [str(copy.resolve()), *size(copy.stat().st_size).split()]
    assert [row["archive"] for row in json.loads(run_cli("backup", "list", "--json", "--config", str(config)).stdout)]


def test_what_a_killed_backup_left_is_cleared_by_the_next(sqlite_settings: Settings) -> None:
    import subprocess
    import sys

    fill(sqlite_settings, executions=1)
    folder = Path(sqlite_settings.persistence.backup_path)
    folder.mkdir(mode=0o700)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (folder / f".mimir-staging-{pid}-abc").mkdir()
    (folder / f".mimir-staging-{pid}-abc" / "mimir.db").write_bytes(b"x")
    (folder / f".mimir-20260101T000000Z.{pid}.00ff00ff.partial").write_bytes(b"half")
    alive = folder / f".mimir-verify-{os.getpid()}-xyz"  # a live process's: left alone
    alive.mkdir()
    create_backup(sqlite_settings)
    left = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    assert left == [alive.name]


def test_a_create_killed_midway_leaves_no_archive_under_its_final_name(
    sqlite_settings: Settings, tmp_path: Path, cli_argv: list[str]
) -> None:
    import signal
    import subprocess

    fill(sqlite_settings, executions=1, big_rows=20_000)  # ~80 MB: the copy takes a while
    config = tmp_path / "config.yaml"
    p = sqlite_settings.persistence
    config.write_text(
        f"persistence:\n  database_path: {p.database_path}\n  backup_path: {p.backup_path}\n  enable_vector_db: false\n"
    )
    folder = Path(p.backup_path)
    proc = subprocess.Popen([*cli_argv, "backup", "create", "--config", str(config)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            n.name.startswith(".mimir-") for n in (folder.iterdir() if folder.is_dir() else [])
        ):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    for archive in arc.archives(folder):  # only if it finished before the kill: then it is whole
        verify_backup(sqlite_settings, archive)
    result = create_backup(sqlite_settings)
    assert result.verified
    assert [n.name for n in folder.iterdir() if n.name.startswith(".")] == []
