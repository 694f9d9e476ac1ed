"""Fixtures shared by every test module.

- Every test runs isolated from the developer's configuration: in its own working directory,
  with ``XDG_CONFIG_HOME`` pointing into it and no ``MIMIR_*`` variable set.
- ``backend_settings`` / ``backend`` run a test against SQLite, PostgreSQL and MariaDB. Each
  server backend gets one database of its own per test session (``mimir_test_<pid>_<hex>``),
  created at first use and dropped at the end; tables are emptied before every test.
- ``MIMIR_TEST_BACKENDS=sqlite,postgres`` restricts the backends (default: all three).
- Without a server the server cases skip with the reason; with ``CI=true`` they fail. The same
  goes for the ``chromium`` fixture (a headless Chromium, tests/browser.py).

The admin connections default to the servers of DESIGN.md; ``MIMIR_TEST_POSTGRES_ADMIN`` and
``MIMIR_TEST_MYSQL_ADMIN`` (``scheme://user:password@host:port/database``) point elsewhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from isolated import make_settings

from mimir_tui.config import Settings

ALL_BACKENDS = ("sqlite", "postgres", "mysql")
SERVER_BACKENDS = ("postgres", "mysql")
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# Read once, at import: the autouse fixture below removes MIMIR_* from each test's environment.
_ADMIN_URLS = {
    "postgres": os.environ.get("MIMIR_TEST_POSTGRES_ADMIN", "postgres://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("MIMIR_TEST_MYSQL_ADMIN", "mysql://root@127.0.0.1:3306/test"),
}


def selected_backends() -> tuple[str, ...]:
    raw = os.environ.get("MIMIR_TEST_BACKENDS", "").strip()
    if not raw:
        return ALL_BACKENDS
    chosen = tuple(b.strip().lower() for b in raw.split(",") if b.strip())
    unknown = [b for b in chosen if b not in ALL_BACKENDS]
    if unknown:
        raise pytest.UsageError(f"MIMIR_TEST_BACKENDS: unknown backend(s) {unknown}; use {', '.join(ALL_BACKENDS)}")
    return chosen


BACKENDS = selected_backends()
IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every server (and the browser) must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing server or browser is a failure)", pytrace=False)
    pytest.skip(reason)


# -- isolation -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads ./config.yaml of the repository, ~/.config, or the developer's MIMIR_*."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for name in list(os.environ):
        if name.startswith("MIMIR_"):
            monkeypatch.delenv(name)
    yield


# -- server databases --------------------------------------------------------------------------


@dataclass
class ServerInfo:
    backend: str
    host: str
    port: int
    user: str
    password: str
    admin_db: str

    def url(self, database: str, *, password: str | None = None, port: int | None = None) -> str:
        scheme = "postgres" if self.backend == "postgres" else "mysql"
        pw = self.password if password is None else password
        auth = f"{self.user}:{pw}" if pw else self.user
        return f"{scheme}://{auth}@{self.host}:{port or self.port}/{database}"


def _server_info(backend: str) -> ServerInfo:
    parts = urlsplit(_ADMIN_URLS[backend])
    return ServerInfo(
        backend=backend,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (5432 if backend == "postgres" else 3306),
        user=parts.username or ("postgres" if backend == "postgres" else "root"),
        password=parts.password or "",
        admin_db=parts.path.lstrip("/") or "test",
    )


class _Unavailable(Exception):
    pass


class ServerDatabases:
    """One database per server backend for the whole session, made on first use."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self._engines: dict[str, Any] = {}

    def info(self, backend: str) -> ServerInfo:
        return _server_info(backend)

    def _connect(self, backend: str):
        """A DB-API connection to the admin database (autocommit); ``_Unavailable`` if none."""
        info = self.info(backend)
        try:
            if backend == "postgres":
                import psycopg

                return psycopg.connect(
                    host=info.host,
                    port=info.port,
                    user=info.user,
                    password=info.password or None,
                    dbname=info.admin_db,
                    autocommit=True,
                    connect_timeout=3,
                )
            import pymysql

            return pymysql.connect(
                host=info.host,
                port=info.port,
                user=info.user,
                password=info.password,
                database=info.admin_db,
                autocommit=True,
                connect_timeout=3,
                charset="utf8mb4",
            )
        except ImportError as exc:
            raise _Unavailable(f"{backend}: driver not installed ({exc.name}); pip install -e '.[dev]'") from None
        except Exception as exc:  # the server is down or refuses us
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _Unavailable(f"{backend} server at {info.host}:{info.port} is unreachable: {first}") from None

    def admin_connect(self, backend: str):
        """A DB-API connection to the admin database (autocommit), or skip (fail in CI)."""
        if backend in self.failures:
            unavailable(self.failures[backend])
        try:
            return self._connect(backend)
        except _Unavailable as exc:
            self.failures[backend] = str(exc)
            unavailable(str(exc))

    @contextmanager
    def mysql_user(self, user: str, password: str) -> Iterator[None]:
        """A MariaDB user with ``password`` and every right on the session database (from
        127.0.0.1 and localhost), dropped at the end."""
        database = self.database("mysql")
        conn = self.admin_connect("mysql")
        hosts = ("127.0.0.1", "localhost")
        try:
            with conn.cursor() as cur:
                for host in hosts:
                    cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
                    cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'{host}'")
            yield
        finally:
            with conn.cursor() as cur:
                for host in hosts:
                    cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
            conn.close()

    def database(self, backend: str) -> str:
        """The session's database on ``backend``; created the first time it is asked for."""
        if backend in self.names:
            return self.names[backend]
        name = f"mimir_test_{os.getpid()}_{secrets.token_hex(4)}"
        conn = self.admin_connect(backend)
        try:
            with conn.cursor() as cur:
                self._drop_orphans(backend, cur)
                if backend == "postgres":
                    cur.execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
                else:
                    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()
        self.names[backend] = name
        return name

    @staticmethod
    def _drop_orphans(backend: str, cur) -> None:
        """Drop databases left by test runs of this machine that were killed (their pid is gone)."""
        if backend == "postgres":
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mimir\\_test\\_%'")
        else:
            cur.execute("SHOW DATABASES LIKE 'mimir\\_test\\_%'")
        for (name,) in cur.fetchall():
            parts = name.split("_")
            if len(parts) != 4 or not parts[2].isdigit():
                continue
            try:
                os.kill(int(parts[2]), 0)
                continue  # that run is still going
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            if backend == "postgres":
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def settings_for(self, backend: str, base: Settings) -> Settings:
        name = self.database(backend)
        base.persistence.backend = backend  # type: ignore[assignment]
        base.persistence.connection_string = self.info(backend).url(name)
        base.persistence.connect_timeout = 5
        return base

    def engine(self, backend: str):
        """A SQLAlchemy engine on the session database (no pool: it never blocks DROP)."""
        if backend not in self._engines:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            from mimir_tui.persistence.engine import server_url

            settings = Settings()
            settings.persistence.backend = backend  # type: ignore[assignment]
            settings.persistence.connection_string = self.info(backend).url(self.database(backend))
            self._engines[backend] = create_engine(server_url(settings.persistence), poolclass=NullPool)
        return self._engines[backend]

    def empty_tables(self, backend: str) -> None:
        """Delete every row of every table but alembic_version, children first."""
        from sqlalchemy import MetaData

        engine = self.engine(backend)
        meta = MetaData()
        meta.reflect(engine)
        with engine.begin() as conn:
            for table in reversed(meta.sorted_tables):
                if table.name != "alembic_version":
                    conn.execute(table.delete())

    def drop_all_tables(self, backend: str) -> None:
        """Leave the session database empty, as if new (the schema tests start from nothing)."""
        from sqlalchemy import MetaData

        engine = self.engine(backend)
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)

    def drop_databases(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        for backend, name in self.names.items():
            try:
                conn = self._connect(backend)
            except _Unavailable:  # the server went away; nothing to drop
                continue
            try:
                with conn.cursor() as cur:
                    if backend == "postgres":
                        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    else:
                        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            finally:
                conn.close()


@pytest.fixture(scope="session")
def server_databases() -> Iterator[ServerDatabases]:
    dbs = ServerDatabases()
    yield dbs
    dbs.drop_databases()


# -- settings and backends ---------------------------------------------------------------------


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(params=[pytest.param(b, id=b) for b in BACKENDS])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path, server_databases: ServerDatabases) -> Settings:
    """Settings for one backend; a server's session database is emptied first."""
    backend: str = request.param
    settings = make_settings(tmp_path)
    if backend == "sqlite":
        return settings
    server_databases.settings_for(backend, settings)
    server_databases.empty_tables(backend)
    return settings


