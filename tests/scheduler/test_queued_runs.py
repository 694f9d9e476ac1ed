"""Issue 10, item 1 (and item 7's cancelled queued run): a run waiting in the queue is an
execution like any other where runs are listed and shown, with its status ``queued``; ``jobs
run`` says when no instance will take it. On every backend, through the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sched_helpers import T0, add_pipelines, bad_spec, config_settings, ok_spec, write_config

from mimir_tui.cli import main
from mimir_tui.persistence import JobExecutionRecord, RunRequest, ScheduledJob, Worker, open_backend


@pytest.fixture
def site(tmp_path: Path, backend_settings) -> Path:
    """A config file on the backend under test, with the pipelines ``ok`` and ``bad`` and the
    jobs ``j`` (queue ``default``) and ``render`` (queue ``gpu``)."""
    p = backend_settings.persistence
    server = {"backend": p.backend, "connection_string": p.connection_string} if p.backend != "sqlite" else None
    path = write_config(tmp_path / "site", persistence=server)
    with open_backend(config_settings(path)) as store:
        add_pipelines(store, ok_spec(), bad_spec())
        for job_id, queue in (("j", "default"), ("render", "gpu")):
            store.save_job(ScheduledJob(id=job_id, name=job_id, pipeline="ok", cron_expr="0 0 1 1 *", queue=queue))
    return path


def cli(capsys, site: Path, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--config", str(site)])
    out, err = capsys.readouterr()
    return code, out, err


def queued_run(capsys, site: Path, job_id: str = "j") -> tuple[str, str]:
    """``jobs run JOB``: the execution id it printed, and its stderr."""
    code, out, err = cli(capsys, site, "jobs", "run", job_id)
    assert code == 0, err
    prefix = f"queued run of job {job_id}: execution "
    assert out.startswith(prefix), out
    return out[len(prefix) :].strip(), err


def test_a_queued_run_is_listed_shown_and_cancelled(capsys, site):
    """The newcomer's path: ``jobs run`` printed an execution id that ``executions show`` called
    unknown and ``executions list --status queued`` did not list, and nothing said that no
    instance would run it."""
    execution_id, err = queued_run(capsys, site)
    assert "no running instance serves queue 'default'" in err
    assert "mimir-tui --headless" in err and "mimir-tui jobs run j --wait" in err

    code, out, _ = cli(capsys, site, "executions", "list", "--status", "queued", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["id"], row["status"], row["job_id"], row["pipeline"]) == (execution_id, "queued", "j", "ok")
    assert (row["worker_id"], row["end_time"], row["steps"]) == (None, None, [])
    for argv in (["--job", "j"], ["--status", "queued,failed"], []):
        code, out, _ = cli(capsys, site, "executions", "list", *argv, "--json")
        assert [r["id"] for r in json.loads(out)] == [execution_id], argv
    code, out, _ = cli(capsys, site, "executions", "list", "--status", "running", "--json")
    assert json.loads(out) == []
    code, out, _ = cli(capsys, site, "executions", "list")
    assert code == 0 and execution_id in out and " queued " in out

    code, out, err = cli(capsys, site, "executions", "show", execution_id, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["id"], shown["status"], shown["job_id"]) == (execution_id, "queued", "j")
    code, out, err = cli(capsys, site, "executions", "show", execution_id)
    assert code == 0, err
    lines = out.splitlines()
    assert "status         queued" in lines
    assert "queue          default (no running instance serves it: the run waits until one starts)" in lines
    assert any(line.startswith("log   ") and line.endswith(" (none yet: the run has not started)") for line in lines)
    assert "not on this machine" not in out

    code, out, err = cli(capsys, site, "executions", "cancel", execution_id)
    assert code == 0, err
    assert f"execution {execution_id} (ok) was still queued: cancelled" in out
    code, out, _ = cli(capsys, site, "executions", "show", execution_id)
    assert "status         cancelled" in out.splitlines()
    assert any(line.endswith(f"{execution_id}.log (none: the run never started)") for line in out.splitlines())
    assert "not on this machine" not in out
    code, out, _ = cli(capsys, site, "executions", "list", "--status", "queued", "--json")
    assert json.loads(out) == []
    with open_backend(config_settings(site)) as store:
        assert store.runs.list_queue() == []


def test_jobs_run_says_whether_a_running_instance_serves_the_queue(capsys, site):
    """An instance serving the job's queue takes the run: no note. One serving another queue,
    or one that is stopping (it takes no more work), does not count."""
    with open_backend(config_settings(site)) as store:
        for worker_id, queues, status in (("w-default", "default", "running"), ("w-gpu", "gpu", "stopping")):
            worker = Worker(id=worker_id, host="elsewhere", pid=1, version="t", queues=queues, status=status)
            worker.started_at = worker.heartbeat_at = None  # the database's clock
            store.workers.register_worker(worker)
    code, out, err = cli(capsys, site, "jobs", "run", "j", "--json")
    assert code == 0 and err == ""
    queued = json.loads(out)
    assert (queued["job_id"], queued["queue"], queued["instances"]) == ("j", "default", 1)
    code, out, _ = cli(capsys, site, "executions", "show", queued["execution_id"])
    assert "queue          default (1 running instance(s) serve it)" in out.splitlines()

    code, out, err = cli(capsys, site, "jobs", "run", "render", "--json")
    assert code == 0 and (json.loads(out)["queue"], json.loads(out)["instances"]) == ("gpu", 0)
    assert "no running instance serves queue 'gpu'" in err


def test_history_pages_hold_waiting_runs_once_in_order(backend):
    """The history merges the queue into its pages: newest first, keyset paging across both,
    the status filter, and a claimed request listed once (as its execution). What limits a
    job's runs at once (``count_running``) still counts only claimed runs."""
    backend.save_job(ScheduledJob(id="j", name="j", pipeline="p", cron_expr="0 0 1 1 *"))
    for hour in (1, 2, 3):
        backend.save_execution(
            JobExecutionRecord(
                id=f"run-{hour}",
                job_id="j",
                pipeline="p",
                start_time=T0 + timedelta(hours=hour),
                status="success",
                worker_id="w",
            )
        )
    first = backend.runs.enqueue(RunRequest(job_id="j", pipeline="p"))
    second = backend.runs.enqueue(RunRequest(job_id="j", pipeline="p"))
    newest_first = [second.execution_id, first.execution_id, "run-3", "run-2", "run-1"]
    assert [r.id for r in backend.list_executions("j", 10)] == newest_first

    pages, before = [], None
    while True:
        page = backend.executions.page("j", 2, before=before)
        if not page:
            break
        pages.append([r.id for r in page])
        before = (page[-1].start_time, page[-1].id)
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert [r.status for r in backend.executions.page(None, 10)] == ["queued"] * 2 + ["success"] * 3
    assert [r.id for r in backend.executions.page("j", 10, status=["queued"])] == newest_first[:2]
    assert [r.id for r in backend.executions.page("j", 10, status="success")] == newest_first[2:]
    assert backend.executions.count_running("j") == 0

    got = backend.runs.claim_request("w", request_id=first.id)
    assert got is not None
    rows = backend.executions.page("j", 10)
    assert [r.id for r in rows].count(first.execution_id) == 1
    assert {r.id: r.status for r in rows}[first.execution_id] == "running"
    assert backend.get_execution(first.execution_id).worker_id == "w"
    assert backend.get_execution(second.execution_id).status == "queued"
    with pytest.raises(Exception, match="not found"):
        backend.get_execution("no-such-run")
