"""Bad input: foreign files, unwritable directories, unreachable servers, wrong passwords.

Each must give one line naming the problem, exit 1 through the CLI, no traceback, nothing
changed on disk, and never the password of a connection string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from mimir_tui.cli import main as cli_main
from mimir_tui.config import Settings, load_settings
from mimir_tui.errors import MimirError, PersistenceError
from mimir_tui.persistence import open_backend

SECRET = "SuperSecret123"


def assert_one_line_failure(proc, *, exit_code: int = 1, mentions: str | None = None) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    if mentions is not None:
        assert mentions in lines[0], lines[0]
    return lines[0]


def error_lines(err: str) -> list[str]:
    """Our error lines on an in-process stderr (other tests' leftover threads may write there too;
    the strict one-line check runs on real processes)."""
    return [line for line in err.splitlines() if line.startswith(("error:", "mimir-tui: error:"))]


def _fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size


FOREIGN_CONTENT = {
    "random-bytes": lambda: os.urandom(64 * 1024),
    "text": lambda: ("# my notes, not a database\n" + "line ✓\n" * 500).encode(),
    "sqlite-header-then-garbage": lambda: b"SQLite format 3\x00" + os.urandom(8192),
}


@pytest.fixture(params=list(FOREIGN_CONTENT), ids=list(FOREIGN_CONTENT))
def foreign_file(request, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "mimir.db"
    path.write_bytes(FOREIGN_CONTENT[request.param]())
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return path


def test_foreign_file_is_refused_and_untouched(foreign_file: Path, sqlite_settings: Settings) -> None:
    sqlite_settings.persistence.database_path = str(foreign_file)
    before = _fingerprint(foreign_file)
    with pytest.raises(PersistenceError) as info:
        open_backend(sqlite_settings)
    message = str(info.value)
    assert str(foreign_file) in message
    assert "\n" not in message
    assert _fingerprint(foreign_file) == before
    assert sorted(p.name for p in foreign_file.parent.iterdir()) == ["mimir.db"]  # no -wal, -shm, -journal


def test_foreign_file_via_cli(foreign_file: Path, run_cli, monkeypatch, capsys) -> None:
    before = _fingerprint(foreign_file)
    proc = run_cli("health", env={"MIMIR_DATABASE_PATH": str(foreign_file)})
    assert_one_line_failure(proc, mentions=str(foreign_file))
    monkeypatch.setenv("MIMIR_DATABASE_PATH", str(foreign_file))
    assert cli_main(["health", "--json"]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["status"] == "unhealthy" and str(foreign_file) in report["error"]
    assert len(error_lines(err)) == 1 and str(foreign_file) in error_lines(err)[0]
    assert _fingerprint(foreign_file) == before
    assert sorted(p.name for p in foreign_file.parent.iterdir()) == ["mimir.db"]


def test_database_path_is_a_directory(tmp_path: Path, sqlite_settings: Settings) -> None:
    folder = tmp_path / "data" / "mimir.db"
    folder.mkdir(parents=True)
    sqlite_settings.persistence.database_path = str(folder)
    with pytest.raises(PersistenceError, match="is a directory"):
        open_backend(sqlite_settings)


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_data_directory(where: str, tmp_path: Path, run_cli, sqlite_settings: Settings) -> None:
    if where == "under-a-file":
        blocker = tmp_path / "blocker"
        blocker.write_text("a regular file where a folder should be\n")
        db = blocker / "data" / "mimir.db"
        named = str(blocker)
    else:
        db = Path("/proc/mimir-test-data/mimir.db")
        named = "/proc/mimir-test-data"
    sqlite_settings.persistence.database_path = str(db)
    with pytest.raises(PersistenceError) as info:
        open_backend(sqlite_settings)
    assert named in str(info.value)
    proc = run_cli("health", env={"MIMIR_DATABASE_PATH": str(db)})
    assert_one_line_failure(proc, mentions=named)
    if where == "under-a-file":
        assert blocker.read_text() == "a regular file where a folder should be\n"


@pytest.mark.parametrize("scheme", ["postgres", "mysql"])
def test_unreachable_server(scheme: str, run_cli, monkeypatch, capsys) -> None:
    url = f"{scheme}://someone@127.0.0.1:1/mimir"
    env = {"MIMIR_BACKEND": scheme, "MIMIR_CONNECTION_STRING": url}
    proc = run_cli("health", env=env)
    line = assert_one_line_failure(proc, mentions="127.0.0.1")
    assert ":1" in line
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["health", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "unhealthy"
    assert len(error_lines(err)) == 1 and "127.0.0.1" in error_lines(err)[0]


ESCAPED = ["Super%40Secret%3A123", "Super@Secret:123", "Secret%3A123", "Secret:123"]
RAW_CHARS = ["Super/Secret#123", "Secret#123", "Super/Secret"]

# (backend, connection string, what must never show, exit code of `health`)
PASSWORD_CASES = [
    pytest.param("postgres", f"postgres://postgres:{SECRET}@127.0.0.1:1/x", [SECRET], 1, id="pg"),
    pytest.param("mysql", f"mysql://root:{SECRET}@127.0.0.1:1/x", [SECRET], 1, id="mysql"),
    # URL-escaped characters in the password: neither form may show
    pytest.param("postgres", "postgres://postgres:Super%40Secret%3A123@127.0.0.1:1/x", ESCAPED, 1, id="pg-escaped"),
    pytest.param("mysql", "mysql://root:Super%40Secret%3A123@127.0.0.1:1/x", ESCAPED, 1, id="mysql-escaped"),
    # characters that should have been escaped (the drivers take them; urlsplit stops at them)
    pytest.param("postgres", "postgres://postgres:Super/Secret#123@127.0.0.1:1/x", RAW_CHARS, 1, id="pg-raw-chars"),
    pytest.param(
        "mysql",
        "mysql://root:Super/Secret?123@127.0.0.1:1/x",
        ["Super/Secret?123", "Secret?123"],
        1,
        id="mysql-raw-chars",
    ),
    # malformed strings are bad input (exit 2), and still masked
    pytest.param("postgres", f"postgres:/postgres:{SECRET}@127.0.0.1:1/x", [SECRET], 2, id="pg-typo"),
    pytest.param(
        "postgres", f"host=127.0.0.1 port=1 user=postgres password={SECRET} dbname=x", [SECRET], 2, id="pg-libpq-dsn"
    ),
    pytest.param("mysql", f"postgres://root:{SECRET}@127.0.0.1:1/x", [SECRET], 2, id="scheme-mismatch"),
]


@pytest.mark.parametrize("backend, url, secrets, code", PASSWORD_CASES[:2])
def test_password_never_shown_by_the_cli_process(backend: str, url: str, secrets, code: int, run_cli) -> None:
    proc = run_cli("health", env={"MIMIR_BACKEND": backend, "MIMIR_CONNECTION_STRING": url})
    assert_one_line_failure(proc, exit_code=code)
    for secret in secrets:
        assert secret not in proc.stdout + proc.stderr
    assert "***" in proc.stderr


@pytest.mark.parametrize("backend, url, secrets, code", PASSWORD_CASES)
def test_password_never_shown_by_any_command(backend, url, secrets, code, tmp_path: Path, monkeypatch, capsys) -> None:
    config = tmp_path / "mimir.yaml"
    config.write_text(f"persistence:\n  backend: {backend}\n  connection_string: '{url}'\n")
    commands = [["health"], ["health", "--json"], ["config", "show"], ["config", "show", "--json"]]
    outputs = []
    with monkeypatch.context() as env:
        env.setenv("MIMIR_BACKEND", backend)
        env.setenv("MIMIR_CONNECTION_STRING", url)
        for args in commands:
            exit_code = cli_main(args)
            outputs.append((args, exit_code, *capsys.readouterr()))
    for args in commands:  # the same from a config file
        exit_code = cli_main([*args, "--config", str(config)])
        outputs.append((args + ["--config"], exit_code, *capsys.readouterr()))
    for args, exit_code, out, err in outputs:
        assert exit_code == (code if args[0] == "health" else 0), (args, out, err)
        if args[0] == "health":
            assert len(error_lines(err)) == 1, (args, err)
        for secret in secrets:
            assert secret not in out, (args, out)
            assert secret not in err, (args, err)
    shown = json.loads(outputs[3][2])
    assert "***" in shown["settings"]["persistence"]["connection_string"]
    assert shown["sources"]["persistence.connection_string"] == "env MIMIR_CONNECTION_STRING"
    from_file = json.loads(outputs[7][2])
    assert from_file["sources"]["persistence.connection_string"] == f"file {config}"
    assert "***" in from_file["settings"]["persistence"]["connection_string"]


@pytest.mark.parametrize("backend, url, secrets, code", PASSWORD_CASES)
def test_password_never_logged_or_raised(backend, url, secrets, code, caplog, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MIMIR_BACKEND", backend)
    monkeypatch.setenv("MIMIR_CONNECTION_STRING", url)
    settings = load_settings()
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "alembic", "mimir", "mimir.persistence"):
        caplog.set_level(logging.DEBUG, logger=name)
    with pytest.raises(MimirError) as info:
        open_backend(settings)
    assert info.value.exit_code == code
    assert cli_main(["health"]) == code
    assert cli_main(["health", "--json"]) == code
    assert cli_main(["config", "show", "--json"]) == 0
    out, err = capsys.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(
        str(r.exc_info[1]) for r in caplog.records if r.exc_info
    )
    for secret in secrets:
        assert secret not in str(info.value)
        assert secret not in repr(info.value)
        assert secret not in logged
        assert secret not in out and secret not in err
    # nothing chained that a traceback would print (the driver's error carries the DSN)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


# -- MariaDB: a real wrong password -------------------------------------------------------------

PW_USER = "mimir_pw_test"


@pytest.fixture
def mariadb_user(server_databases, server_settings):
    settings = server_settings("mysql")  # skips (or fails in CI) without the server
    database = server_databases.database("mysql")
    info = server_databases.info("mysql")
    with server_databases.mysql_user(PW_USER, "right-pass"):
        yield settings, (lambda password: f"mysql://{PW_USER}:{password}@{info.host}:{info.port}/{database}")


@pytest.mark.slow
def test_mariadb_wrong_password(mariadb_user, run_cli, caplog) -> None:
    settings, url_with = mariadb_user
    env = {"MIMIR_BACKEND": "mysql"}
    # the right password works: the user is real, so the failure below is the password's
    good = run_cli("health", "--json", env={**env, "MIMIR_CONNECTION_STRING": url_with("right-pass")})
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["status"] == "healthy"

    bad_env = {**env, "MIMIR_CONNECTION_STRING": url_with("wrong-pass")}
    proc = run_cli("health", env=bad_env)
    line = assert_one_line_failure(proc)
    assert "Access denied" in line and PW_USER in line
    proc_json = run_cli("health", "--json", env=bad_env)
    assert_one_line_failure(proc_json)
    for p in (proc, proc_json, good):
        assert "wrong-pass" not in p.stdout + p.stderr
        assert "right-pass" not in p.stdout + p.stderr

    caplog.set_level(logging.DEBUG)
    settings.persistence.connection_string = url_with("wrong-pass")
    with pytest.raises(PersistenceError) as info:
        open_backend(settings)
    assert "wrong-pass" not in str(info.value)
    assert "wrong-pass" not in caplog.text


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_missing_server_database(backend: str, server_settings, server_databases, capsys, monkeypatch) -> None:
    settings = server_settings(backend)  # skips (or fails in CI) without the server
    url = server_databases.info(backend).url("mimir_no_such_database")
    settings.persistence.connection_string = url
    with pytest.raises(PersistenceError) as info:
        open_backend(settings)
    assert "mimir_no_such_database" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("MIMIR_BACKEND", backend)
    monkeypatch.setenv("MIMIR_CONNECTION_STRING", url)
    assert cli_main(["health"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "mimir_no_such_database" in lines[0]


def test_missing_connection_string_is_bad_input(run_cli) -> None:
    proc = run_cli("health", env={"MIMIR_BACKEND": "postgres"})
    assert_one_line_failure(proc, exit_code=2, mentions="connection_string")
