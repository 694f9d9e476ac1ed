"""Secrets in connection strings (issue 9, item 6), against the real PostgreSQL and MariaDB:
a password given in the query (``?password=``, ``&sslpassword=``, ``?passwd=``) was printed by
``health`` (text and ``--json``); a password with an unescaped ``@`` showed its tail in the
``health`` error (the part after the first ``@`` was taken for the host)."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest

SECRET = "Qu3ry-Secret-42"
AT_PASSWORD = "Right@Tail-9q"  # what follows the "@" is what leaked


def health(run_cli, backend: str, url: str) -> tuple[int, str, dict]:
    """``health`` and ``health --json`` as processes: (exit code, all text printed, the report)."""
    env = {"MIMIR_BACKEND": backend, "MIMIR_CONNECTION_STRING": url}
    text = run_cli("health", env=env)
    as_json = run_cli("health", "--json", env=env)
    assert text.returncode == as_json.returncode, (text.stderr, as_json.stderr)
    assert "Traceback" not in text.stderr + as_json.stderr
    printed = text.stdout + text.stderr + as_json.stdout + as_json.stderr
    return text.returncode, printed, json.loads(as_json.stdout)


@pytest.mark.parametrize("param", ["password", "sslpassword"])
def test_postgres_password_in_the_query_is_not_shown_by_health(param, server_settings, server_databases, run_cli):
    server_settings("postgres")  # skips (or fails in CI) without the server
    info = server_databases.info("postgres")
    base = f"postgres://{info.user}@{info.host}:{info.port}/{server_databases.database('postgres')}"
    # The real password where the server asks for one; any value where it trusts the loopback.
    secret = info.password if param == "password" and info.password else SECRET
    if param == "sslpassword" and info.password:
        base = info.url(server_databases.database("postgres"))
    code, printed, report = health(run_cli, "postgres", f"{base}?{param}={quote(secret)}&application_name=mimir")
    assert code == 0 and report["status"] == "healthy", printed
    assert secret not in printed and quote(secret) not in printed
    assert f"{param}=***" in report["database"] and "application_name=mimir" in report["database"]
    assert f"{param}=***" in printed


def test_postgres_password_with_an_unescaped_at_sign(server_settings, server_databases, run_cli):
    """Taken whole, as urlsplit and the masking take it: the host is what follows the last "@"."""
    server_settings("postgres")
    info = server_databases.info("postgres")
    if info.password:
        pytest.skip("this PostgreSQL asks for a password; the MariaDB test covers a real one with an '@'")
    url = info.url(server_databases.database("postgres"), password=AT_PASSWORD)
    code, printed, report = health(run_cli, "postgres", url)
    assert code == 0 and report["status"] == "healthy", printed  # was: host "Tail-9q@127.0.0.1"
    assert "Tail-9q" not in printed and "Right" not in printed
    assert report["database"].startswith(f"postgresql+psycopg://{info.user}:***@{info.host}:{info.port}/")


@pytest.fixture
def mariadb_account(server_databases, server_settings):
    """A MariaDB user whose password holds an "@"; yields ``url(password=..., query=...)``."""
    server_settings("mysql")  # skips (or fails in CI) without the server
    database = server_databases.database("mysql")
    info = server_databases.info("mysql")
    user = f"mimir_at_{os.getpid()}"

    def url(password: str | None = None, query: str = "") -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"mysql://{auth}@{info.host}:{info.port}/{database}{query}"

    with server_databases.mysql_user(user, AT_PASSWORD):
        yield url


def test_mariadb_password_with_an_unescaped_at_sign_connects_and_never_shows(mariadb_account, run_cli):
    code, printed, report = health(run_cli, "mysql", mariadb_account(AT_PASSWORD))
    assert code == 0 and report["status"] == "healthy", printed
    assert "Tail-9q" not in printed and "Right" not in printed


def test_mariadb_wrong_password_with_an_at_sign_shows_no_tail_in_the_error(mariadb_account, run_cli):
    """The attack of the issue: the error named the host ``Tail-7z@127.0.0.1``."""
    code, printed, report = health(run_cli, "mysql", mariadb_account("Wrong@Tail-7z"))
    assert code == 1 and report["status"] == "unhealthy"
    assert "Access denied" in report["error"], report["error"]
    assert "Tail-7z" not in printed and "Wrong" not in printed


@pytest.mark.parametrize("param", ["password", "passwd"])
def test_mariadb_password_in_the_query(param, mariadb_account, run_cli):
    code, printed, report = health(run_cli, "mysql", mariadb_account(query=f"?{param}={quote(AT_PASSWORD)}"))
    assert code == 0 and report["status"] == "healthy", printed
    assert report["database"].endswith(f"?{param}=***")
    assert "Tail-9q" not in printed and "Tail" not in printed

    code, printed, report = health(run_cli, "mysql", mariadb_account(query=f"?{param}={SECRET}&charset=utf8mb4"))
    assert code == 1 and "Access denied" in report["error"], report  # a wrong one: the error line
    assert SECRET not in printed
