"""Restore an archive (:mod:`.backup`): verify first, refuse while an instance is live, keep a
safety copy of what is replaced, swap in one step, report the counts.

SQLite: the archive is read and checked into a private folder next to the database (so the
swap is a rename on one file system). Then, holding the write gate (Mimir's writers of this
file wait), the current database is checkpointed, copied with the backup API to
``<database>.pre-restore-<time>`` (0600), and replaced with ``os.replace``; its ``-wal`` and
``-shm`` go (a WAL left beside the new file would be replayed into it).

PostgreSQL: ``pg_restore --clean --if-exists --single-transaction``: every table is replaced in
one transaction, or none. MariaDB (which commits each DDL statement): the dump is loaded into a
scratch database, whose rows then replace the target's in one transaction; without the right
to create a database, it is loaded straight in, table by table. A SQLite copy or a logical
export replaces a server's rows in one transaction. The safety copy of a server database is a
backup archive in ``backup_path`` (named ``mimir-...``, kept out of the rotation until the next
create).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from ..errors import BadInput, MimirError
from . import archive as arc
from .archive import Progress, no_progress
from .backup import (
    _server_env,
    dump_tool,
    mysql_args,
    resolve_archive,
    run_tool,
    server_facts,
    sqlite_copy,
    sqlite_facts,
    verify_backup,
)

log = logging.getLogger("mimir.ops")


class RestoreRefused(MimirError):
    """The restore would be unsafe now (a live instance), or the operator said no."""


@dataclass
class RestorePlan:
    """What a restore would do: shown to the operator for confirmation."""

    archive: Path
    target: str  # the database replaced, safe to print
    created: str | None
    backend: str | None
    row_counts: dict[str, int]
    current_counts: dict[str, int] | None  # the database now (None: unreadable)

    def describe(self) -> str:
        now = ", ".join(f"{t} {n}" for t, n in sorted((self.current_counts or {}).items())) or "unreadable"
        then = ", ".join(f"{t} {n}" for t, n in sorted(self.row_counts.items()))
        return (
            f"replace every row of {self.target} (now: {now}) with archive {self.archive.name} "
            f"from {self.created} ({then}); the current database is kept as a safety copy"
        )


@dataclass
class RestoreResult:
    archive: Path
    target: str
    row_counts: dict[str, int]
    safety_copy: str
    vectors_safety_copy: str | None = None  # the replaced vector store folder (None: not restored)
    files: str | None = None  # where the archive's config and pipeline files were put (not applied)

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive.name,
            "target": self.target,
            "row_counts": self.row_counts,
            "safety_copy": self.safety_copy,
            "vectors_safety_copy": self.vectors_safety_copy,
            "files": self.files,
        }


@contextlib.contextmanager
def _vector_store(settings: Any, extracted: arc.Extracted, force: bool) -> Iterator[Path | None]:
    """The embedded vector store's folder, held (its owner lock) for the swap, if the archive
    has one to restore; None if not. Another process holding the store refuses the restore
    (``force``: the database is restored, the store left as it is)."""
    from ..vectors import VectorStoreUnavailable, owner

    p = settings.persistence
    if (
        not any(n.startswith("vectors/") for n in extracted.files)
        or not p.enable_vector_db
        or settings.vectors.server_url
    ):
        yield None
        return
    folder = Path(p.vector_db_path)
    try:
        owner.acquire(folder, 2.0)
    except VectorStoreUnavailable as exc:
        if not force:
            raise RestoreRefused(f"{exc}; stop it first, or pass --force (the store is then left as it is)") from None
        yield None
        return
    try:
        yield folder
    finally:
        owner.release(folder)


def safety_copies(settings: Any) -> list[tuple[Path, int]]:
    """The copies restores left of what they replaced, beside the SQLite database and the
    embedded vector store (``<name>.pre-restore-<time>``), newest first, each with its size in
    bytes. They are never rotated (one may hold all that is left of a store a restore replaced):
    ``backup list`` shows them, and the operator deletes them. A server's safety copy is an
    archive in ``backup_path``, listed as any other."""
    p = settings.persistence
    places = [Path(p.vector_db_path)] if p.enable_vector_db else []
    if p.backend == "sqlite":
        places.insert(0, Path(p.database_path))
    found: list[tuple[str, Path, int]] = []
    for place in places:
        if not place.parent.is_dir():
            continue
        for copy in place.parent.glob(f"{glob_escape(place.name)}.pre-restore-*"):
            if copy.is_symlink():
                continue
            files = [copy] if copy.is_file() else [f for f in copy.rglob("*") if f.is_file() and not f.is_symlink()]
            found.append((copy.name.rsplit(".pre-restore-", 1)[1], copy, sum(f.stat().st_size for f in files)))
    return [(copy, size) for _, copy, size in sorted(found, key=lambda t: (t[0], str(t[1])), reverse=True)]


def _swap_vectors(folder: Path, extracted: arc.Extracted, when: str) -> str:
    """Put the archive's store at ``folder``; the current one becomes ``<folder>.pre-restore-<when>``."""
    import shutil

    fresh = folder.with_name(f"{folder.name}.restoring-{when}")
    shutil.move(str(extracted.folder / "vectors"), fresh)
    os.chmod(fresh, 0o700)
    safety = folder.with_name(f"{folder.name}.pre-restore-{when}")
    if folder.exists():
        os.rename(folder, safety)
    os.rename(fresh, folder)
    return str(safety)


