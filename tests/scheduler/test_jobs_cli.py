"""``mimir-tui jobs ...``: add, list, show, edit, enable, disable, delete, run, next; JSON output;
exit code 2 with one line on stderr for bad input; ``run --wait`` with no service running."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sched_helpers import add_pipelines, bad_spec, config_settings, ok_spec, saved_run, write_config

from mimir_tui.cli import main
from mimir_tui.persistence import JobExecutionRecord, open_backend


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
    assert code == 0 and (json.loads(out)["id"], json.loads(out)["deleted"]) == ("nightly", True)
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


# -- next runs before any service ran, and overdue ones (issue 10, item 2) --------------------


def test_demo_jobs_have_their_next_run_before_any_service_ran(capsys, cfg):
    """The attack: the demo's enabled jobs showed NEXT RUN ``-`` until a service had fired them
    (the demo wrote its jobs around the one function that computes next_run)."""
    from mimir_tui.demo import DEMO_JOBS, seed_demo

    with open_backend(config_settings(cfg)) as store:
        before = store.database_now()
        seed_demo(store)
    code, out, err = run(capsys, cfg, "jobs", "list", "--json")
    assert code == 0, err
    listed = {j["id"]: j for j in json.loads(out)}
    for job_id, _, _, _, enabled in DEMO_JOBS:
        job = listed[job_id]
        if enabled:
            assert datetime.fromisoformat(job["next_run"]) > before and job["overdue"] is False, job
        else:
            assert job["next_run"] is None and job["overdue"] is False


def test_an_overdue_next_run_reads_as_overdue(capsys, cfg):
    """The attack: a stopped service leaves NEXT RUN in the past, shown like any other time.
    ``jobs list`` and ``jobs show`` say how overdue it is; ``--json`` keeps the raw value and
    says ``overdue``."""
    add(capsys, cfg, "--id", "late")
    add(capsys, cfg, "--id", "fine")
    add(capsys, cfg, "--id", "off", "--disabled")
    with open_backend(config_settings(cfg)) as store:
        # As a service that stopped 3 min 20 s before its next fire leaves it.
        past = store.database_now() - timedelta(minutes=3, seconds=20)
        store.jobs.set_schedule("late", next_run=past)
        ahead = store.get_job("fine").next_run
    code, out, _ = run(capsys, cfg, "jobs", "list")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert re.search(rf"{past:%Y-%m-%d %H:%M:%S}Z \(overdue 3m2\ds\)", rows["late"]), rows["late"]
    assert f"{ahead:%Y-%m-%d %H:%M:%S}Z " in rows["fine"] and "overdue" not in rows["fine"] + rows["off"]
    code, out, _ = run(capsys, cfg, "jobs", "show", "late")
    assert re.search(rf"^next_run +{re.escape(past.isoformat())} \(overdue 3m2\ds\)$", out, re.M), out
    code, out, _ = run(capsys, cfg, "jobs", "list", "--json")
    listed = {j["id"]: j for j in json.loads(out)}
    assert listed["late"]["next_run"] == past.isoformat() and listed["late"]["overdue"] is True
    assert listed["fine"]["overdue"] is False and listed["off"]["overdue"] is False
    code, out, _ = run(capsys, cfg, "jobs", "show", "late", "--json")
    assert json.loads(out)["overdue"] is True
    # Enabling again (or any edit of its schedule) puts it ahead again; disabling clears it.
    run(capsys, cfg, "jobs", "disable", "late")
    code, out, _ = run(capsys, cfg, "jobs", "enable", "late", "--json")
    assert json.loads(out)["overdue"] is False and datetime.fromisoformat(json.loads(out)["next_run"]) > past


def test_overdue_by_counts_a_second_late_and_not_less():
    """A running scheduler writes the next fire just after a fire: a next run a few hundred
    milliseconds past is on time, not overdue."""
    from mimir_tui.persistence import ScheduledJob
    from mimir_tui.scheduler.jobs import overdue_by

    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    job = ScheduledJob(id="j", name="j", pipeline="p", cron_expr="* * * * *", next_run=now)
    assert overdue_by(job, now + timedelta(milliseconds=900)) is None
    assert overdue_by(job, now + timedelta(seconds=1)) == timedelta(seconds=1)
    assert overdue_by(job, now - timedelta(minutes=5)) is None
    job.enabled = False
    assert overdue_by(job, now + timedelta(hours=1)) is None


# -- deleting a job: what went with it (issue 10, item 4) ------------------------------------


def test_delete_says_what_went_with_the_job_and_deletes_its_log_files(capsys, cfg):
    """The attack: ``jobs delete`` deleted the whole history and said only "deleted job X",
    and left the executions' log files behind. It says how many executions, log files and
    queued runs went (and --json too), and the log files are gone; another job's stay, and so
    does a file outside the logs' folder that a stored execution id names."""
    from mimir_tui.pipelines.execlog import execution_log_path

    settings = config_settings(cfg)
    add(capsys, cfg, "--id", "gone")
    add(capsys, cfg, "--id", "kept")
    for job_id in ("gone", "gone", "kept"):
        code, _, err = run(capsys, cfg, "jobs", "run", job_id, "--wait")
        assert code == 0, err
    with open_backend(settings) as store:
        saved_run(store, store.get_job("gone"), None, status="missed", scheduled_for=datetime(2026, 1, 5, tzinfo=UTC))
        # An execution id written by another tool, naming a file outside the logs' folder.
        store.save_execution(
            JobExecutionRecord(id="../victim", job_id="gone", pipeline="ok", status="failed", context={}, steps=[])
        )
        ran = {j: [e.id for e in store.list_executions(j, 100) if e.status == "success"] for j in ("gone", "kept")}
    logs = {j: [execution_log_path(settings, i) for i in ids] for j, ids in ran.items()}
    assert all(path.is_file() for paths in logs.values() for path in paths)
    victim = execution_log_path(settings, "../victim")
    victim.write_text("not a log of Mimir's")
    run(capsys, cfg, "jobs", "run", "gone")  # queued; no instance runs it

    code, out, err = run(capsys, cfg, "jobs", "delete", "gone")
    assert code == 0 and err == ""
    assert out == "deleted job gone with 4 executions (2 log files on this machine) and 1 queued run\n"
    assert not any(path.exists() for path in logs["gone"])
    assert victim.read_text() == "not a log of Mimir's", "only <id>.log files in executions_dir are deleted"
    assert all(path.is_file() for path in logs["kept"])
    code, out, _ = run(capsys, cfg, "executions", "list", "--json")
    assert {e["job_id"] for e in json.loads(out)} == {"kept"}

    code, out, _ = run(capsys, cfg, "jobs", "delete", "kept", "--json")
    assert code == 0 and json.loads(out) == {
        "id": "kept",
        "deleted": True,
        "executions": 1,
        "queued_runs": 0,
        "log_files": 1,
        "log_files_left": [],
    }
    assert not logs["kept"][0].exists()


