"""A fast command line (issue 8, item 6): what each kind of invocation imports.

``--help`` (at every level), ``--version`` and usage errors print before any handler runs, so
they must not load the database stack, the dashboard or the plugins: each costs the command
line (and every test that runs it as a process) from a few hundred milliseconds to seconds.
Ordinary commands load the database stack, but not what they do not use.

Each check runs in a fresh interpreter and reads ``sys.modules`` after ``main()``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Packages that --help, --version and a usage error must not import (nor Mimir's heavy parts).
HEAVY = [
    "sqlalchemy",
    "sqlmodel",
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "alembic",
    "chromadb",
    "textual",
    "httpx",
    "croniter",
    "yaml",
    "mimir_tui.config",
    "mimir_tui.persistence",
    "mimir_tui.scheduler",
    "mimir_tui.pipelines",
    "mimir_tui.tui",
    "mimir_tui.health",
    "mimir_tui.service",
]

# What no ordinary command (jobs list, health, executions list, config show) needs.
NOT_FOR_ORDINARY_COMMANDS = [
    "alembic",
    "chromadb",
    "textual",
    "httpx",
    "mimir_tui.pipelines",
    "mimir_tui.tui",
    "mimir_tui.service",
    # The other servers' dialects, on SQLite (about 1 MiB each in every instance)
    "sqlalchemy.dialects.mysql",
    "sqlalchemy.dialects.postgresql",
]

# Runs each argv through main() in turn, in one fresh interpreter, and after each one prints
# which of the watched packages are loaded, with the exit code: the first argv that loads one
# is the culprit (each one before it loaded nothing watched).
PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from mimir_tui.cli import main

    watched, runs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for argv in runs:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        loaded = sorted(m for m in sys.modules if any(m == w or m.startswith(w + ".") for w in watched))
        print(json.dumps({"argv": argv, "code": code, "loaded": loaded, "out": out.getvalue()[:200],
                          "err": err.getvalue()[-300:]}))
""")

# Every parser's --help: the top level, each command and each of its actions, read off the
# parser itself so that a new subcommand is covered without a change here.
LIST_HELPS = textwrap.dedent("""
    import argparse, json
    from mimir_tui.cli import build_parser

    def walk(parser, prefix):
        yield prefix + ["--help"]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, prefix + [name])

    print(json.dumps(list(walk(build_parser(), []))))
""")

USAGE_ERRORS = [
    ["frobnicate"],
    ["--bogus"],
    ["jobs"],
    ["jobs", "frobnicate"],
    ["jobs", "add"],
    ["jobs", "add", "--name", "n", "--pipeline", "p"],
    ["jobs", "add", "--name", "n", "--pipeline", "p", "--cron", "* * * * *", "--misfire", "sometimes"],
    ["jobs", "next", "-n", "many"],
    ["executions", "list", "--limit", "ten"],
    ["executions", "show"],
    ["pipelines", "validate"],
    ["config"],
    ["health", "--frobnicate"],
]


def probe(runs: list[list[str]], watched: list[str], cwd: Path) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(watched), json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def first_offender(results: list[dict]) -> dict | None:
    return next((r for r in results if r["loaded"]), None)