def _keep_files(settings: Any, extracted: arc.Extracted, when: str) -> str | None:
    """The archive's config and pipeline files, put aside (never over the live ones)."""
    import shutil

    roots = [extracted.folder / r for r in ("config", "pipelines") if (extracted.folder / r).is_dir()]
    if not roots:
        return None
    target = arc.private_dir(Path(settings.persistence.backup_path)) / f"restored-{when}-files"
    target.mkdir(mode=0o700)
    for root in roots:
        shutil.move(str(root), target / root.name)
    return str(target)


def live_instances(settings: Any, backend: Any, exclude: str | None = None) -> list[str]:
    """Ids of the instances with a fresh heartbeat (other than ``exclude``)."""
    live = backend.workers.live_workers(stale_after=settings.scheduler.stale_after)
    return [w.id for w in live if w.id != exclude]


def _open(settings: Any) -> Any:
    from ..persistence import open_backend

    return open_backend(settings)


def restore_backup(
    settings: Any,
    archive: Path | str,
    *,
    force: bool = False,
    confirm: Callable[[RestorePlan], bool] | None = None,
    progress: Progress = no_progress,
    own_worker: str | None = None,
    backend: Any = None,
) -> RestoreResult:
    """Restore ``archive`` into the configured database. ``confirm``: asked with the plan once
    the archive is verified (None: no question). ``backend``: an open backend on the target
    (its connections are let go before the swap); one is opened if not given.
    :class:`RestoreRefused` if an instance other than ``own_worker`` is live and not ``force``,
    or if ``confirm`` says no; nothing is changed then."""
    from ..persistence.engine import display_url

    p = settings.persistence
    path = archive if isinstance(archive, Path) else resolve_archive(settings, archive)
    target_text = display_url(p)
    owned = backend is None
    current: dict[str, int] | None = None
    try:
        try:
            backend = backend or _open(settings)
        except MimirError as exc:
            if not force:
                raise RestoreRefused(
                    f"cannot read the current database to check for live instances ({exc}); "
                    "pass --force to restore anyway"
                ) from None
            backend = None
        if backend is not None:
            live = live_instances(settings, backend, own_worker)
            if live and not force:
                raise RestoreRefused(
                    f"{len(live)} live instance(s) use {target_text} ({', '.join(live[:3])}): stop them "
                    "first, or pass --force"
                )
            with contextlib.suppress(MimirError):
                current = backend.stats()["row_counts"]
        job = _Restore(settings, path, backend, current, confirm, progress, target_text, force)
        return _restore_sqlite(job) if p.backend == "sqlite" else _restore_server(job)
    finally:
        if owned and backend is not None:
            backend.close()


@dataclass
class _Restore:
    """One restore's inputs, as the backend-specific halves take them."""

    settings: Any
    path: Path
    backend: Any
    current: dict[str, int] | None
    confirm: Callable[[RestorePlan], bool] | None
    progress: Progress
    target: str
    force: bool

    def parts(self) -> tuple[Any, Path, Any, Progress, bool, str]:
        return self.settings, self.path, self.backend, self.progress, self.force, self.target

    def ask(self, manifest: dict[str, Any]) -> None:
        """The plan to ``confirm``; :class:`RestoreRefused` if it says no."""
        plan = RestorePlan(
            self.path,
            self.target,
            manifest.get("created"),
            manifest.get("backend"),
            manifest.get("row_counts") or {},
            self.current,
        )
        if self.confirm is not None and not self.confirm(plan):
            raise RestoreRefused("restore cancelled: nothing was changed")