# -- the schedule in words, its next fires, seconds-first expressions (issue 10, item 5) ------


def test_add_and_edit_print_the_schedule_in_words_and_the_next_three_fires_in_its_zone(capsys, cfg):
    argv = ["jobs", "add", "--id", "j", "--name", "n", "--pipeline", "ok", "--cron", "30 2 * * *"]
    code, out, err = run(capsys, cfg, *argv)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "schedule               At 02:30 every day (Europe/Berlin)" in lines
    at = lines.index("schedule               At 02:30 every day (Europe/Berlin)") + 1
    fires = [line.split()[-1] for line in lines[at : at + 3]]
    assert lines[at].startswith("next fires ") and lines[at + 1].startswith(" " * 23) and len(lines) == at + 3
    local = [datetime.fromisoformat(f) for f in fires]
    assert all(f.strftime("%H:%M") in ("02:30", "03:00") for f in local), "03:00: spring forward skips 02:30"
    assert [(f.date() - local[0].date()).days for f in local] == [0, 1, 2]
    assert all(f.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for f in local), "in Berlin time"

    code, out, err = run(capsys, cfg, "jobs", "edit", "j", "--cron", "0 9 * * 1-5", "--tz", "America/New_York")
    assert code == 0 and err == ""
    assert "schedule               At 09:00 on Monday through Friday (America/New_York)" in out
    fires = [datetime.fromisoformat(line.split()[-1]) for line in out.splitlines()[-3:]]
    assert all(f.strftime("%H:%M") == "09:00" and f.weekday() < 5 for f in fires)
    assert all(f.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4)) for f in fires)

    code, out, _ = run(capsys, cfg, "jobs", "edit", "j", "--name", "renamed")  # still printed
    assert "schedule               At 09:00 on Monday through Friday (America/New_York)" in out
    code, out, _ = run(capsys, cfg, "jobs", "disable", "j")
    assert "schedule" not in out
    code, out, _ = run(capsys, cfg, "jobs", "add", "--name", "d", "--pipeline", "ok", "--cron", "@daily", "--disabled")
    assert "next fires if enabled  " in out


