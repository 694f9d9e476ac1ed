"""Attacks with names and values (issue 9, items 9, 10 and 11):

- bad input that exited 1 with an unclear line (a RecursionError, an OSError showing the venv's
  path, an OverflowError) is exit 2 with one line naming the input;
- control characters in names and ids (ESC, newline, C1, NUL) are refused at input, and stored
  ones (rows from before the check) are escaped in every text output: no terminal injection;
- names longer than their column are refused alike on SQLite, PostgreSQL and MariaDB, with one
  line naming the field and the limit (SQLite took them, MariaDB failed with a driver error).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bad_input import assert_one_line_failure, error_lines

from mimir_tui.cli import main as cli_main
from mimir_tui.config import Settings
from mimir_tui.constants import NAME_LENGTH
from mimir_tui.persistence import JobExecutionRecord, PipelineConfig, ScheduledJob, open_backend
from mimir_tui.persistence.models import JOBS, PIPELINES

PIPELINE_YAML = """name: {name}
steps:
  - name: {step}
    plugin: Input.file
    config: {{path: /etc/hostname}}
"""


def pipeline_file(folder: Path, name: str = "p1", step: str = "read", *, file: str = "p.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_text(PIPELINE_YAML.format(name=json.dumps(name), step=json.dumps(step)), encoding="utf-8")
    return path


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment that points ``mimir-tui`` at ``settings``' database."""
    p = settings.persistence
    if p.backend == "sqlite":
        return {"MIMIR_DATABASE_PATH": p.database_path}
    return {"MIMIR_BACKEND": p.backend, "MIMIR_CONNECTION_STRING": p.connection_string}


@pytest.fixture
def cli(monkeypatch, capsys, sqlite_settings: Settings):
    """``cli(*argv) -> (exit code, stdout, stderr)`` in this process, on ``sqlite_settings``."""

    def run(*argv: str, settings: Settings = sqlite_settings) -> tuple[int, str, str]:
        with monkeypatch.context() as env:
            for name, value in cli_env(settings).items():
                env.setenv(name, value)
            code = cli_main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_error(code: int, err: str, *, mentions: str) -> str:
    lines = error_lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert mentions in lines[0], lines[0]
    return lines[0]


# -- item 9: exit 2 with one line naming the input ----------------------------------------------


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [200, 5000])
def test_deeply_nested_pipeline_yaml_is_exit_2_naming_the_file(levels: int, tmp_path: Path, run_cli) -> None:
    """Attack: a pipeline file nested 200 (or 5,000) levels deep raised RecursionError (exit 1)."""
    path = tmp_path / "deep.yaml"
    path.write_text(PIPELINE_YAML.format(name='"deep"', step='"s"').replace("{path: /etc/hostname}", nested(levels)))
    for argv in (["pipelines", "validate", str(path)], ["pipelines", "run", str(path)]):
        proc = run_cli(*argv)
        line = assert_one_line_failure(proc, exit_code=2, mentions=f"{path}:5:")
        assert "nested deeper than 64 levels" in line and "Recursion" not in line
    proc = run_cli("pipelines", "import", str(path))
    assert_one_line_failure(proc, exit_code=2, mentions="nested deeper")
    assert run_cli("pipelines", "list", "--json").stdout.strip() == "[]"


def test_deeply_nested_config_file_is_exit_2_naming_the_file(tmp_path: Path, cli) -> None:
    """Attack: a config file nested 5,000 levels deep (RecursionError, exit 1)."""
    config = tmp_path / "mimir.yaml"
    config.write_text(f"scheduler:\n  queues: {nested(5000)}\n")
    code, _, err = cli("health", "--config", str(config))
    line = one_error(code, err, mentions=f"{config}:2:")
    assert "invalid YAML: nested deeper than 64 levels" in line


LONG_ZONE = "A" * 5000


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "next", "--cron", "* * * * *", "--tz", LONG_ZONE],
        ["jobs", "add", "--name", "n", "--pipeline", "p1", "--cron", "* * * * *", "--tz", LONG_ZONE],
    ],
    ids=["next", "add"],
)
def test_a_5000_character_timezone_is_exit_2_without_paths(argv: list[str], run_cli) -> None:
    """Attack: --tz of 5,000 characters: OSError "File name too long" with the venv's path."""
    proc = run_cli(*argv)
    line = assert_one_line_failure(proc, exit_code=2, mentions="timezone 'AAAA")
    assert "site-packages" not in line and "OSError" not in line and len(line) < 200


