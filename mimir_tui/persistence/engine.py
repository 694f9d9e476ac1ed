"""Engines for SQLite, PostgreSQL and MySQL/MariaDB, set up the way the seed asks.

SQLite: WAL, busy_timeout, synchronous=NORMAL and foreign_keys=ON on every connection; the
driver's own transaction handling is turned off so that write transactions begin IMMEDIATE
(a deferred read-then-write transaction fails with "database is locked" despite busy_timeout).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..config import PersistenceSettings
from ..errors import BadInput, PersistenceError
from ..safeio import file_kind
from ..secrets import MASK, is_secret_param, mask_text, mask_url

SQLITE_MAGIC = b"SQLite format 3\x00"
WRITE = {"mimir_write": True}
#: SQLite's page cache per connection, in KiB (SQLite's default is 2,000). In WAL mode a
#: connection drops its cache whenever another one has committed, which a running scheduler does
#: many times a second: a larger cache is seldom read again, and costs an instance up to 2 MiB
#: for each connection it keeps (bench/scheduler.py, 1,000 jobs: 4.9 MiB of SQLite's memory,
#: 1.5 MiB with 256 KiB).
SQLITE_CACHE_KIB = 256
#: The page cache of a bulk operation's connection while it runs (a retention batch, VACUUM, an
#: integrity check): SQLite's default (see Database._bulk_cache).
BULK_CACHE_KIB = 2000

_SCHEMES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
    "mysql+mysqldb": "mysql+mysqldb",
}


def server_url(settings: PersistenceSettings) -> URL:
    """The SQLAlchemy URL of a server backend, from the seed's ``connection_string``."""
    raw = settings.connection_string.strip()
    if not raw:
        raise BadInput(f"persistence.connection_string is required for backend {settings.backend!r}")
    scheme, sep, _ = raw.partition("://")
    if not sep:
        raise BadInput(f"persistence.connection_string {mask_url(raw)!r} is not a URL (scheme://user:password@host/db)")
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise BadInput(f"persistence.connection_string: unknown scheme {scheme!r} (use postgres:// or mysql://)")
    want = "postgresql" if settings.backend == "postgres" else "mysql"
    if not driver.startswith(want):
        raise BadInput(f"persistence.connection_string scheme {scheme!r} does not match backend {settings.backend!r}")
    try:
        url = make_url(driver + "://" + raw.split("://", 1)[1])
    except ArgumentError:
        raise BadInput(f"persistence.connection_string {mask_url(raw)!r} is not a valid URL") from None
    if url.host and "@" in url.host and url.password is not None:
        # An unescaped "@" in the password: SQLAlchemy ends the password at the first "@"
        # and takes the rest for the host; the password runs to the last one (as urlsplit has it).
        tail, _, host = url.host.rpartition("@")
        url = url.set(password=f"{url.password}@{tail}", host=host)
    if not url.database:
        raise BadInput(f"persistence.connection_string {mask_url(raw)!r} names no database")
    return url


def display_url(settings: PersistenceSettings) -> str:
    """Where the data lives, safe to print (no password)."""
    if settings.backend == "sqlite":
        return f"sqlite:///{settings.database_path}"
    try:
        return mask_url(server_url(settings).render_as_string(hide_password=True))
    except BadInput:
        return mask_url(settings.connection_string)


def scrub(text: str, settings: PersistenceSettings | None) -> str:
    """Remove the connection string's password and secret query values from a message."""
    if settings is None or not settings.connection_string:
        return text
    try:
        url = server_url(settings)
        found = [url.password, *(v for k, v in url.query.items() if is_secret_param(k))]
    except BadInput:
        found = []
    text = text.replace(settings.connection_string, mask_url(settings.connection_string))
    for value in found:
        for one in value if isinstance(value, tuple) else [value]:
            if one:
                text = text.replace(str(one), MASK)
    return mask_text(text)


def prepare_sqlite_file(path: str) -> None:
    """Create the data directory (0700) and the database file (0600), or refuse what is not one.

    Only a regular file is ever opened or chmodded: a device (``/dev/null``), a FIFO, a socket or
    a directory at ``database_path`` is refused before anything touches it (opening some devices
    has effects of its own), and so is a regular file that is neither empty nor a SQLite
    database: each is left byte-for-byte and mode-for-mode untouched. An empty regular file is
    taken as a new database, as SQLite itself does.
    """
    db = Path(path)
    try:
        st = db.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise PersistenceError(f"cannot read database file {db}: {exc.strerror or exc}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        raise PersistenceError(f"database_path {db} is {kind}, not a SQLite database file (left untouched)")
    parent = db.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise PersistenceError(f"cannot create data directory {parent}: {exc.strerror or exc}") from None
    if not parent.is_dir():
        raise PersistenceError(f"data directory {parent} is not a directory")
    if st is not None:
        if (st.st_dev, st.st_ino) not in _HEADS_READ:
            head = _read_head(db, st)
            if head and head != SQLITE_MAGIC:
                raise PersistenceError(f"database_path {db} is not a SQLite database (left untouched)")
            _HEADS_READ.add((st.st_dev, st.st_ino))
        if not os.access(db, os.W_OK):
            raise PersistenceError(f"database file {db} is not writable")
    else:
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PersistenceError(f"data directory {parent} is not writable")
        try:
            fd = os.open(db, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                made = os.fstat(fd)
                _HEADS_READ.add((made.st_dev, made.st_ino))  # ours, new: never read again
            finally:
                os.close(fd)
        except FileExistsError:  # made meanwhile by another process: checked like any existing file
            prepare_sqlite_file(path)
            return
        except OSError as exc:
            raise PersistenceError(f"cannot create database file {db}: {exc.strerror or exc}") from None
    restrict_file_modes(db)


#: The database files (device, inode) whose first bytes this process has read: read once. A
#: descriptor of the file that this process closes drops every SQLite lock the process holds on
#: it (POSIX advisory locks belong to the process): a second backend opened on a file this
#: process has open (the dashboard's, a command's) would otherwise let another program's last
#: connection take it for unused, checkpoint and delete its write-ahead log under the open
#: connections ("disk I/O error" at their next statement).
_HEADS_READ: set[tuple[int, int]] = set()


def _read_head(db: Path, checked: os.stat_result) -> bytes:
    """The first bytes of the regular file ``checked`` (its ``stat()``) at ``db``; a device or a
    FIFO swapped in meanwhile is refused (non-blocking: a FIFO cannot hang the open)."""
    try:
        fd = os.open(db, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
                raise PersistenceError(f"database_path {db} changed while it was checked (left untouched)")
            return os.read(fd, len(SQLITE_MAGIC))
        finally:
            os.close(fd)
    except OSError as exc:
        raise PersistenceError(f"cannot read database file {db}: {exc.strerror or exc}") from None


def restrict_file_modes(db: Path) -> None:
    """Database, WAL and shared-memory files readable by their owner only, if they are regular
    files (the WAL and shared-memory files not through a symbolic link). Nothing is opened:
    closing a descriptor of a database file would drop the SQLite locks this process holds on
    it (POSIX advisory locks belong to the process, not the descriptor)."""
    wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
    for candidate, follow in ((db, True), (wal, False), (shm, False)):
        try:
            st = candidate.stat() if follow else candidate.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISREG(st.st_mode) and mode & 0o077:
                os.chmod(candidate, mode & 0o700 or 0o600)
        except OSError:
            pass


def make_engine(settings: PersistenceSettings) -> Engine:
    """An engine for the configured backend; the database is not contacted yet."""
    if settings.backend == "sqlite":
        prepare_sqlite_file(settings.database_path)
        return _sqlite_engine(settings)
    url = server_url(settings)
    kwargs: dict[str, Any] = dict(
        pool_pre_ping=True, pool_size=settings.pool_size, max_overflow=settings.pool_size * 2, pool_recycle=1800
    )
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": max(1, int(settings.connect_timeout))}
    else:
        kwargs["connect_args"] = {"connect_timeout": max(1, int(settings.connect_timeout)), "charset": "utf8mb4"}
        kwargs["isolation_level"] = "READ COMMITTED"
    try:
        return create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        extra = "postgres" if settings.backend == "postgres" else "mysql"
        raise PersistenceError(
            f"the {settings.backend} driver is not installed ({exc.name}); install mimir-tui[{extra}]"
        ) from None


def _sqlite_engine(settings: PersistenceSettings) -> Engine:
    timeout_s = settings.busy_timeout_ms / 1000.0
    engine = create_engine(
        URL.create("sqlite", database=settings.database_path),
        connect_args={"timeout": timeout_s, "check_same_thread": False, "isolation_level": None},
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size * 2,
    )
    busy = int(settings.busy_timeout_ms)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # every new connection
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("mimir_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine
