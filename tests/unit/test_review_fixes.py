"""Bad input found in review: each gives one line and exit 2 (or a clean cancel), never a
traceback, and secrets never reach the screen."""

from __future__ import annotations

import json

import pytest

from mimir_tui.cli import main
from mimir_tui.config import load_settings
from mimir_tui.errors import ConfigError
from mimir_tui.scheduler.cron import CronError, validate_cron


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_cron_dates_that_never_come_are_refused(expr):
    with pytest.raises(CronError, match="never fires"):
        validate_cron(expr)


def test_leap_day_is_fine():
    assert validate_cron("0 0 29 2 *") == "0 0 29 2 *"


@pytest.fixture
def store(tmp_path, capsys):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "p.yaml").write_text(
        "name: p\nsteps:\n  - name: a\n    plugin: Data_Processing.delay\n    config: {seconds: 0}\n    output: a\n"
    )
    assert main(["pipelines", "import", str(tmp_path / "pipelines")]) == 0
    capsys.readouterr()
    return tmp_path


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--misfire-grace", "nan"], "finite"),
        (["--timeout", "inf"], "finite"),
        (["--retry-backoff", "1e300"], "out of range"),
        (["--priority", "99999999999999999999"], "out of range"),
        (["--max-retries", "-1"], "out of range"),
        (["--cron", "0 0 30 2 *"], "never fires"),
    ],
)
def test_job_options_out_of_range_are_bad_input(store, capsys, extra, fragment):
    argv = ["jobs", "add", "--name", "x", "--pipeline", "p", "--cron", "* * * * *", *extra]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "jobs", "list", "--json")
    assert json.loads(out) == []  # nothing was written


def test_huge_limit_is_bad_input(store, capsys):
    code, _, err = run(capsys, "executions", "list", "--limit", "99999999999999999999")
    assert code == 2 and "--limit" in err


def test_cancel_a_run_still_in_the_queue(store, capsys):
    assert run(capsys, "jobs", "add", "--id", "j", "--name", "j", "--pipeline", "p", "--cron", "0 0 1 1 *")[0] == 0
    code, out, _ = run(capsys, "jobs", "run", "j", "--json")
    execution_id = json.loads(out)["execution_id"]
    code, out, err = run(capsys, "executions", "cancel", execution_id)
    assert code == 0, err
    code, out, _ = run(capsys, "executions", "show", execution_id, "--json")
    record = json.loads(out)
    assert record["status"] == "cancelled" and record["job_id"] == "j"
    # Nothing is left in the queue for a service to pick up.
    from mimir_tui.persistence import open_backend

    with open_backend(load_settings()) as backend:
        assert backend.runs.list_queue() == []


def test_config_errors_and_config_show_mask_secrets(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text('persistence: "postgresql://u:S3cretPw@h/db"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    assert "S3cretPw" not in str(info.value)
    good = tmp_path / "good.yaml"
    good.write_text(
        "security:\n  jwt_secret: S3cretPw\n  api_keys: [S3cretPw]\nserver:\n  password: S3cretPw\n  port: 80\n"
    )
    code, out, err = run(capsys, "config", "show", "--json", "--config", str(good))
    assert code == 0
    assert "S3cretPw" not in out + err
    assert json.loads(out)["settings"]["server"]["port"] == 80


def test_unexpected_errors_are_one_line(monkeypatch, capsys, store):
    from mimir_tui.commands import health

    def boom(ctx, args):
        raise RuntimeError("kaput at postgres://u:S3cretPw@h/db")

    monkeypatch.setattr(health, "run", boom)
    monkeypatch.delenv("MIMIR_DEBUG", raising=False)
    from mimir_tui import cli

    parser = cli.build_parser()
    args = parser.parse_args(["health"])
    args.handler = boom
    monkeypatch.setattr(cli, "build_parser", lambda *_, **__: _Fixed(parser, args))
    code, out, err = run(capsys, "health")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "kaput" in err and "S3cretPw" not in err


class _Fixed:
    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args


def test_waiting_for_a_run_whose_job_was_deleted_ends(store, capsys):
    from mimir_tui.errors import NotFound
    from mimir_tui.persistence import open_backend
    from mimir_tui.scheduler import jobs as core

    settings = load_settings()
    with open_backend(settings) as backend:
        core.create_job(backend, name="j", pipeline="p", cron_expr="0 0 1 1 *", job_id="gone")
        request = core.run_job_now(backend, "gone")
        backend.delete_job("gone")  # cascades to the queued request
        with pytest.raises(NotFound, match="no longer exists"):
            core.wait_for_run(backend, settings, request, claim_after=0, timeout=10)