def test_a_5000_character_timezone_in_the_config_is_exit_2(tmp_path: Path, cli) -> None:
    config = tmp_path / "mimir.yaml"
    config.write_text(f"scheduler:\n  timezone: {LONG_ZONE}\n")
    code, _, err = cli("config", "show", "--config", str(config))
    line = one_error(code, err, mentions="scheduler.timezone")
    assert "unknown timezone" in line and "site-packages" not in line and len(line) < 400


@pytest.mark.parametrize(
    "start, mentions",
    [
        ("9999-12-31T23:59:59Z", "no fire after 9999-12-31T23:59:59"),
        ("9999-06-01T00:00:00Z", "'0 0 1 1 *' has no fire after 9999-06-01T00:00:00"),  # "year 10000"
        ("0001-01-01T00:00:00+01:00", "--from '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999"),
    ],
)
def test_next_from_the_end_of_the_calendar_is_exit_2(start: str, mentions: str, run_cli) -> None:
    """Attack: ``jobs next --from 9999-12-31T23:59:59Z`` (OverflowError, exit 1)."""
    cron = "0 0 1 1 *" if start.startswith("9999-06") else "* * * * *"
    proc = run_cli("jobs", "next", "--cron", cron, "--from", start, "-n", "100")
    assert_one_line_failure(proc, exit_code=2, mentions=mentions)


# -- item 10: control characters in names and ids -----------------------------------------------

CONTROLS = {"esc": "\x1b[2J\x1b[31m", "newline": "\nfake row", "c1-csi": "\x9b2J", "del": "\x7f", "tab": "\t"}


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_control_characters_in_job_names_and_ids_are_refused(kind: str, tmp_path: Path, cli) -> None:
    """Attack: a job named with ESC sequences (or a newline, a C1 CSI) was stored and printed
    raw by ``jobs list``: the terminal ran them."""
    bad = "evil" + CONTROLS[kind]
    assert cli("pipelines", "import", str(pipeline_file(tmp_path / "pipelines")))[0] == 0
    base = ["jobs", "add", "--pipeline", "p1", "--cron", "* * * * *"]
    code, _, err = cli(*base, "--name", bad)
    one_error(code, err, mentions=": name 'evil")
    assert "control character" in err and "\x1b" not in err and "\x9b" not in err
    code, _, err = cli(*base, "--name", "fine", "--id", bad)
    one_error(code, err, mentions="job id 'evil")
    code, _, err = cli(*base, "--name", "fine", "--id", "j1")
    assert code == 0, err
    code, _, err = cli("jobs", "edit", "j1", "--name", bad)
    one_error(code, err, mentions="job 'j1': name 'evil")
    code, _, err = cli("jobs", "edit", "j1", "--description", "ok\nmulti-line\x1b[2J")
    one_error(code, err, mentions="description")
    code, out, _ = cli("jobs", "list", "--json")
    assert [(j["id"], j["name"], j["description"]) for j in json.loads(out)] == [("j1", "fine", "")]


@pytest.mark.parametrize("where", ["pipeline", "step"])
@pytest.mark.parametrize("kind", ["esc", "newline", "nul", "c1-csi"])
def test_control_characters_in_pipeline_names_from_yaml_are_refused(where: str, kind: str, tmp_path: Path, cli) -> None:
    """Attack: a pipeline (or step) named with control characters in YAML (a NUL too)."""
    bad = "evil" + {**CONTROLS, "nul": "\x00"}[kind]
    path = pipeline_file(tmp_path, **({"name": bad} if where == "pipeline" else {"step": bad}))
    for argv in (["pipelines", "validate", str(path)], ["pipelines", "import", str(path)]):
        code, _, err = cli(*argv)
        assert code == 2, err
        assert f"{path}:" in err and "control character" in err
        assert not any(c in err for c in "\x1b\x00\x9b"), err
    assert json.loads(cli("pipelines", "list", "--json")[1]) == []


