"""Mimir's scheduled operations (issue 13): retention is a system job the scheduler fires once
across all instances, a run in the history like any other; its pipeline is not a file's."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from maint_helpers import fire_on_three_instances

from mimir_tui.ops.scheduled import SCHEDULED_OPS, upsert_scheduled_ops
from mimir_tui.persistence import JobExecutionRecord, ScheduledJob, open_backend
from mimir_tui.persistence.types import utcnow
from mimir_tui.pipelines.registry import default_registry
from mimir_tui.pipelines.store import SYSTEM_SOURCE, import_path

#: A quarter of a minute before retention's default time, 03:30 UTC.
BEFORE = datetime(2026, 1, 6, 3, 29, 45, tzinfo=UTC)


def test_retention_fires_once_with_three_schedulers(backend, backend_settings) -> None:
    settings = backend_settings
    settings.scheduler.timezone = "UTC"
    backend.save_job(ScheduledJob(id="user", name="user", pipeline="p", cron_expr="0 0 1 1 *", enabled=False))
    old = utcnow() - timedelta(days=100)
    for i in range(25):
        backend.save_execution(
            JobExecutionRecord(job_id="user", pipeline="p", status="success", start_time=old + timedelta(minutes=i))
        )
    recent = backend.save_execution(JobExecutionRecord(job_id="user", pipeline="p", status="success"))

    # Three instances start at once: each brings the system jobs up to the config.
    stores = [open_backend(settings) for _ in range(3)]
    try:
        threads = [
            threading.Thread(target=upsert_scheduled_ops, args=(s, settings), kwargs={"now": BEFORE}) for s in stores
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.close()
    job = backend.get_job("mimir-retention")
    assert job.enabled and job.cron_expr == "30 3 * * *" and job.next_run == BEFORE.replace(minute=30, second=0)
    fire_on_three_instances(settings, BEFORE, timedelta(seconds=16))
    runs = backend.list_executions("mimir-retention", 10)
    assert len(runs) == 1, [(r.worker_id, r.status) for r in runs]
    run = runs[0]
    assert run.status == "success", run.error
    assert run.triggered_by == "scheduler" and run.worker_id in {"i0", "i1", "i2"}
    assert run.scheduled_for == BEFORE.replace(minute=30, second=0)
    assert {r.id for r in backend.list_executions("user", 100)} == {recent.id}
    output = run.context["retention"]
    assert output["deleted"] == 25 and output["days"] == 30


def test_the_config_decides_the_job(backend, backend_settings) -> None:
    settings = backend_settings
    settings.persistence.retention_schedule = "15 2 * * *"
    assert upsert_scheduled_ops(backend, settings, now=BEFORE) == ["mimir-retention: added", "mimir-backup: added"]
    assert upsert_scheduled_ops(backend, settings, now=BEFORE) == []
    settings.persistence.retention_days = 0  # off: the job stays, disabled
    changed = upsert_scheduled_ops(backend, settings, now=BEFORE)
    assert changed == ["mimir-retention: updated (enabled)"]
    job = backend.get_job("mimir-retention")
    assert not job.enabled and job.next_run is None and job.cron_expr == "15 2 * * *"
    pipeline = backend.get_pipeline("mimir-retention")
    assert pipeline.source_path == SYSTEM_SOURCE and "Mimir.retention" in pipeline.config
    assert [op.job_id for op in SCHEDULED_OPS] == ["mimir-retention", "mimir-backup"]


def test_the_pipelines_folder_neither_removes_nor_replaces_a_system_pipeline(sqlite_settings, tmp_path) -> None:
    settings = sqlite_settings
    folder = Path(settings.pipelines.directory)
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(
        "name: mine\nsteps:\n  - name: wait\n    plugin: Data_Processing.delay\n    config: {seconds: 0}\n"
    )
    registry = default_registry(settings)
    with open_backend(settings) as store:
        upsert_scheduled_ops(store, settings)
        result = import_path(store, folder, registry, prune_missing=True, record_errors=True)
        assert result.ok and result.removed == []
        assert {p.name for p in store.list_pipelines()} == {"mine", "mimir-retention", "mimir-backup"}
        (folder / "clash.yaml").write_text(
            "name: mimir-retention\nsteps:\n  - name: x\n    plugin: Data_Processing.delay\n"
        )
        result = import_path(store, folder, registry, prune_missing=True, record_errors=True)
        assert not result.ok
        assert any("Mimir's own" in str(i) for i in result.issues)
        assert store.get_pipeline("mimir-retention").source_path == SYSTEM_SOURCE
        (folder / "clash.yaml").unlink()
        (folder / "mine.yaml").unlink()
        import_path(store, folder, registry, prune_missing=True, record_errors=True)
        assert {p.name for p in store.list_pipelines()} == {"mimir-retention", "mimir-backup"}


def test_a_bad_schedule_is_a_config_error_naming_the_key(tmp_path) -> None:
    from mimir_tui.config import load_settings
    from mimir_tui.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("persistence:\n  retention_schedule: '61 * * * *'\n")
    with pytest.raises(ConfigError, match="retention_schedule"):
        load_settings(path, use_search=False, environ={})