@pytest.mark.parametrize("json_out", [False, True])
def test_add_and_edit_warn_when_six_fields_look_seconds_first(capsys, cfg, json_out):
    """The attack: ``*/5 * * * * *``, meant as every 5 seconds, fires every second of every
    fifth minute, silently. ``jobs add`` and ``jobs edit`` warn on stderr (exit 0, the job is
    saved as given) and say what to write instead; the words show what it does."""
    extra = ["--json"] if json_out else []
    argv = ["jobs", "add", "--id", "j", "--name", "n", "--pipeline", "ok", "--cron", "*/5 * * * * *", *extra]
    code, out, err = run(capsys, cfg, *argv)
    assert code == 0
    (warning,) = err.splitlines()
    assert warning.startswith("warning: cron expression '*/5 * * * * *' has 6 fields") and "'* * * * * */5'" in warning
    if json_out:
        assert json.loads(out)["cron_expr"] == "*/5 * * * * *"
    else:
        assert "schedule               Every fifth minute of every hour, every second (Europe/Berlin)" in out
        fires = [datetime.fromisoformat(line.split()[-1]) for line in out.splitlines()[-3:]]
        # every second of a fifth minute; near a fifth minute's end the next fire is the next one's :00
        assert all(f.minute % 5 == 0 for f in fires)
        steps = itertools.pairwise(fires)
        assert all(b - a == timedelta(seconds=1) or (a.second, b.second) == (59, 0) for a, b in steps)
    code, out, err = run(capsys, cfg, "jobs", "edit", "j", "--cron", "0 0 9 * * 1-5", *extra)
    assert code == 0 and "'0 9 * * 1-5 0'" in err and "days of the week" in err
    code, out, err = run(capsys, cfg, "jobs", "edit", "j", "--cron", "* * * * * */5", *extra)
    assert code == 0 and err == ""
    code, out, err = run(capsys, cfg, "jobs", "next", "--cron", "0 */5 * * * *", "-n", "1")
    assert code == 0 and "'*/5 * * * * 0'" in err


def test_a_duplicate_job_id_is_bad_input(capsys, cfg):
    """The attack: a duplicate id exited 1 (an operation that failed) where any other bad input
    exits 2. It exits 2, one line naming the id, and the job is left as it was."""
    add(capsys, cfg, "--id", "nightly")
    code, out, err = run(
        capsys, cfg, "jobs", "add", "--id", "nightly", "--name", "other", "--pipeline", "bad", "--cron", "* * * * *"
    )
    assert code == 2 and out == ""
    (line,) = errors(err)
    assert "job 'nightly' already exists" in line
    code, out, _ = run(capsys, cfg, "jobs", "show", "nightly", "--json")
    assert (json.loads(out)["name"], json.loads(out)["pipeline"]) == ("nightly", "ok")