def test_stored_control_characters_are_escaped_in_every_text_output(sqlite_settings: Settings, cli) -> None:
    """Attack: rows saved before the check (or by another tool) hold ESC sequences, a newline
    that forges a table row, and a C1 CSI: text outputs show them escaped, JSON keeps them
    (escaped by JSON itself)."""
    evil = "x\x1b[2J\x1b]0;owned\x07\nforged row\x9b31m"
    with open_backend(sqlite_settings) as store:
        store.save_pipeline(PipelineConfig(name=evil, description=evil, config=json.dumps({"name": evil, "steps": []})))
        store.save_job(ScheduledJob(id="j" + evil, name=evil, pipeline=evil, cron_expr="* * * * *"))
        store.save_execution(JobExecutionRecord(id="e1", job_id="j" + evil, pipeline=evil, status="failed", error=evil))
    outputs = {
        "jobs list": cli("jobs", "list"),
        "jobs show": cli("jobs", "show", "j" + evil),
        "executions list": cli("executions", "list"),
        "executions show": cli("executions", "show", "e1"),
        "pipelines list": cli("pipelines", "list"),
        "pipelines show": cli("pipelines", "show", evil),
        "jobs show unknown": cli("jobs", "show", "nope" + evil),
    }
    for what, (code, out, err) in outputs.items():
        assert code == (2 if what.endswith("unknown") else 0), (what, err)
        text = out + err
        for raw in ("\x1b", "\x07", "\x9b"):
            assert raw not in text, (what, text)
        assert "\\x1b[2J" in text, (what, text)
    jobs_list = outputs["jobs list"][1].splitlines()
    assert len(jobs_list) == 2 and "forged row" in jobs_list[1]  # the newline forged no row
    for argv in (["jobs", "list", "--json"], ["executions", "list", "--json"], ["pipelines", "list", "--json"]):
        code, out, _ = cli(*argv)
        assert code == 0 and "\x1b" not in out and "\x9b" not in out
        assert evil in [value for row in json.loads(out) for value in row.values()]  # the same text


# -- item 11: the same length limits on every backend ---------------------------------------


def test_the_limits_are_the_columns() -> None:
    """The checks read their limits off the tables: nothing to keep in step by hand."""
    from mimir_tui.scheduler.jobs import _TEXT_LIMITS

    assert PIPELINES.c.name.type.length == NAME_LENGTH == JOBS.c.name.type.length
    assert _TEXT_LIMITS["name"] == NAME_LENGTH and _TEXT_LIMITS["timezone"] == JOBS.c.timezone.type.length


def test_long_names_are_refused_alike_on_every_backend(backend_settings: Settings, tmp_path: Path, cli) -> None:
    """Attack: a 300-character pipeline name and a 70,000-character job name: SQLite stored
    them, MariaDB failed with "Data too long" (exit 1). Every backend: exit 2, one line naming
    the field and the limit, nothing stored; a name of exactly the limit is stored whole."""
    run = lambda *argv: cli(*argv, settings=backend_settings)  # noqa: E731
    longest = "p" * NAME_LENGTH
    code, _, err = run("pipelines", "import", str(pipeline_file(tmp_path / "long", longest + "p")))
    assert code == 2 and f"has {NAME_LENGTH + 1} characters; at most {NAME_LENGTH} fit" in err, err
    assert "key 'name'" in err
    code, _, err = run("pipelines", "import", str(pipeline_file(tmp_path / "ok", longest)))
    assert code == 0, err
    add = ["jobs", "add", "--pipeline", longest, "--cron", "* * * * *"]
    code, _, err = run(*add, "--name", "n" * 70_000)
    one_error(code, err, mentions=": name 'nnnn")
    assert f"has 70000 characters; at most {NAME_LENGTH} fit" in err
    code, _, err = run(*add, "--name", "n", "--id", "i" * (NAME_LENGTH + 1))
    one_error(code, err, mentions=f"at most {NAME_LENGTH} fit")
    code, _, err = run(*add, "--name", "n" * NAME_LENGTH, "--id", "i" * NAME_LENGTH, "--json")
    assert code == 0, err
    code, out, _ = run("jobs", "list", "--json")
    assert [(j["id"], j["name"], j["pipeline"]) for j in json.loads(out)] == [
        ("i" * NAME_LENGTH, "n" * NAME_LENGTH, longest)
    ]
    code, out, _ = run("pipelines", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == [longest]