@pytest.fixture(scope="module")
def every_help() -> list[list[str]]:
    proc = subprocess.run([sys.executable, "-c", LIST_HELPS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    helps = json.loads(proc.stdout)
    assert ["jobs", "add", "--help"] in helps and ["executions", "list", "--help"] in helps
    assert len(helps) > 20
    return helps


def test_help_version_and_usage_errors_import_nothing_heavy(every_help, tmp_path: Path) -> None:
    runs = [["--version"], *every_help, *USAGE_ERRORS]
    results = probe(runs, HEAVY, tmp_path)
    assert [r["argv"] for r in results] == runs
    offender = first_offender(results)
    assert offender is None, f"mimir-tui {' '.join(offender['argv'])} imported {offender['loaded'][:8]}"
    # They did what they are for (not, say, an early crash that imported nothing).
    for r in results:
        expected = 2 if r["argv"] in USAGE_ERRORS else 0
        assert r["code"] == expected, r
        if expected == 0:
            assert r["out"].startswith(("usage: mimir-tui", "mimir-tui ")), r
        else:
            assert "error:" in r["err"], r


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check above can fail: a command that opens the database loads SQLAlchemy and
    SQLModel, and the probe reports it (and names that command, not an earlier one)."""
    (tmp_path / "config.yaml").write_text("persistence:\n  database_path: ./mimir.db\n")
    results = probe([["--help"], ["jobs", "list"]], HEAVY, tmp_path)
    assert results[0]["loaded"] == []
    assert results[1]["code"] == 0, results[1]
    assert {"sqlalchemy", "sqlmodel", "mimir_tui.persistence"} <= set(results[1]["loaded"])
    assert first_offender(results)["argv"] == ["jobs", "list"]


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list"],
        ["jobs", "list", "--json"],
        ["health"],
        ["executions", "list"],
        ["config", "show"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_ordinary_commands_import_only_what_they_use(argv: list[str], tmp_path: Path) -> None:
    """Listing jobs or checking health needs the database, not the dashboard, the vector store,
    HTTP or the pipeline plugins; and once the schema is current, not Alembic either (the first
    run creates the database, the second is measured)."""
    (tmp_path / "config.yaml").write_text("persistence:\n  database_path: ./mimir.db\n")
    first = probe([argv], [], tmp_path)[0]
    assert first["code"] == 0, first
    second = probe([argv], NOT_FOR_ORDINARY_COMMANDS, tmp_path)[0]
    assert second["code"] == 0, second
    assert second["loaded"] == [], f"mimir-tui {' '.join(argv)} imported {second['loaded'][:8]}"


def test_a_run_on_sqlite_loads_no_servers_dialect(tmp_path: Path) -> None:
    """A run's saves (an upsert) on SQLite built their INSERT with PostgreSQL's dialect loaded
    beside SQLite's: 2.4 MiB in every instance. A pipeline run through the command line loads
    neither server's dialect."""
    (tmp_path / "config.yaml").write_text("persistence:\n  database_path: ./mimir.db\n")
    (tmp_path / "ok.yaml").write_text(
        "name: ok\nsteps:\n  - {name: wait, plugin: Data_Processing.delay, config: {seconds: 0}}\n"
    )
    watched = ["sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.mysql", "sqlalchemy.dialects.sqlite"]
    assert probe([["pipelines", "run", "ok.yaml"]], [], tmp_path)[0]["code"] == 0  # makes the database (Alembic)
    (result,) = probe([["pipelines", "run", "ok.yaml"]], watched, tmp_path)
    assert result["code"] == 0, result
    assert [m for m in result["loaded"] if m.split(".")[2] != "sqlite"] == [], result["loaded"]
    assert "sqlalchemy.dialects.sqlite" in result["loaded"]  # the probe sees a dialect loaded


def test_the_vocabulary_has_one_home() -> None:
    """The parsers read statuses and misfire policies from the light ``constants`` module, and
    the models use the very same enums (not copies that could drift apart)."""
    from mimir_tui import constants
    from mimir_tui.persistence import models

    for name in ("Status", "MisfirePolicy", "TriggeredBy", "WorkerStatus", "FINISHED"):
        assert getattr(models, name) is getattr(constants, name), name


def test_head_revision_without_alembic_agrees_with_alembic() -> None:
    """``open_backend`` skips Alembic when the database is at the head read off the version
    files; that reading must be Alembic's head."""
    from mimir_tui.persistence.migrate import _head_from_files, head_revision

    assert _head_from_files() == head_revision() != ""


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list", "--json"],
        ["--config", "site.yaml", "health"],
        ["health", "--config", "jobs"],  # a value that is another command's name
        ["--config", "health", "jobs", "add", "--name", "n", "--pipeline", "health", "--cron", "* * * * *"],
        ["executions", "list", "--status", "failed,missed", "--limit", "3"],
        ["pipelines", "run", "jobs", "--timeout", "5"],
        ["config", "show"],
        ["--headless", "--config", "c.yaml"],
        [],
    ],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_the_parser_built_for_a_command_line_parses_it_as_the_whole_one(argv: list[str]) -> None:
    """main() builds only the parsers of the commands its argv names; it must read that argv
    exactly as the parser of every command does."""
    from mimir_tui.cli import build_parser

    assert build_parser(argv).parse_args(argv) == build_parser().parse_args(argv)


def test_the_top_level_help_is_the_whole_parsers() -> None:
    from mimir_tui.cli import build_parser

    assert build_parser(["--help"]).format_help() == build_parser().format_help()
    assert build_parser([]).format_usage() == build_parser().format_usage()


def test_loading_the_plugins_imports_no_http_client() -> None:
    """httpx and httpcore (with trio, when installed) cost an instance about 10 MiB: they come
    with the first request a step makes, not with the plugins' config models; and ``regex``
    (1.3 MiB) with the first pattern a step compiles."""
    probe = (
        "import sys\n"
        "from mimir_tui.pipelines.registry import default_registry\n"
        "assert 'Input.api' in default_registry()\n"
        "print(sorted(m for m in ('httpx', 'httpcore', 'trio', 'regex') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
