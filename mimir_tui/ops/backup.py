"""Online backups and their verification, for the command line, the dashboard and the service.

:func:`create_backup` takes a consistent copy of the database while it is in use, and writes
one archive (:mod:`.archive`) with the vector store, the config file, the pipeline files and a
manifest; then verifies it (:func:`verify_backup`) and rotates the folder.

SQLite: the backup API, copying pages in steps inside one read transaction of the source
connection. In WAL mode a reader never blocks a writer, and the read transaction pins the
snapshot, so the steps never restart however many commits land meanwhile (without it, SQLite
restarts a backup whenever another connection writes between two steps). The write gate
(:mod:`..persistence.gate`) orders writers only: a backup is a reader and does not take it.
The copy never includes the ``-mimir.lock`` file, and never is a file copy.

PostgreSQL: ``pg_dump`` in custom format on a snapshot exported from the transaction that
counts the rows, so the counts in the manifest are those of the dump. MariaDB/MySQL:
``mariadb-dump --single-transaction`` (counts from a consistent snapshot taken just before;
the dump's own snapshot may be a few commits later). Passwords go through the environment
(``PGPASSWORD``, ``MYSQL_PWD``), never the command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import BadInput, MimirError
from . import archive as arc
from .archive import Progress, no_progress
from .crypto import ArchiveDamaged, key_material

#: Pages per backup step: about 4 MiB with 4 KiB pages; progress is reported at each.
STEP_PAGES = 1024


@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    size_bytes: int
    seconds: float
    verified: bool
    verify_error: str | None = None
    rotated: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.path.name,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "backend": self.manifest.get("backend"),
            "row_counts": self.manifest.get("row_counts", {}),
            "verified": self.verified,
            "verify_error": self.verify_error,
            "rotated": [p.name for p in self.rotated],
        }


# -- SQLite copies -----------------------------------------------------------------------------


def sqlite_copy(source: Path, target: Path, progress: Progress = no_progress, phase: str = "database") -> None:
    """A consistent copy of the SQLite database ``source`` at ``target`` (a new file, 0600),
    taken online with the backup API in steps inside one read transaction (see the module's
    text). The copy is a self-contained file (rollback journal mode, no ``-wal``)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None, timeout=30)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here

        def step(status: int, remaining: int, total: int) -> None:
            progress(phase, (total - remaining) / total if total else 1.0)

        dst.execute("PRAGMA synchronous=OFF")  # a staging copy: the archive made of it is synced
        src.backup(dst, pages=STEP_PAGES, progress=step)
        src.execute("COMMIT")
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        src.close()
        dst.close()
    os.chmod(target, 0o600)


