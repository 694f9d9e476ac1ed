"""``retention apply`` (issue 13, item 7): the cutoff's boundary, unfinished runs, keep-last per
job, dry runs, log files, and log paths that lead out of the log folder."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from maint_helpers import site_config

from mimir_tui.cli import main
from mimir_tui.ops.retention import apply_retention
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=10)


def run(backend, settings, job: str | None, start: datetime, status: str = "success", run_id: str | None = None):
    record = JobExecutionRecord(job_id=job, pipeline="p", start_time=start, status=status, triggered_by="manual")
    if run_id:
        record.id = run_id
    if status not in ("running", "queued"):
        record.end_time, record.duration = start + timedelta(seconds=1), 1000
    backend.save_execution(record)
    folder = Path(settings.logging.executions_dir)
    if "/" not in record.id:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{record.id}.log").write_text("x" * 100)
    return record


@pytest.fixture
def jobs(backend):
    for job in ("a", "b"):
        backend.save_job(ScheduledJob(id=job, name=job, pipeline="p", cron_expr="0 0 1 1 *"))
    return backend


def ids(backend) -> set[str]:
    return {r.id for r in backend.list_executions(None, 1000)}


def test_the_cutoff_itself_stays_and_unfinished_runs_are_never_deleted(jobs, backend_settings) -> None:
    backend, settings = jobs, backend_settings
    at_cutoff = run(backend, settings, "a", CUTOFF)
    just_before = run(backend, settings, "a", CUTOFF - timedelta(microseconds=1))
    failed = run(backend, settings, "b", CUTOFF - timedelta(days=300), status="failed")
    running = run(backend, settings, "a", CUTOFF - timedelta(days=30), status="running")
    queued = run(backend, settings, "b", CUTOFF - timedelta(days=30), status="queued")
    report = apply_retention(backend, settings, days=10, now=NOW)
    assert report["deleted"] == 2 and report["cutoff"] == CUTOFF
    assert ids(backend) == {at_cutoff.id, running.id, queued.id}
    assert report["log_files"] == 2 and report["log_bytes"] == 200
    folder = Path(settings.logging.executions_dir)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r.id}.log" for r in (at_cutoff, running, queued))
    assert not {just_before.id, failed.id} & ids(backend)
    assert apply_retention(backend, settings, days=10, now=NOW)["deleted"] == 0


def test_keep_last_spares_each_jobs_latest_runs(jobs, backend_settings) -> None:
    backend, settings = jobs, backend_settings
    a_old = [run(backend, settings, "a", CUTOFF - timedelta(days=i + 1)) for i in range(5)]  # a_old[0] newest
    a_recent = run(backend, settings, "a", NOW - timedelta(hours=1))
    b_old = [run(backend, settings, "b", CUTOFF - timedelta(days=i + 1)) for i in range(2)]
    adhoc = run(backend, settings, None, CUTOFF - timedelta(days=1))  # no job: age alone decides
    settings.persistence.retention_keep_last = 3
    dry = apply_retention(backend, settings, days=10, now=NOW, dry_run=True)
    per_job = {j["job_id"]: j for j in dry["jobs"]}
    assert set(per_job) == {"a", None}
    assert per_job["a"]["count"] == 3 and per_job[None]["count"] == 1 and dry["deleted"] == 4
    assert per_job["a"]["oldest"] == a_old[4].start_time and per_job["a"]["newest"] == a_old[2].start_time
    report = apply_retention(backend, settings, days=10, now=NOW)
    assert report["keep_last"] == 3 and report["deleted"] == 4
    assert ids(backend) == {a_recent.id, a_old[0].id, a_old[1].id, *(r.id for r in b_old)}
    assert adhoc.id not in ids(backend)
    # --keep-last given beats the config
    assert apply_retention(backend, settings, days=10, keep_last=1, now=NOW)["deleted"] == 3
    assert ids(backend) == {a_recent.id, b_old[0].id}


def test_a_dry_run_changes_nothing(jobs, backend_settings) -> None:
    backend, settings = jobs, backend_settings
    for i in range(7):
        run(backend, settings, "a" if i % 2 else "b", CUTOFF - timedelta(days=i + 1))
    before = ids(backend)
    folder = Path(settings.logging.executions_dir)
    logs_before = sorted(p.name for p in folder.iterdir())
    dry = apply_retention(backend, settings, days=10, now=NOW, dry_run=True)
    assert dry["dry_run"] is True and dry["deleted"] == 7 and dry["log_files"] == 7 and dry["log_bytes"] == 700
    assert {j["job_id"]: j["count"] for j in dry["jobs"]} == {"a": 3, "b": 4}
    assert ids(backend) == before and sorted(p.name for p in folder.iterdir()) == logs_before
    done = apply_retention(backend, settings, days=10, now=NOW)
    assert (done["deleted"], done["log_files"], done["log_bytes"]) == (7, 7, 700)


def test_a_log_path_outside_the_log_folder_is_never_touched(jobs, backend_settings, tmp_path) -> None:
    backend, settings = jobs, backend_settings
    folder = Path(settings.logging.executions_dir)
    folder.mkdir(parents=True, exist_ok=True)
    outside = folder.parent / "outside.log"
    outside.write_text("precious")
    escaping = run(backend, settings, "a", CUTOFF - timedelta(days=1), run_id="../outside")
    linked = run(backend, settings, "a", CUTOFF - timedelta(days=2))
    target = tmp_path / "elsewhere.log"
    target.write_text("also precious")
    (folder / f"{linked.id}.log").unlink()
    os.symlink(target, folder / f"{linked.id}.log")
    report = apply_retention(backend, settings, days=10, now=NOW)
    assert report["deleted"] == 2 and not {escaping.id, linked.id} & ids(backend)
    assert report["log_files"] == 0 and report["log_skipped"] == 2
    assert outside.read_text() == "precious" and target.read_text() == "also precious"
    assert (folder / f"{linked.id}.log").is_symlink()  # not ours to remove: left, and said so


def test_retention_apply_command(jobs, backend_settings, tmp_path, capsys) -> None:
    backend, settings = jobs, backend_settings
    old = datetime.now(UTC) - timedelta(days=40)
    for i in range(3):
        run(backend, settings, "a", old - timedelta(hours=i))
    config = site_config(tmp_path, settings)
    assert main(["retention", "apply", "--dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "would delete 3 execution(s), 3 log file(s), 300 B" in out and "a " in out
    assert len(ids(backend)) == 3
    assert main(["retention", "apply", "--days", "45", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 0
    assert main(["retention", "apply", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deleted"] == 3 and report["days"] == 30 and report["log_files"] == 3
    assert ids(backend) == set()
    for bad in (["--days", "-1"], ["--keep-last", "-2"]):
        assert main(["retention", "apply", *bad, "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and bad[0] in err
