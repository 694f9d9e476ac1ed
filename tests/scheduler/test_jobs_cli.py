"""``mimir-tui jobs ...``: add, list, show, edit, enable, disable, delete, run, next; JSON output;
exit code 2 with one line on stderr for bad input; ``run --wait`` with no service running."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sched_helpers import add_pipelines, bad_spec, config_settings, ok_spec, write_config

from mimir_tui.cli import main
from mimir_tui.persistence import open_backend


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = write_config(tmp_path / "site", scheduler={"timezone": "Europe/Berlin", "misfire_grace": 15})
    with open_backend(config_settings(path)) as store:
        add_pipelines(store, ok_spec(), bad_spec())
    return path


def run(capsys, cfg: Path, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--config", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mimir-tui: error:")]


def add(capsys, cfg, *extra: str) -> dict:
    code, out, err = run(
        capsys, cfg, "jobs", "add", "--name", "nightly", "--pipeline", "ok", "--cron", "30 2 * * *", "--json", *extra
    )
    assert code == 0, err
    return json.loads(out)


def test_add_list_show_edit_enable_disable_delete(capsys, cfg):
    job = add(capsys, cfg, "--id", "nightly", "--max-retries", "2", "--priority", "3")
    assert job["id"] == "nightly" and job["enabled"] is True
    assert job["timezone"] == "Europe/Berlin", "default zone from scheduler.timezone"
    assert job["misfire_grace_seconds"] == 15, "default grace from scheduler.misfire_grace"
    assert (job["max_retries"], job["priority"], job["misfire_policy"], job["max_concurrent"]) == (2, 3, "once", 1)
    next_run = datetime.fromisoformat(job["next_run"])
    assert next_run.utcoffset().total_seconds() == 0
    assert next_run.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).strftime("%H:%M") in ("02:30", "03:00")

    code, out, _ = run(capsys, cfg, "jobs", "list", "--json")
    assert code == 0 and [j["id"] for j in json.loads(out)] == ["nightly"]
    code, out, _ = run(capsys, cfg, "jobs", "list")
    assert code == 0 and "nightly" in out and "30 2 * * *" in out and "Europe/Berlin" in out
    code, out, _ = run(capsys, cfg, "jobs", "show", "nightly", "--json")
    assert code == 0 and json.loads(out)["cron_expr"] == "30 2 * * *"

    code, out, err = run(
        capsys, cfg, "jobs", "edit", "nightly", "--cron", "0 */6 * * *", "--tz", "UTC", "--misfire", "skip", "--json"
    )
    assert code == 0, err
    edited = json.loads(out)
    assert (edited["cron_expr"], edited["timezone"], edited["misfire_policy"]) == ("0 */6 * * *", "UTC", "skip")
    assert datetime.fromisoformat(edited["next_run"]).hour % 6 == 0

    code, out, _ = run(capsys, cfg, "jobs", "disable", "nightly", "--json")
    assert code == 0 and json.loads(out)["enabled"] is False and json.loads(out)["next_run"] is None
    code, out, _ = run(capsys, cfg, "jobs", "enable", "nightly", "--json")
    assert code == 0 and json.loads(out)["enabled"] is True and json.loads(out)["next_run"] is not None

    code, out, _ = run(capsys, cfg, "jobs", "delete", "nightly", "--json")
    assert code == 0 and json.loads(out) == {"id": "nightly", "deleted": True}
    code, out, _ = run(capsys, cfg, "jobs", "list", "--json")
    assert json.loads(out) == []


def test_add_disabled_has_no_next_run(capsys, cfg):
    job = add(capsys, cfg, "--disabled")
    assert job["enabled"] is False and job["next_run"] is None


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["jobs", "add", "--name", "n", "--pipeline", "ok", "--cron", "61 * * * *"], "61 * * * *"),
        (["jobs", "add", "--name", "n", "--pipeline", "ok", "--cron", "* * *"], "3 fields"),
        (
            ["jobs", "add", "--name", "n", "--pipeline", "ok", "--cron", "* * * * *", "--tz", "Mars/Olympus"],
            "Mars/Olympus",
        ),
        (["jobs", "add", "--name", "n", "--pipeline", "nope", "--cron", "* * * * *"], "'nope'"),
        (
            ["jobs", "add", "--name", "n", "--pipeline", "ok", "--cron", "* * * * *", "--max-concurrent", "0"],
            "max_concurrent",
        ),
        (["jobs", "show", "ghost"], "'ghost'"),
        (["jobs", "enable", "ghost"], "'ghost'"),
        (["jobs", "disable", "ghost"], "'ghost'"),
        (["jobs", "delete", "ghost"], "'ghost'"),
        (["jobs", "run", "ghost"], "'ghost'"),
        (["jobs", "run", "ghost", "--wait"], "'ghost'"),
        (["jobs", "edit", "ghost", "--name", "x"], "'ghost'"),
        (["jobs", "next", "ghost"], "'ghost'"),
        (["jobs", "next", "--cron", "bad cron"], "bad cron"),
        (["jobs", "next", "--cron", "* * * * *", "--tz", "Nowhere/City"], "Nowhere/City"),
        (["jobs", "next", "--cron", "* * * * *", "--from", "yesterday"], "yesterday"),
        (["jobs", "next", "--cron", "* * * * *", "-n", "0"], "-n 0"),
        (["jobs", "next"], "job ID or --cron"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(capsys, cfg, argv, fragment):
    code, out, err = run(capsys, cfg, *argv)
    assert code == 2, (out, err)
    lines = errors(err)
    assert len(lines) == 1 and fragment in lines[0], err
    assert out == ""


def test_bad_edits_exit_2_and_change_nothing(capsys, cfg):
    add(capsys, cfg, "--id", "j")
    for argv, fragment in (
        (["--cron", "99 * * * *"], "99"),
        (["--tz", "Atlantis"], "Atlantis"),
        (["--pipeline", "nope"], "'nope'"),
        ([], "nothing to change"),
    ):
        code, _, err = run(capsys, cfg, "jobs", "edit", "j", *argv)
        assert code == 2 and fragment in errors(err)[0]
    code, out, _ = run(capsys, cfg, "jobs", "show", "j", "--json")
    job = json.loads(out)
    assert (job["cron_expr"], job["timezone"], job["pipeline"]) == ("30 2 * * *", "Europe/Berlin", "ok")


def test_run_queues_a_request(capsys, cfg):
    add(capsys, cfg, "--id", "j")
    code, out, err = run(capsys, cfg, "jobs", "run", "j", "--json")
    assert code == 0, err
    queued = json.loads(out)
    assert queued["job_id"] == "j" and queued["execution_id"]
    with open_backend(config_settings(cfg)) as store:
        assert [(r.id, r.triggered_by) for r in store.runs.list_queue()] == [(queued["queued"], "manual")]


def test_run_wait_without_a_service_runs_it_here(capsys, cfg):
    """No instance is alive: the command claims its request and runs it itself; 0 on success,
    1 on failure."""
    add(capsys, cfg, "--id", "good")
    code, out, err = run(
        capsys, cfg, "jobs", "add", "--id", "broken", "--name", "b", "--pipeline", "bad", "--cron", "0 0 1 1 *"
    )
    assert code == 0, err
    code, out, err = run(capsys, cfg, "jobs", "run", "good", "--wait", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert (record["status"], record["triggered_by"], record["job_id"]) == ("success", "manual", "good")
    code, out, err = run(capsys, cfg, "jobs", "run", "broken", "--wait")
    assert code == 1
    assert "failed" in out and "does not exist" in out
    with open_backend(config_settings(cfg)) as store:
        assert store.runs.list_queue() == []
        workers = store.workers.list_workers()
        assert workers and {w.status for w in workers} == {"stopped"}
        assert store.get_job("broken").last_result == "failed"


def test_next_prints_dst_correct_times(capsys, cfg):
    code, out, err = run(
        capsys,
        cfg,
        "jobs",
        "next",
        "--cron",
        "30 2 * * *",
        "--tz",
        "America/New_York",
        "--from",
        "2026-03-07T00:00:00Z",
        "-n",
        "3",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["fires"] == ["2026-03-07T07:30:00+00:00", "2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"]
    # Spring forward skips 02:30 on March 8: it runs right after the jump, at 03:00 EDT.
    assert data["fires_local"] == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    code, out, _ = run(
        capsys,
        cfg,
        "jobs",
        "next",
        "--cron",
        "30 2 * * *",
        "--tz",
        "America/New_York",
        "--from",
        "2026-03-07T00:00:00Z",
        "-n",
        "3",
    )
    assert code == 0
    assert out.splitlines() == [
        "2026-03-07T02:30:00-05:00   (2026-03-07T07:30:00+00:00)",
        "2026-03-08T03:00:00-04:00   (2026-03-08T07:00:00+00:00)",
        "2026-03-09T02:30:00-04:00   (2026-03-09T06:30:00+00:00)",
    ]


def test_next_of_a_job_uses_its_zone(capsys, cfg):
    add(capsys, cfg, "--id", "j", "--tz", "America/New_York")
    code, out, err = run(capsys, cfg, "jobs", "next", "j", "--from", "2026-11-01T00:00:00Z", "-n", "2", "--json")
    assert code == 0, err
    # 02:30 in New York (after the fall-back of November 1 at 02:00 EDT: EST, UTC-5), not in
    # Berlin (the default zone) nor UTC.
    assert json.loads(out)["fires"] == ["2026-11-01T07:30:00+00:00", "2026-11-02T07:30:00+00:00"]
    code, _, err = run(capsys, cfg, "jobs", "next", "j", "--cron", "* * * * *")
    assert code == 2 and "not both" in errors(err)[0]


@pytest.mark.slow
def test_run_wait_exit_codes_in_a_real_process(run_cli, cfg):
    code = main(
        ["jobs", "add", "--id", "b", "--name", "b", "--pipeline", "bad", "--cron", "0 0 1 1 *", "--config", str(cfg)]
    )
    assert code == 0
    proc = run_cli("jobs", "run", "b", "--wait", "--config", str(cfg))
    assert proc.returncode == 1, proc.stderr
    proc = run_cli("jobs", "add", "--name", "n", "--pipeline", "ok", "--cron", "* * * * * * *", "--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "7 fields" in proc.stderr


def test_queue_option(capsys, cfg):
    job = add(capsys, cfg, "--id", "render", "--queue", "gpu")
    assert job["queue"] == "gpu"
    code, out, _ = run(capsys, cfg, "jobs", "list")
    assert code == 0 and "QUEUE" in out.splitlines()[0] and " gpu " in out
    code, out, err = run(capsys, cfg, "jobs", "edit", "render", "--queue", "gpu,cpu")
    assert code == 2 and len(errors(err)) == 1 and "queue name 'gpu,cpu'" in err
    code, out, _ = run(capsys, cfg, "jobs", "edit", "render", "--queue", "default", "--json")
    assert code == 0 and json.loads(out)["queue"] == "default"


def test_next_explain_reads_the_schedule_in_words(capsys, cfg):
    code, out, err = run(
        capsys, cfg, "jobs", "next", "--cron", "1 1 * * 5L", "--tz", "Europe/Riga", "--from", "2020-01-01T00:00:00Z",
        "-n", "1", "--explain",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        "At 01:01 on the last Friday of the month",
        "2020-01-31T01:01:00+02:00   (2020-01-30T23:01:00+00:00)",
    ]


def test_next_refuses_an_unsupported_construct_in_mimirs_words(capsys, cfg):
    """croniter said ``[1 1 * * l5#1] is not acceptable``; Mimir names the field and what it takes."""
    code, out, err = run(capsys, cfg, "jobs", "next", "--cron", "1 1 * * 5L#1")
    assert code == 2 and out == ""
    (line,) = errors(err)
    assert "bad day-of-week '5L#1'" in line and "n#k" in line and "acceptable" not in line