def sqlite_facts(path: Path) -> tuple[dict[str, int], str | None]:
    """Row counts per table (alembic_version and SQLite's own aside) and the schema revision."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts = {
            t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables if t != "alembic_version"
        }
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        return counts, revision
    finally:
        conn.close()


def sqlite_check(path: Path) -> str:
    """``ok``, or the first problem ``PRAGMA integrity_check`` finds (a file that is not a
    database: SQLite's message)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return str(conn.execute("PRAGMA integrity_check(1)").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)


# -- server dumps ------------------------------------------------------------------------------


def _server_env(settings: Any) -> tuple[dict[str, str], Any]:
    from ..persistence.engine import server_url

    url = server_url(settings.persistence)
    env = dict(os.environ)
    if url.get_backend_name() == "postgresql":
        env.update(PGHOST=url.host or "127.0.0.1", PGPORT=str(url.port or 5432), PGDATABASE=url.database or "")
        if url.username:
            env["PGUSER"] = url.username
        if url.password is not None:
            env["PGPASSWORD"] = str(url.password)
        else:
            env.pop("PGPASSWORD", None)
    else:
        if url.password is not None:
            env["MYSQL_PWD"] = str(url.password)
        else:
            env.pop("MYSQL_PWD", None)
    return env, url


def mysql_args(url: Any) -> list[str]:
    args = [f"--host={url.host or '127.0.0.1'}", f"--port={url.port or 3306}"]
    if url.username:
        args.append(f"--user={url.username}")
    return args


def run_tool(argv: list[str], env: dict[str, str], settings: Any, *, stdout: Any = None, stdin: Any = None) -> None:
    """Run a database tool; its failure is a :class:`MimirError` with its first line of stderr
    (passwords scrubbed)."""
    from ..persistence.engine import scrub

    try:
        proc = subprocess.run(argv, env=env, stdout=stdout, stdin=stdin, stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise MimirError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = scrub(lines[-1] if lines else f"exit status {proc.returncode}", settings.persistence)
        raise MimirError(f"{Path(argv[0]).name} failed: {detail}")


def dump_tool(backend: str) -> str | None:
    names = ("pg_dump",) if backend == "postgres" else ("mariadb-dump", "mysqldump")
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def server_dump(settings: Any, backend_obj: Any, staging: Path) -> tuple[str, Path, dict[str, int], str | None]:
    """Dump the server database into ``staging``: (format, file, row counts, revision)."""
    from sqlalchemy import text

    kind = settings.persistence.backend
    tool = dump_tool(kind)
    if tool is None:
        return logical_dump(backend_obj, staging)
    env, url = _server_env(settings)
    engine = backend_obj.engine
    target = staging / ("mimir.pgdump" if kind == "postgres" else "mimir.sql")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with engine.connect() as conn, os.fdopen(fd, "wb") as out:
        if kind == "postgres":
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
            counts, revision = server_facts(conn)
            run_tool([tool, "--format=custom", f"--snapshot={snapshot}", "--no-owner"], env, settings, stdout=out)
            conn.rollback()
            return "pg_dump", target, counts, revision
        revision = server_facts(conn, count=False)[1]
        conn.rollback()
        # One INSERT a row: the dump's own rows are counted from it (its snapshot is its own).
        run_tool(
            [
                tool,
                *mysql_args(url),
                "--single-transaction",
                "--skip-lock-tables",
                "--hex-blob",
                "--skip-extended-insert",
                url.database,
            ],
            env,
            settings,
            stdout=out,
        )
    counts = mysql_dump_counts(target)
    return "mariadb-dump", target, counts, revision


def logical_dump(backend_obj: Any, staging: Path) -> tuple[str, Path, dict[str, int], str | None]:
    """Every table from one consistent snapshot as JSON lines (:mod:`.tables`): what a server
    backup holds without its dump tool, and what restores into any backend."""
    from . import tables

    target = staging / "mimir.jsonl"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        summaries = tables.write_jsonl(backend_obj, out)
    with open(target, "rb") as f:
        revision = tables.LogicalReader(f, target.name).schema
    return "logical", target, {name: s.rows for name, s in summaries.items()}, revision


def pg_dump_counts(tool: str, dump: Path, name: str) -> dict[str, int]:
    """Rows per table in a custom-format dump, read by ``pg_restore --data-only`` to stdout (one
    line a row in COPY's text format, newlines escaped), without a server."""
    proc = subprocess.Popen(
        [tool, "--data-only", "--file=-", str(dump)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    counts: dict[str, int] = {}
    table: str | None = None
    for line in proc.stdout:
        if table is not None:
            if line == b"\\.\n":
                table = None
            else:
                counts[table] += 1
        elif line.startswith(b"COPY "):
            table = line.split(b" ", 2)[1].decode().rpartition(".")[2].strip('"')
            counts.setdefault(table, 0)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise ArchiveDamaged(f"{name}: pg_restore cannot read the dump: {err.decode(errors='replace').strip()[:200]}")
    counts.pop("alembic_version", None)
    return dict(sorted(counts.items()))


def mysql_dump_counts(dump: Path) -> dict[str, int]:
    """Rows per table in a ``mariadb-dump --skip-extended-insert`` file (one INSERT a row), and
    every table it creates (0 if it has no rows)."""
    counts: dict[str, int] = {}
    with open(dump, "rb") as f:
        for line in f:
            if line.startswith(b"INSERT INTO `"):
                name = line[13 : line.index(b"`", 13)].decode()
                counts[name] = counts.get(name, 0) + 1
            elif line.startswith(b"CREATE TABLE `"):
                counts.setdefault(line[14 : line.index(b"`", 14)].decode(), 0)
    counts.pop("alembic_version", None)
    return dict(sorted(counts.items()))


def server_facts(conn: Any, *, count: bool = True) -> tuple[dict[str, int], str | None]:
    from sqlalchemy import inspect, text

    names = sorted(inspect(conn).get_table_names())
    counts = {}
    for name in names if count else ():
        if name == "alembic_version":
            continue
        quoted = conn.dialect.identifier_preparer.quote(name)
        counts[name] = int(conn.execute(text(f"SELECT count(*) FROM {quoted}")).scalar())
    revision = (
        conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if "alembic_version" in names else None
    )
    return counts, revision


# -- the vector store ---------------------------------------------------------------------------


def copy_vectors(settings: Any, into: Path) -> bool | None:
    """Copy the embedded vector store into ``into``: SQLite files with the backup API, the rest
    byte for byte, the owner lock file never. True: copied while holding the store's owner lock
    (no writer meanwhile); False: another process holds it (its SQLite part is still a
    consistent copy, its index files as they were); None: no store to copy."""
    p = settings.persistence
    folder = Path(p.vector_db_path)
    if not p.enable_vector_db or not folder.is_dir() or settings.vectors.server_url:
        return None
    from ..vectors import VectorStoreUnavailable, owner

    held = True
    try:
        owner.acquire(folder, 2.0)
    except VectorStoreUnavailable:
        held = False
    try:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.name == owner.LOCK_NAME:
                continue
            rel = path.relative_to(folder)
            if path.name.endswith(("-wal", "-shm", "-journal")):
                continue  # part of a SQLite file, copied through it
            target = into / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _is_sqlite(path):
                sqlite_copy(path, target)
            else:
                shutil.copyfile(path, target)
                os.chmod(target, 0o600)
    finally:
        if held:
            owner.release(folder)
    return held


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


# -- create -------------------------------------------------------------------------------------


def _pipeline_files(settings: Any) -> Path | None:
    folder = Path(settings.pipelines.directory)
    return folder if folder.is_dir() else None


def create_backup(
    settings: Any,
    backend: Any = None,
    *,
    encrypt: bool | None = None,
    progress: Progress = no_progress,
    verify: bool = True,
    rotate: bool = True,
    now: datetime | None = None,
) -> BackupResult:
    """Write one archive of the configured database (and vector store, config and pipeline
    files) into ``persistence.backup_path``, verify it, and rotate the folder. ``backend``: an
    open :class:`~mimir_tui.persistence.PersistenceBackend` (servers need it; SQLite reads the
    file directly)."""
    from .. import __version__

    p = settings.persistence
    encrypt = p.backup_encrypt if encrypt is None else encrypt
    secret = key_material(settings, required=True) if encrypt else None
    folder = arc.private_dir(Path(p.backup_path))
    started = time.perf_counter()
    when = (now or datetime.now(UTC)).astimezone(UTC)
    arc.remove_leftovers(folder)
    staging = arc.work_dir(folder, "staging")
    try:
        manifest: dict[str, Any] = {
            "format": "mimir-backup",
            "format_version": 1,
            "created": when.isoformat(),
            "mimir_version": __version__,
            "backend": p.backend,
            "host": socket.gethostname(),
        }
        if p.backend == "sqlite":
            db = Path(p.database_path)
            if not db.is_file():
                raise BadInput(f"database_path {db}: no database file to back up")
            copy = staging / "mimir.db"
            sqlite_copy(db, copy, progress)
            counts, revision = sqlite_facts(copy)
            fmt, member, dump = "sqlite", "database/mimir.db", copy
        else:
            if backend is None:
                raise MimirError("a server backup needs the open backend")
            progress("database", None)
            fmt, dump, counts, revision = server_dump(settings, backend, staging)
            member = f"database/{dump.name}"
        manifest.update(database_format=fmt, database_member=member, row_counts=counts, schema_revision=revision)
        vectors_dir = staging / "vectors"
        progress("vectors", None)
        held = copy_vectors(settings, vectors_dir)
        if held is not None:
            manifest["vectors"] = {"path": p.vector_db_path, "quiescent": held}
        size = max(1, dump.stat().st_size)
        done = [0]

        def written(n: int) -> None:
            done[0] += n
            if done[0] % (32 << 20) < n:
                progress("writing", min(1.0, done[0] / size))

        with arc.ArchiveWriter(folder, when, compress=p.backup_compress, secret=secret) as writer:
            writer.add_file(member, dump, written)
            if held is not None:
                writer.add_tree("vectors", vectors_dir)
            if settings.config_path and Path(settings.config_path).is_file():
                writer.add_file(f"config/{Path(settings.config_path).name}", Path(settings.config_path))
                manifest["config_file"] = str(settings.config_path)
            pipelines = _pipeline_files(settings)
            if pipelines is not None:
                writer.add_tree("pipelines", pipelines, skip=lambda f: f.suffix.lower() not in (".yaml", ".yml"))
                manifest["pipelines_dir"] = str(pipelines)
            path = writer.finish(manifest)
    finally:
        arc.remove_tree(staging)
    result = BackupResult(path, manifest, path.stat().st_size, 0.0, False)
    if verify:
        try:
            verify_backup(settings, path, progress=progress)
            result.verified = True
        except ArchiveDamaged as exc:
            result.verify_error = str(exc)
    else:
        arc.record_verification(path, manifest, None, None)
    if rotate and result.verified:
        result.rotated = arc.rotate(folder, p.backup_keep_last, p.backup_keep_daily, p.backup_keep_weekly)
    result.seconds = time.perf_counter() - started
    return result


# -- verify -------------------------------------------------------------------------------------


@dataclass
class Verified:
    archive: Path
    manifest: dict[str, Any]
    row_counts: dict[str, int] | None  # counted in the copy (None: a dump, counted at restore)
    extracted: arc.Extracted | None = None  # kept only when asked for (restore)

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive.name,
            "ok": True,
            "backend": self.manifest.get("backend"),
            "created": self.manifest.get("created"),
            "schema_revision": self.manifest.get("schema_revision"),
            "row_counts": self.manifest.get("row_counts", {}),
            "members": len(self.manifest.get("members", {})),
        }


def resolve_archive(settings: Any, name: str) -> Path:
    """``name`` as given, or in ``backup_path``; :class:`BadInput` if neither is a file."""
    given = Path(name).expanduser()
    for candidate in (given, Path(settings.persistence.backup_path) / name):
        if candidate.is_file():
            return candidate.resolve()
    raise BadInput(f"archive {name}: no such file (looked in . and {settings.persistence.backup_path})")


def check_database(extracted: arc.Extracted, name: str) -> dict[str, int] | None:
    """The database member is sound: SQLite's integrity check and the manifest's row counts;
    a dump: the tool can read it (pg_restore --list) or it ends as a complete dump does."""
    manifest = extracted.manifest
    member = manifest.get("database_member")
    fmt = manifest.get("database_format")
    path = extracted.files.get(member) if isinstance(member, str) else None
    if path is None:
        raise ArchiveDamaged(f"{name}: the manifest names no database member")
    if fmt == "sqlite":
        verdict = sqlite_check(path)
        if verdict != "ok":
            raise ArchiveDamaged(f"{name}: the database copy fails its integrity check: {verdict}")
        counts, revision = sqlite_facts(path)
        expected = manifest.get("row_counts") or {}
        for table in sorted(set(expected) | set(counts)):
            if counts.get(table) != expected.get(table):
                raise ArchiveDamaged(
                    f"{name}: table {table} has {counts.get(table)} rows in the copy, "
                    f"the manifest says {expected.get(table)}"
                )
        if revision != manifest.get("schema_revision"):
            raise ArchiveDamaged(f"{name}: schema revision {revision!r} differs from the manifest's")
        return counts
    if fmt == "pg_dump":
        tool = shutil.which("pg_restore")
        if tool is None:
            return None  # the checksums hold; without pg_restore the dump's rows are not counted
        counts = pg_dump_counts(tool, path, name)
        if counts != (manifest.get("row_counts") or {}):
            raise ArchiveDamaged(f"{name}: the dump's row counts {counts} differ from the manifest's")
        return counts
    if fmt == "mariadb-dump":
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            tail = f.read()
        if b"-- Dump completed" not in tail:
            raise ArchiveDamaged(f"{name}: the SQL dump is incomplete (no 'Dump completed' line)")
        counts = mysql_dump_counts(path)
        if counts != (manifest.get("row_counts") or {}):
            raise ArchiveDamaged(f"{name}: the dump's row counts differ from the manifest's")
        return counts
    if fmt == "logical":
        from .tables import LogicalFormatError, LogicalReader

        with open(path, "rb") as f:
            try:
                reader = LogicalReader(f, f"{name}: {member}")
                for _ in reader.batches():
                    pass
            except LogicalFormatError as exc:
                raise ArchiveDamaged(str(exc)) from None
        assert reader.summaries is not None
        counts = {t: s.rows for t, s in reader.summaries.items()}
        if counts != (manifest.get("row_counts") or {}) or reader.schema != manifest.get("schema_revision"):
            raise ArchiveDamaged(f"{name}: the logical export's rows or schema differ from the manifest's")
        return counts
    raise ArchiveDamaged(f"{name}: unknown database format {fmt!r}")


def verify_backup(
    settings: Any, archive: Path | str, *, progress: Progress = no_progress, keep_in: Path | None = None
) -> Verified:
    """Read the whole archive (decrypting it), check every member and the database copy, and
    record the result next to it. :class:`ArchiveDamaged` (exit 1) with the reason on failure.
    ``keep_in``: extract into a new folder inside this one and keep it (restore uses it)."""
    path = archive if isinstance(archive, Path) else resolve_archive(settings, archive)
    parent = keep_in or arc.private_dir(Path(settings.persistence.backup_path))
    arc.remove_leftovers(parent)
    work = arc.work_dir(parent, "verify")
    keep = False
    manifest: dict[str, Any] | None = None
    try:
        extracted = arc.extract(path, settings, work, progress)
        manifest = extracted.manifest
        progress("checking", None)
        counts = check_database(extracted, path.name)
        with contextlib.suppress(OSError):  # an archive on read-only media verifies all the same
            arc.record_verification(path, manifest, True, None)
        keep = keep_in is not None
        return Verified(path, manifest, counts, extracted if keep else None)
    except ArchiveDamaged as exc:
        with contextlib.suppress(OSError):
            arc.record_verification(path, manifest, False, str(exc))
        raise
    finally:
        if not keep:
            arc.remove_tree(work)