@pytest.fixture
def backend(backend_settings: Settings):
    from mimir_tui.persistence import open_backend

    store = open_backend(backend_settings)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def server_settings(server_databases: ServerDatabases, tmp_path: Path) -> Callable[[str], Settings]:
    """``server_settings("mysql")``: settings on that server's session database (emptied)."""

    def make(backend: str) -> Settings:
        if backend not in BACKENDS:
            pytest.skip(f"{backend} not in MIMIR_TEST_BACKENDS")
        settings = server_databases.settings_for(backend, make_settings(tmp_path))
        server_databases.empty_tables(backend)
        return settings

    return make


# -- the command line as a subprocess ----------------------------------------------------------


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("mimir-tui")
    if script.exists():
        return [str(script)]
    found = shutil.which("mimir-tui")
    return [found] if found else [sys.executable, "-m", "mimir_tui.cli"]


@pytest.fixture
def cli_argv() -> list[str]:
    """The argv prefix that runs ``mimir-tui`` as a process."""
    return cli_command()


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``mimir-tui ARGS`` in a subprocess with the test's (isolated) environment."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run(
            [*cli_command(), *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )

    return run


# -- a real browser ----------------------------------------------------------------------------


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Selenium; skips without one (fails with ``CI=true``)."""
    from browser import headless_chromium, missing_browser

    reason = missing_browser()
    if reason:
        unavailable(reason)
    with headless_chromium() as driver:
        yield driver
