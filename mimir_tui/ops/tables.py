"""Mimir's tables in a logical form that every backend reads and writes alike: what migration,
logical backups and restores across backends share.

- :data:`TABLES`: the tables a copy holds, parents before children (``alembic_version`` is not
  one of them: a target is brought to the schema head by ``open_backend`` and must be at the
  source's revision, :func:`check_same_schema`).
- :func:`snapshot`: one connection reading every table in one consistent snapshot (SQLite: one
  read transaction; PostgreSQL: REPEATABLE READ READ ONLY; MariaDB/MySQL: START TRANSACTION
  WITH CONSISTENT SNAPSHOT), while the service keeps writing. :meth:`Snapshot.batches` pages a
  table by its primary key (keyset pagination: never a whole table in memory), in code-point
  order of the key on every backend (on PostgreSQL with a collation other than C: one query
  ordered by ``COLLATE "C"``, read through a server-side cursor, batch by batch).
- :func:`canonical` / :func:`canonical_bytes`: a row as JSON data (times as UTC ISO-8601 with
  microseconds, JSON columns as their parsed value, flags as booleans, floats as floats) and as
  the bytes a checksum hashes (keys sorted, compact, UTF-8). A table's checksum is the SHA-256
  of its rows' canonical bytes, each followed by a newline, in primary-key order: the same
  data gives the same checksum on SQLite, PostgreSQL and MariaDB.
- :func:`insert_rows`, :func:`clear_tables`: writing a target, one transaction per batch.
- :func:`write_jsonl` / :class:`LogicalReader` / :func:`import_jsonl`: a whole database as one
  stream of JSON lines (the logical export a backup archive can hold), format below.
- :func:`copy_tables`: source to target, batch by batch, from one snapshot.

The JSON-lines format (UTF-8, one JSON object a line)::

    {"format": "mimir-logical", "version": 1, "schema": "0008", "tables": ["scheduled_jobs", ...]}
    {"table": "scheduled_jobs", "row": {...canonical row...}}
    ...                                  (tables in the header's order, rows in key order)
    {"end": true, "tables": {"scheduled_jobs": {"rows": 3, "sha256": "..."}, ...}}

The last line makes a truncated stream detectable; a reader recomputes every count and
checksum and refuses a stream whose rows do not match it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Boolean, Connection, Engine, Float, Integer, Table, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import MimirError, PersistenceError
from ..persistence.engine import WRITE
from ..persistence.models import EXECUTIONS, JOBS, PIPELINES, QUEUE, WORKERS
from ..persistence.types import JSONText, UTCDateTime, as_utc
from ..secrets import mask_text

#: The tables of a copy, parents before children (insert in this order, delete in reverse).
TABLES: tuple[Table, ...] = (JOBS, PIPELINES, EXECUTIONS, WORKERS, QUEUE)
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
TABLE_NAMES: tuple[str, ...] = tuple(BY_NAME)
DEFAULT_BATCH = 1000
FORMAT = "mimir-logical"
FORMAT_VERSION = 1

#: ``progress(table_name, rows_done_in_table, rows_in_table)``, called after each batch (and
#: once with 0 done when a table starts).
Progress = Callable[[str, int, int], None]


class LogicalFormatError(MimirError):
    """A logical export that cannot be read back: damaged, truncated, or not one of ours."""


@dataclass
class TableSummary:
    """A table's row count and checksum (SHA-256 of its canonical rows in key order)."""

    rows: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256}


class Digest:
    """A table's checksum, fed row by row in key order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def add(self, line: bytes) -> None:
        self._hash.update(line)
        self._hash.update(b"\n")
        self.rows += 1

    def summary(self) -> TableSummary:
        return TableSummary(self.rows, self._hash.hexdigest())


# -- the canonical form of a row -----------------------------------------------------------


def _kind(column: Any) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "datetime"
    if isinstance(kind, JSONText):
        return "json"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Float):
        return "float"
    if isinstance(kind, Integer):
        return "int"
    return "text"


_KINDS: dict[str, list[tuple[str, str]]] = {t.name: [(c.name, _kind(c)) for c in t.columns] for t in TABLES}


def _table(table: Table | str) -> Table:
    if isinstance(table, Table):
        return table
    try:
        return BY_NAME[table]
    except KeyError:
        raise LogicalFormatError(f"unknown table {table!r} (Mimir's are {', '.join(TABLE_NAMES)})") from None


def canonical(table: Table | str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of Python values (as read through the models' column types) as JSON data that is
    the same on every backend."""
    out: dict[str, Any] = {}
    for name, kind in _KINDS[_table(table).name]:
        value = row[name]
        if value is None:
            out[name] = None
        elif kind == "datetime":
            out[name] = as_utc(value).isoformat(timespec="microseconds")
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "float":
            out[name] = float(value)
        elif kind == "int":
            out[name] = int(value)
        else:  # text, and JSON columns as their parsed value (key order is the dump's business)
            out[name] = value
    return out


