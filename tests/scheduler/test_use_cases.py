"""``run_pipeline_now``: the use case behind ``pipelines run``, callable by the dashboard too."""

from __future__ import annotations

import threading

import pytest
from sched_helpers import ok_spec

from mimir_tui.errors import NotFound
from mimir_tui.scheduler.executor import new_cancel, request_cancel, run_pipeline_now


def test_run_pipeline_now_runs_as_a_registered_worker(store, sqlite_settings) -> None:
    finished = run_pipeline_now(store, sqlite_settings, "ok")
    record = finished.record
    assert record.status == "success" and record.triggered_by == "manual"
    assert store.get_execution(record.id).status == "success"
    assert finished.log_path.is_file() and record.id in finished.log_path.name
    workers = {w.id: w for w in store.workers.list_workers()}
    assert record.worker_id in workers, "the run carried its worker's id"
    assert workers[record.worker_id].status == "stopped", "and the worker ended with the run"


def test_run_pipeline_now_under_an_unknown_job_is_bad_input(store, sqlite_settings) -> None:
    with pytest.raises(NotFound):
        run_pipeline_now(store, sqlite_settings, "ok", job_id="ghost")
    assert store.list_executions(None, 10) == []


def test_run_pipeline_now_stops_on_a_cancel_request(store, sqlite_settings) -> None:
    cancel = new_cancel()
    timer = threading.Timer(0.3, request_cancel, (cancel, "cancelled: the operator closed the pane"))
    timer.start()
    try:
        finished = run_pipeline_now(store, sqlite_settings, ok_spec("slow", seconds=60), cancel=cancel)
    finally:
        timer.cancel()
    assert finished.record.status == "cancelled"
    assert finished.record.error == "cancelled: the operator closed the pane"
