"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import DateTime, Float, Text
from sqlalchemy.types import TypeDecorator

_fast_json_loads: Callable[[Any], Any] | None
try:  # a C JSON parser several times faster than json.loads (chromadb brings it along)
    from orjson import loads as _fast_json_loads
except ImportError:  # pragma: no cover - json.loads alone is correct, only slower
    _fast_json_loads = None

_fromisoformat = datetime.fromisoformat


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A timezone-aware UTC datetime; a naive one is taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def sqlite_datetime_text(value: Any) -> str | None:
    """A datetime as stored on SQLite: naive UTC text with microseconds, the format of
    SQLAlchemy's SQLite DATETIME (``2024-05-01 12:34:56.123456``)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _fromisoformat(value)
    tz = value.tzinfo
    if tz is None:
        return value.isoformat(" ", "microseconds")
    if tz is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without "+00:00"


def sqlite_datetime_value(value: Any) -> datetime | None:
    """SQLite's stored text back to an aware UTC datetime (fromisoformat: C speed)."""
    if value is None:
        return None
    try:
        return _fromisoformat(value + "+00:00")  # what Mimir writes: naive UTC text
    except (TypeError, ValueError):
        pass
    if isinstance(value, str):  # written by someone else: with an offset, or date only
        value = _fromisoformat(value)
    return as_utc(value)


def json_text(value: Any) -> str | None:
    """JSON as stored in the TEXT columns."""
    if value is None:
        return None
    return _json_encode(value)  # json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=...)


def json_value(value: Any) -> Any:
    """The stored JSON text back to Python (orjson when present, the same values as json.loads)."""
    if value is None or value == "":
        return None
    if _fast_json_loads is not None:
        try:
            return _fast_json_loads(value)
        except Exception:  # NaN, huge integers, lone surrogates...: json.loads accepts them
            pass
    return json.loads(value)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (microseconds kept on every backend); read back aware, in UTC."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql  # here: SQLite and PostgreSQL need not load it

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, str):  # a raw SQLite value
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite the value is text both ways: convert it in one step instead of two (the
    # impl's processor, then ours). Same text, same datetimes.
    def bind_processor(self, dialect):
        if dialect.name == "sqlite":
            return sqlite_datetime_text
        return super().bind_processor(dialect)

    def result_processor(self, dialect, coltype):
        if dialect.name == "sqlite":
            return sqlite_datetime_value
        return super().result_processor(dialect, coltype)


class LongText(TypeDecorator):
    """TEXT, but LONGTEXT on MySQL/MariaDB where TEXT stops at 64 KiB."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.LONGTEXT())
        return dialect.type_descriptor(Text())


class Seconds(TypeDecorator):
    """A job's seconds, in double precision on every backend: ``Float(53)``, and DOUBLE on
    MySQL/MariaDB, whose plain FLOAT is 4 bytes (schema version 9)."""

    impl = Float
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.DOUBLE(asdecimal=False))
        return dialect.type_descriptor(Float(53))


class JSONText(LongText):
    """JSON kept as TEXT (the seed's column type); LONGTEXT on MySQL/MariaDB."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> Any:
        return json_text(value)

    def process_result_value(self, value: Any, dialect) -> Any:
        return json_value(value)

    def result_processor(self, dialect, coltype):
        if dialect.name == "sqlite":  # text in, no impl processor: one call instead of three
            return json_value
        return super().result_processor(dialect, coltype)


def _json_default(value: Any) -> Any:
    """What JSON cannot hold, as the closest thing it can (records, logs, summaries)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # Path, Decimal, UUID, ...


def mysql_table_options(bind) -> dict:
    """Exact, case- and accent-sensitive keys on MySQL/MariaDB, like SQLite and PostgreSQL:
    a binary collation that also counts trailing spaces (NO PAD) where the server has one."""
    if bind.dialect.name != "mysql":
        return {}
    version = str(bind.exec_driver_sql("SELECT VERSION()").scalar() or "")
    if "mariadb" in version.lower():
        collation = "utf8mb4_nopad_bin"
    elif version[:1].isdigit() and int(version.split(".")[0]) >= 8:
        collation = "utf8mb4_0900_bin"
    else:
        collation = "utf8mb4_bin"
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation, "mysql_engine": "InnoDB"}


# One encoder for every call (json.dumps makes a new one each time it gets options).
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode
