"""Mimir's own scheduled operations (retention, backups): system jobs, not timers.

Each entry of :data:`SCHEDULED_OPS` becomes, at every start of the service (or the dashboard's
in-process scheduler), a one-step *system pipeline* running a ``Mimir.*`` plugin and a *system
job* firing it on a cron schedule taken from the config. The scheduler fires a job once across
all instances sharing the database (its exactly-once claim on ``(job_id, scheduled_for)``), so
each operation runs once, on one instance, and shows up in the execution history as a run
with its log, like any other job's.

The config decides: each start brings the job's schedule, zone and enabled state to the
config's (an edit made with ``jobs edit`` lasts until the next start). System pipelines carry
:data:`~mimir_tui.pipelines.store.SYSTEM_SOURCE` as their source: the pipelines folder's sync
never removes them, and a file defining one of their names is refused.

Adding an operation is one entry: a job id, the plugin, the config keys of its schedule and of
whether it is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import BadInput, NotFound

log = logging.getLogger("mimir.ops")

#: A system job's step may take this long (seconds): retention of a long history, a backup of a
#: large database. ``plugins.default_timeout`` (meant for users' steps) does not apply.
SYSTEM_STEP_TIMEOUT = 6 * 3600.0


@dataclass(frozen=True)
class ScheduledOp:
    job_id: str  # also the system pipeline's name
    plugin: str  # the ``Mimir.*`` plugin its one step runs
    description: str
    schedule: Callable[[Any], str]  # settings -> cron expression
    enabled: Callable[[Any], bool]  # settings -> whether the job fires
    schedule_key: str  # the config key of the schedule, named in messages


SCHEDULED_OPS: list[ScheduledOp] = [
    ScheduledOp(
        job_id="mimir-retention",
        plugin="Mimir.retention",
        description="Mimir: delete executions older than persistence.retention_days, and their logs",
        schedule=lambda s: s.persistence.retention_schedule,
        enabled=lambda s: s.persistence.retention_days > 0,
        schedule_key="persistence.retention_schedule",
    ),
    ScheduledOp(
        job_id="mimir-backup",
        plugin="Mimir.backup",
        description="Mimir: a verified backup archive into persistence.backup_path, then rotation",
        schedule=lambda s: s.persistence.backup_schedule,
        enabled=lambda s: s.persistence.backup_enabled,
        schedule_key="persistence.backup_schedule",
    ),
]


def system_job_ids() -> set[str]:
    return {op.job_id for op in SCHEDULED_OPS}


def system_pipeline(op: ScheduledOp) -> Any:
    from ..pipelines.spec import PipelineSpec

    step = op.plugin.split(".", 1)[1]
    return PipelineSpec.from_config(
        {
            "name": op.job_id,
            "description": op.description,
            "steps": [{"name": step, "plugin": op.plugin, "output": step, "timeout": SYSTEM_STEP_TIMEOUT}],
        }
    )


def upsert_scheduled_ops(backend: Any, settings: Any, *, now: datetime | None = None) -> list[str]:
    """Bring each system pipeline and job to what the config says; returns what changed, as
    ``"<job id>: added"`` / ``"updated"``. Safe when several instances start at once. ``now``
    (default: the database's clock) is when a new or changed schedule counts from."""
    from ..pipelines.store import SYSTEM_SOURCE, save_spec
    from ..scheduler import jobs as core

    changed: list[str] = []
    for op in SCHEDULED_OPS:
        try:
            mine = backend.get_pipeline(op.job_id)
        except NotFound:
            mine = None
        if mine is not None and mine.source_path != SYSTEM_SOURCE:
            log.warning(
                "pipeline %r (from %s) is replaced by Mimir's system pipeline of that name: rename yours",
                op.job_id,
                mine.source_path or "the database",
            )
        outcome = save_spec(backend, system_pipeline(op), source_path=SYSTEM_SOURCE)
        wanted = {
            "name": op.job_id,
            "pipeline": op.job_id,
            "cron_expr": op.schedule(settings),
            "timezone": settings.scheduler.timezone,
            "description": op.description,
            "enabled": op.enabled(settings),
            "misfire_policy": "once",  # after downtime: once, not every missed day
            "max_concurrent": 1,
        }
        try:
            job = backend.get_job(op.job_id)
        except NotFound:
            job = None
        if job is None:
            try:
                core.create_job(backend, job_id=op.job_id, now=now, **wanted)
                changed.append(f"{op.job_id}: added")
                continue
            except BadInput as exc:  # another instance added it meanwhile: brought to the config below
                try:
                    job = backend.get_job(op.job_id)
                except NotFound:
                    raise exc from None
        differ = {k: v for k, v in wanted.items() if getattr(job, k) != v}
        if differ:
            core.update_job(backend, op.job_id, now=now, **differ)
            changed.append(f"{op.job_id}: updated ({', '.join(sorted(differ))})")
        elif outcome != "unchanged":
            changed.append(f"{op.job_id}: pipeline {outcome}")
    if changed:
        log.info("system jobs: %s", "; ".join(changed))
    return changed