def from_canonical(table: Table | str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical row back to the Python values an INSERT binds; a row whose columns are not
    the table's is refused naming them."""
    t = _table(table)
    kinds = _KINDS[t.name]
    if len(data) != len(kinds) or any(name not in data for name, _ in kinds):
        missing = sorted({n for n, _ in kinds} - set(data))
        extra = sorted(set(data) - {n for n, _ in kinds})
        raise LogicalFormatError(f"table {t.name}: a row's columns differ (missing {missing}, unknown {extra})")
    out: dict[str, Any] = {}
    for name, kind in kinds:
        value = data[name]
        if value is not None and kind == "datetime":
            try:
                value = as_utc(datetime.fromisoformat(value))
            except (TypeError, ValueError):
                raise LogicalFormatError(f"table {t.name}: column {name} holds {value!r}, not a time") from None
        out[name] = value
    return out


def canonical_bytes(data: Any) -> bytes:
    """A canonical row as the bytes its table's checksum hashes: keys sorted, compact, UTF-8."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


# -- reading: one consistent snapshot -------------------------------------------------------


def engine_of(source: Any) -> Engine:
    """The engine of an Engine, a PersistenceBackend (``.engine``) or anything with one."""
    if isinstance(source, Engine):
        return source
    engine = getattr(source, "engine", None)
    if isinstance(engine, Engine):
        return engine
    raise TypeError(f"not an engine or a backend: {type(source).__name__}")


class Snapshot:
    """Reads of one database within one consistent snapshot (see :func:`snapshot`)."""

    def __init__(self, conn: Connection, *, byte_order_keys: bool) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        # PostgreSQL sorts text by the database's collation: keys are compared as "C" (code
        # points, as SQLite and MariaDB's binary collation do) unless that is the collation.
        self._collate = not byte_order_keys

    def revision(self) -> str | None:
        """The schema revision (``alembic_version``), None on a database without one."""
        from ..persistence.migrate import current_revision

        return current_revision(self.conn)

    def count(self, table: Table | str) -> int:
        return int(self.conn.execute(select(func.count()).select_from(_table(table))).scalar_one())

    def counts(self) -> dict[str, int]:
        return {t.name: self.count(t) for t in TABLES}

    def batches(self, table: Table | str, batch: int = DEFAULT_BATCH) -> Iterator[list[dict[str, Any]]]:
        """The table's rows (Python values by column name), ``batch`` at a time, in code-point
        order of the primary key: each page starts after the last key of the one before
        (keyset pagination, on the primary key's index). On PostgreSQL with a collation other
        than C, which cannot use the index for ``COLLATE "C"`` (a keyset page would sort the
        whole rest of the table each time), one sorted query is read through a server-side
        cursor instead, ``batch`` rows at a time."""
        t = _table(table)
        (pk,) = t.primary_key.columns
        size = max(1, batch)
        pages = self._sorted(t, pk, size) if self._collate else self._keyset(t, pk, size)
        last: str | None = None
        for rows in pages:
            if (last is not None and rows[0][pk.name] <= last) or any(
                a[pk.name] >= b[pk.name] for a, b in zip(rows, rows[1:], strict=False)
            ):  # a collation this module does not know: the checksums would differ
                raise PersistenceError(
                    f"table {t.name}: the database does not return {pk.name} in code-point order "
                    f"(collation of {self.dialect}); cannot copy it in a stable order"
                )
            last = rows[-1][pk.name]
            yield rows

    def _keyset(self, t: Table, pk: Any, size: int) -> Iterator[list[dict[str, Any]]]:
        page = select(t).order_by(pk).limit(size)
        last: str | None = None
        while True:
            stmt = page if last is None else page.where(pk > last)
            rows = [dict(r._mapping) for r in self.conn.execute(stmt)]
            if rows:
                yield rows
            if len(rows) < size:
                return
            last = rows[-1][pk.name]

    def _sorted(self, t: Table, pk: Any, size: int) -> Iterator[list[dict[str, Any]]]:
        stmt = select(t).order_by(pk.collate("C")).execution_options(yield_per=size)
        result = self.conn.execute(stmt)
        try:
            for part in result.partitions(size):
                yield [dict(r._mapping) for r in part]
        finally:
            result.close()

    def summaries(self, progress: Progress | None = None, batch: int = DEFAULT_BATCH) -> dict[str, TableSummary]:
        """Row count and checksum of every table."""
        out: dict[str, TableSummary] = {}
        for t in TABLES:
            digest = Digest()
            for rows in self.batches(t, batch):
                for row in rows:
                    digest.add(canonical_bytes(canonical(t, row)))
                if progress:
                    progress(t.name, digest.rows, -1)
            out[t.name] = digest.summary()
        return out


@contextmanager
def snapshot(source: Any) -> Iterator[Snapshot]:
    """One connection to ``source`` (an Engine or a backend) in a read-only transaction that sees
    one consistent state of every table; rolled back at the end."""
    engine = engine_of(source)
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        elif dialect in ("mysql", "mariadb"):
            conn.execution_options(isolation_level="REPEATABLE READ")
        trans = conn.begin()  # SQLite: "BEGIN" (the engine's begin hook, see persistence.engine)
        try:
            byte_order = True
            if dialect in ("mysql", "mariadb"):
                conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            elif dialect == "sqlite":
                driver = conn.connection.driver_connection
                if not getattr(driver, "in_transaction", True):  # an engine without Mimir's hook
                    conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()  # the snapshot starts here
            elif dialect == "postgresql":
                collation = conn.execute(
                    text("SELECT datcollate FROM pg_database WHERE datname = current_database()")
                ).scalar()
                byte_order = collation in ("C", "POSIX")
            yield Snapshot(conn, byte_order_keys=byte_order)
        finally:
            try:
                trans.rollback()  # nothing was written; a broken connection must not hide the error
            except SQLAlchemyError:
                pass


def export_rows(source: Any, table: Table | str, batch: int = DEFAULT_BATCH) -> Iterator[list[dict[str, Any]]]:
    """One table's rows in key order, ``batch`` at a time, in a snapshot of its own. For several
    tables as of one moment, read them from one :func:`snapshot`."""
    with snapshot(source) as snap:
        yield from snap.batches(table, batch)


def table_counts(source: Any) -> dict[str, int]:
    """Rows per table, as of one moment."""
    with snapshot(source) as snap:
        return snap.counts()


def table_summaries(source: Any, batch: int = DEFAULT_BATCH) -> dict[str, TableSummary]:
    """Row count and checksum per table, as of one moment."""
    with snapshot(source) as snap:
        return snap.summaries(batch=batch)


def table_checksums(source: Any, batch: int = DEFAULT_BATCH) -> dict[str, str]:
    """SHA-256 per table over its canonical rows in key order, as of one moment."""
    return {name: s.sha256 for name, s in table_summaries(source, batch).items()}


def schema_revision(source: Any) -> str | None:
    with snapshot(source) as snap:
        return snap.revision()


def check_same_schema(source_revision: str | None, target: Any) -> None:
    """Refuse a target whose schema revision is not the source's (a copy needs the same columns)."""
    target_revision = schema_revision(target)
    if source_revision != target_revision:
        raise PersistenceError(
            f"the target's schema version is {target_revision!r}, the source's {source_revision!r}: "
            "open both with this Mimir first (it upgrades them to its head)"
        )


# -- writing ---------------------------------------------------------------------------------


@contextmanager
def write_transaction(target: Any) -> Iterator[Connection]:
    """A write transaction on ``target``: a backend's own (behind its SQLite write gate), or an
    engine's (BEGIN IMMEDIATE on a Mimir SQLite engine)."""
    db = getattr(target, "db", None)
    if db is not None and hasattr(db, "write"):
        with db.write() as conn:
            yield conn
        return
    with engine_of(target).execution_options(**WRITE).begin() as conn:
        yield conn


def insert_rows(target: Any, table: Table | str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert rows of Python values in one transaction (one executemany); returns how many."""
    if not rows:
        return 0
    with write_transaction(target) as conn:
        conn.execute(_table(table).insert(), [dict(r) for r in rows])
    return len(rows)


def clear_tables(target: Any) -> dict[str, int]:
    """Delete every row of Mimir's tables, children first, in one transaction; rows deleted per
    table."""
    removed: dict[str, int] = {}
    with write_transaction(target) as conn:
        for t in reversed(TABLES):
            removed[t.name] = conn.execute(t.delete()).rowcount
    return removed


def describe(exc: BaseException) -> str:
    """A database error as one line, passwords masked."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return mask_text(first)


def copy_tables(
    source: Any,
    target: Any,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    on_start: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, TableSummary]:
    """Copy every table from one snapshot of ``source`` into ``target`` (whose tables should be
    empty), one transaction per batch; returns the source's count and checksum per table, as
    copied. ``on_start(counts)`` gets the rows per table before anything is written. A failure
    raises :class:`PersistenceError` naming the table (the target then holds a partial copy)."""
    with snapshot(source) as snap:
        check_same_schema(snap.revision(), target)
        counts = snap.counts()
        if on_start:
            on_start(counts)
        out: dict[str, TableSummary] = {}
        for t in TABLES:
            digest = Digest()
            if progress:
                progress(t.name, 0, counts[t.name])
            try:
                for rows in snap.batches(t, batch):
                    insert_rows(target, t, rows)
                    for row in rows:
                        digest.add(canonical_bytes(canonical(t, row)))
                    if progress:
                        progress(t.name, digest.rows, counts[t.name])
            except (SQLAlchemyError, OSError, ValueError) as exc:  # ValueError: text a driver cannot encode
                raise PersistenceError(
                    f"copying table {t.name} failed after {digest.rows} of {counts[t.name]} rows: {describe(exc)}"
                ) from None
            out[t.name] = digest.summary()
        return out


def compare(expected: Mapping[str, TableSummary], found: Mapping[str, TableSummary]) -> list[str]:
    """What differs between two sets of table summaries, one line a table (none: equal)."""
    problems = []
    for name in TABLE_NAMES:
        want, got = expected.get(name), found.get(name)
        if want is None or got is None:
            problems.append(f"{name}: missing on one side")
        elif want.rows != got.rows:
            problems.append(f"{name}: {got.rows} rows, expected {want.rows}")
        elif want.sha256 != got.sha256:
            problems.append(f"{name}: checksum {got.sha256[:12]}..., expected {want.sha256[:12]}...")
    return problems


# -- the JSON-lines stream -------------------------------------------------------------------


def write_jsonl(
    source: Any, out: IO[bytes], *, batch: int = DEFAULT_BATCH, progress: Progress | None = None
) -> dict[str, TableSummary]:
    """Write every table of ``source``, from one snapshot, to ``out`` as JSON lines (format in
    the module's docstring); returns the count and checksum per table (also in the last line)."""
    with snapshot(source) as snap:
        counts = snap.counts()
        header = {"format": FORMAT, "version": FORMAT_VERSION, "schema": snap.revision(), "tables": list(TABLE_NAMES)}
        out.write(canonical_bytes(header) + b"\n")
        summaries: dict[str, TableSummary] = {}
        for t in TABLES:
            digest = Digest()
            prefix = b'{"table":' + canonical_bytes(t.name) + b',"row":'
            if progress:
                progress(t.name, 0, counts[t.name])
            for rows in snap.batches(t, batch):
                lines = []
                for row in rows:
                    line = canonical_bytes(canonical(t, row))
                    digest.add(line)
                    lines.append(prefix + line + b"}\n")
                out.write(b"".join(lines))
                if progress:
                    progress(t.name, digest.rows, counts[t.name])
            summaries[t.name] = digest.summary()
        trailer = {"end": True, "tables": {name: s.as_dict() for name, s in summaries.items()}}
        out.write(canonical_bytes(trailer) + b"\n")
        return summaries


class LogicalReader:
    """Reads a JSON-lines export back, checking it as it goes: the header first
    (:attr:`header`, :attr:`schema`), then :meth:`batches`, which raises
    :class:`LogicalFormatError` on a damaged line, a table out of order, a missing last line
    (truncated) or rows whose count or checksum differ from it."""

    def __init__(self, stream: IO[bytes], name: str = "logical export") -> None:
        self.stream = stream
        self.name = name
        self._line = 0
        first = self._next()
        if first is None or first.get("format") != FORMAT:
            raise LogicalFormatError(f"{name}: not a Mimir logical export (no header line)")
        if first.get("version") != FORMAT_VERSION:
            version = first.get("version")
            raise LogicalFormatError(f"{name}: format version {version!r}, this Mimir reads {FORMAT_VERSION}")
        if first.get("tables") != list(TABLE_NAMES):
            raise LogicalFormatError(f"{name}: tables {first.get('tables')!r}, expected {list(TABLE_NAMES)}")
        self.header: dict[str, Any] = first
        self.schema: str | None = first.get("schema")
        self.summaries: dict[str, TableSummary] | None = None  # set once the stream was read whole

    def _next(self) -> dict[str, Any] | None:
        raw = self.stream.readline()
        if not raw:
            return None
        self._line += 1
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise LogicalFormatError(f"{self.name}: line {self._line} is not JSON (damaged)") from None
        if not isinstance(data, dict) or not raw.endswith(b"\n"):
            raise LogicalFormatError(f"{self.name}: line {self._line} is damaged or cut short")
        return data

    def batches(self, batch: int = DEFAULT_BATCH) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        """(table, rows of Python values), ``batch`` rows at most, tables in dependency order."""
        digests = {name: Digest() for name in TABLE_NAMES}
        order = {name: i for i, name in enumerate(TABLE_NAMES)}
        current: Table | None = None
        rows: list[dict[str, Any]] = []
        while True:
            data = self._next()
            if data is None:
                raise LogicalFormatError(f"{self.name}: ends after line {self._line} without its last line (truncated)")
            if data.get("end") is True:
                break
            name, row = data.get("table"), data.get("row")
            if not isinstance(name, str) or not isinstance(row, dict):
                raise LogicalFormatError(f"{self.name}: line {self._line} is not a table row")
            table = _table(name)
            if current is not table:
                if current is not None and order[name] < order[current.name]:
                    raise LogicalFormatError(f"{self.name}: line {self._line}: table {name} out of order")
                if rows and current is not None:
                    yield current, rows
                    rows = []
                current = table
            digests[name].add(canonical_bytes(row))
            rows.append(from_canonical(table, row))
            if len(rows) >= batch:
                yield table, rows
                rows = []
        if rows and current is not None:
            yield current, rows
        recorded = data.get("tables")
        if not isinstance(recorded, dict):
            raise LogicalFormatError(f"{self.name}: the last line has no table summaries")
        found = {name: d.summary() for name, d in digests.items()}
        try:
            expected = {name: TableSummary(int(s["rows"]), str(s["sha256"])) for name, s in recorded.items()}
        except (KeyError, TypeError, ValueError):
            raise LogicalFormatError(f"{self.name}: the last line's table summaries are damaged") from None
        problems = compare(expected, found)
        if problems:
            raise LogicalFormatError(f"{self.name}: rows differ from its summary: {'; '.join(problems)}")
        if self.stream.readline():
            raise LogicalFormatError(f"{self.name}: data after its last line")
        self.summaries = found


def import_jsonl(
    stream: IO[bytes],
    target: Any,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    name: str = "logical export",
) -> dict[str, TableSummary]:
    """Insert a JSON-lines export into ``target`` (at the export's schema revision, its tables
    empty), one transaction per batch; returns the export's count and checksum per table, all
    checked. A damaged export raises :class:`LogicalFormatError` (the batches before the damage
    are in the target then: check the stream first, or clear the target after a failure)."""
    reader = LogicalReader(stream, name)
    check_same_schema(reader.schema, target)
    done: dict[str, int] = {}
    for table, rows in reader.batches(batch):
        try:
            insert_rows(target, table, rows)
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise PersistenceError(f"importing table {table.name} failed: {describe(exc)}") from None
        done[table.name] = done.get(table.name, 0) + len(rows)
        if progress:
            progress(table.name, done[table.name], -1)
    assert reader.summaries is not None  # batches() ran to its end
    return reader.summaries


def rows_in_order(source: Any, batch: int = DEFAULT_BATCH) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every row of every table in canonical form, in table and key order, from one snapshot
    (for comparing two databases row by row)."""
    with snapshot(source) as snap:
        for t in TABLES:
            for rows in snap.batches(t, batch):
                for row in rows:
                    yield t.name, canonical(t, row)