def _restore_sqlite(job: _Restore) -> RestoreResult:
    settings, path, backend, progress, force, target = job.parts()
    from ..persistence.engine import prepare_sqlite_file
    from ..persistence.gate import write_gate

    db = Path(settings.persistence.database_path)
    prepare_sqlite_file(str(db))  # the folder exists (0700); an odd file there is refused
    verified = verify_backup(settings, path, progress=progress, keep_in=db.parent)
    assert verified.extracted is not None
    work = verified.extracted.folder
    try:
        manifest = verified.manifest
        fmt = manifest.get("database_format")
        if fmt not in ("sqlite", "logical"):
            raise BadInput(_no_cross(path, manifest, "sqlite"))
        job.ask(manifest)
        fresh = verified.extracted.files[manifest["database_member"]]
        if fmt == "logical":  # a new SQLite file made from the rows, swapped in as a copy would be
            fresh = _sqlite_from_logical(settings, fresh, work / "fresh.db", progress)
        progress("swapping", None)
        when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        safety = db.with_name(f"{db.name}.pre-restore-{when}")
        with _vector_store(settings, verified.extracted, force) as vectors:
            if backend is not None:
                backend.db.engine.dispose()  # this process's connections: reopened on the new file
            gate = write_gate(str(db), settings.persistence.busy_timeout_ms)
            with gate:
                _safety_copy(db, safety, progress)
                os.replace(fresh, db)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{db}{suffix}")
                arc._fsync_dir(db.parent)
            os.chmod(db, 0o600)
            vectors_safety = _swap_vectors(vectors, verified.extracted, when) if vectors else None
        counts, _ = sqlite_facts(db)
        _check_counts(path, counts, manifest)
        files = _keep_files(settings, verified.extracted, when)
        return RestoreResult(path, target, counts, str(safety), vectors_safety, files)
    finally:
        arc.remove_tree(work)


def _no_cross(path: Path, manifest: dict[str, Any], kind: str) -> str:
    return (
        f"archive {path.name} holds a {manifest.get('database_format')} dump of a {manifest.get('backend')} database, "
        f"which only that kind of server reads: restore it there, or back it up without its dump tool "
        f"(the logical format restores into any backend), then migrate (mimir-tui migrate --to) into {kind}"
    )


def _sqlite_from_logical(settings: Any, export: Path, target: Path, progress: Progress) -> Path:
    """A SQLite database at ``target`` holding a logical export's rows (schema made by Mimir)."""
    from ..config import PersistenceSettings
    from ..persistence import open_backend
    from . import tables

    progress("loading", None)
    fresh = open_backend(PersistenceSettings(database_path=str(target)))
    try:
        with open(export, "rb") as f:
            tables.import_jsonl(f, fresh, name=export.name)
    finally:
        fresh.close()
    conn = __import__("sqlite3").connect(target)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    return target


def _rows_into(target: Any, batches: Any) -> None:
    """Replace every row of the target's tables with ``batches`` ((table, rows) in dependency
    order) in ONE transaction: all the archive's rows, or (on failure) the rows as they were."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import tables

    try:
        with tables.write_transaction(target) as conn:
            for t in reversed(tables.TABLES):
                conn.execute(t.delete())
            for table, rows in batches:
                if rows:
                    conn.execute(table.insert(), [dict(r) for r in rows])
    except SQLAlchemyError as exc:
        raise MimirError(f"restoring the rows failed, nothing changed: {tables.describe(exc)}") from None


def _safety_copy(db: Path, safety: Path, progress: Progress) -> None:
    """Fold the WAL into the database file (nothing is left in it for the swap), then copy the
    database with the backup API. A file SQLite calls damaged (a restore with ``--force``) is
    kept byte for byte instead, its WAL beside it: nothing of it is thrown away."""
    import shutil
    import sqlite3

    try:
        conn = sqlite3.connect(db, timeout=30)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        sqlite_copy(db, safety, progress, "safety copy")
    except sqlite3.DatabaseError:
        safety.unlink(missing_ok=True)
        for suffix in ("", "-wal"):
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", f"{safety}{suffix}")
                os.chmod(f"{safety}{suffix}", 0o600)


def _check_counts(path: Path, counts: dict[str, int], manifest: dict[str, Any]) -> None:
    expected = manifest.get("row_counts") or {}
    for table, n in expected.items():
        if counts.get(table) != n:
            raise MimirError(f"restored {path.name}, but table {table} has {counts.get(table)} rows, the archive {n}")


def _restore_server(job: _Restore) -> RestoreResult:
    settings, path, backend, progress, force, target = job.parts()
    from .backup import create_backup

    kind = settings.persistence.backend
    verified = verify_backup(
        settings, path, progress=progress, keep_in=arc.private_dir(Path(settings.persistence.backup_path))
    )
    assert verified.extracted is not None
    work = verified.extracted.folder
    try:
        manifest = verified.manifest
        fmt = manifest.get("database_format")
        wanted = "pg_dump" if kind == "postgres" else "mariadb-dump"
        if fmt not in (wanted, "sqlite", "logical"):
            raise BadInput(_no_cross(path, manifest, kind))
        job.ask(manifest)
        if backend is None:
            raise RestoreRefused("the current database cannot be read: its safety copy cannot be taken")
        progress("safety copy", None)
        safety = create_backup(settings, backend, verify=True, rotate=False)  # encrypted if backups are
        if not safety.verified:
            raise MimirError(f"the safety copy of {target} failed its check ({safety.verify_error}): nothing restored")
        dump = verified.extracted.files[manifest["database_member"]]
        env, url = _server_env(settings)
        progress("loading", None)
        backend.db.engine.dispose()
        when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        with _vector_store(settings, verified.extracted, force) as vectors:
            if fmt == wanted and kind == "mysql":
                _load_mysql_dump(settings, backend, dump, env, url, manifest)
            elif fmt == wanted:
                _load_dump(settings, kind, dump, env, url)
            else:
                _load_rows(settings, backend, fmt, dump, manifest)
            vectors_safety = _swap_vectors(vectors, verified.extracted, when) if vectors else None
        with backend.db.engine.connect() as conn:
            counts, _ = server_facts(conn)
        _check_counts(path, counts, manifest)
        files = _keep_files(settings, verified.extracted, when)
        return RestoreResult(path, target, counts, str(safety.path), vectors_safety, files)
    finally:
        arc.remove_tree(work)


def _load_rows(settings: Any, backend: Any, fmt: str, dump: Path, manifest: dict[str, Any]) -> None:
    """A SQLite copy or a logical export into the server database, in one transaction."""
    from ..config import PersistenceSettings
    from ..persistence import open_backend
    from . import tables

    if fmt == "logical":
        with open(dump, "rb") as f:
            reader = tables.LogicalReader(f, dump.name)
            tables.check_same_schema(reader.schema, backend)
            _rows_into(backend, reader.batches())
        return
    # The archive's SQLite copy, brought to this Mimir's schema (an older archive upgrades), then
    # read in one snapshot.
    source = open_backend(PersistenceSettings(database_path=str(dump)))
    try:
        with tables.snapshot(source) as snap:
            tables.check_same_schema(snap.revision(), backend)
            _rows_into(backend, ((t, rows) for t in tables.TABLES for rows in snap.batches(t)))
    finally:
        source.close()


def _load_mysql_dump(
    settings: Any, backend: Any, dump: Path, env: dict[str, str], url: Any, manifest: dict[str, Any]
) -> None:
    """MariaDB commits each DDL statement: a dump loaded straight into the database replaces its
    tables one by one. So the dump is loaded into a scratch database of its own first, and its
    rows then replace the target's in one transaction (all or nothing). Without the right to
    create a database, or at another schema revision, the dump is loaded straight in."""
    import secrets

    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from . import tables

    scratch = f"{url.database}_restore_{secrets.token_hex(4)}"[:64]
    engine = backend.engine
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{scratch}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            conn.commit()
    except SQLAlchemyError:
        log.warning("restore: cannot create a scratch database; loading %s table by table", dump.name)
        _load_dump(settings, "mysql", dump, env, url)
        return
    try:
        with open(dump, "rb") as f:
            run_tool([_tool("mariadb", "mysql"), *mysql_args(url), "--binary-mode", scratch], env, settings, stdin=f)
        with engine.connect() as conn:
            revision = conn.execute(text(f"SELECT version_num FROM `{scratch}`.alembic_version")).scalar()
        if revision != manifest.get("schema_revision") or revision != tables.schema_revision(backend):
            _load_dump(settings, "mysql", dump, env, url)  # another schema: its tables as they are
            return
        try:
            with tables.write_transaction(backend) as conn:
                for t in reversed(tables.TABLES):
                    conn.execute(t.delete())
                for t in tables.TABLES:
                    cols = ", ".join(f"`{c.name}`" for c in t.columns)
                    conn.execute(text(f"INSERT INTO `{t.name}` ({cols}) SELECT {cols} FROM `{scratch}`.`{t.name}`"))
        except SQLAlchemyError as exc:
            raise MimirError(f"restoring the rows failed, nothing changed: {tables.describe(exc)}") from None
    finally:
        with contextlib.suppress(SQLAlchemyError), engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{scratch}`"))
            conn.commit()


def _load_dump(settings: Any, kind: str, dump: Path, env: dict[str, str], url: Any) -> None:
    if kind == "postgres":
        tool = _tool("pg_restore")
        run_tool(
            [
                tool,
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--no-owner",
                "--exit-on-error",
                f"--dbname={url.database}",
                str(dump),
            ],
            env,
            settings,
        )
    else:
        tool = _tool("mariadb", "mysql")
        with open(dump, "rb") as f:
            run_tool([tool, *mysql_args(url), "--binary-mode", url.database], env, settings, stdin=f)


def _tool(*names: str) -> str:
    import shutil

    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise MimirError(f"no {names[0]} on PATH: install the database's client tools")


__all__ = ["RestorePlan", "RestoreRefused", "RestoreResult", "dump_tool", "restore_backup", "subprocess"]
