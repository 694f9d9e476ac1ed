"""Retention: how long execution history (its rows and log files, and the workers it names) is
kept. ``mimir-tui retention apply``, the Retention screen and the scheduled ``Mimir.retention``
step all call :func:`apply_retention`.

A run is removed when it finished (never a queued or running one) and started before the
cutoff (``now - days``; a run started exactly at the cutoff stays), unless it is one of the
``keep_last`` latest runs of its job. Rows go in short batches (see
:meth:`~mimir_tui.persistence.executions.ExecutionStore.delete_old`: a writer waits about one
batch); each batch's log files are deleted after its commit. A log file is only ever looked for
in ``logging.executions_dir`` by the run's id as a plain file name: an id holding a path
separator is skipped, and so is anything there that is not a regular file (a link is not
followed, nor removed).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..persistence.types import as_utc

log = logging.getLogger("mimir.retention")

#: The most days ``--days`` takes (about 270 years): beyond, the cutoff is before year 1.
MAX_DAYS = 100_000


def policy(settings: Any, days: int | None = None, keep_last: int | None = None) -> tuple[int, int]:
    """(days, keep_last): the arguments given, else ``persistence.retention_days`` and
    ``persistence.retention_keep_last``. :class:`BadInput` for a negative or huge value."""
    days = settings.persistence.retention_days if days is None else days
    keep_last = settings.persistence.retention_keep_last if keep_last is None else keep_last
    if not 0 <= days <= MAX_DAYS:
        raise BadInput(f"--days {days}: give a number of days from 0 (keep everything) to {MAX_DAYS}")
    if keep_last < 0:
        raise BadInput(f"--keep-last {keep_last}: give 0 (off) or a positive number of runs per job")
    return days, keep_last


class _LogFolder:
    """``logging.executions_dir``, opened once: files are found and removed relative to the
    folder's descriptor, by a name that is one path component."""

    def __init__(self, settings: Any) -> None:
        self.path = Path(settings.logging.executions_dir)
        self.files = 0
        self.bytes = 0
        self.skipped = 0
        try:
            self.fd: int | None = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            self.fd = None

    def _stat(self, execution_id: str) -> tuple[str, int] | None:
        """(name, size) of the run's log file if it is a regular file in the folder."""
        if self.fd is None:
            return None
        if not execution_id or "/" in execution_id or "\\" in execution_id or "\0" in execution_id:
            self.skipped += 1  # a path from the database: never followed
            return None
        name = f"{execution_id}.log"
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None  # ran on another machine, or wrote nothing
        except OSError:
            self.skipped += 1
            return None
        if not stat.S_ISREG(st.st_mode):
            self.skipped += 1
            return None
        return name, st.st_size

    def measure(self, ids: Iterable[str]) -> None:
        for execution_id in ids:
            found = self._stat(execution_id)
            if found is not None:
                self.files += 1
                self.bytes += found[1]

    def remove(self, rows: Iterable[tuple[str, Any, Any]]) -> None:
        """Remove the log files of the rows ``(id, job_id, start_time)`` retention deleted."""
        for execution_id, _, _ in rows:
            found = self._stat(execution_id)
            if found is None:
                continue
            try:
                os.unlink(found[0], dir_fd=self.fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("retention: cannot remove %s: %s", self.path / found[0], exc)
                self.skipped += 1
                continue
            self.files += 1
            self.bytes += found[1]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def apply_retention(
    backend: Any,
    settings: Any,
    *,
    days: int | None = None,
    keep_last: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Apply the retention policy (or, ``dry_run``, say what it would remove, changing nothing).

    ``days`` and ``keep_last`` default to the config's; ``now`` to the database's clock.
    Returns ``{"days", "keep_last", "cutoff", "dry_run", "deleted", "jobs": [{"job_id",
    "count", "oldest", "newest"}], "log_files", "log_bytes", "log_skipped", "workers_pruned",
    "seconds"}``; ``deleted`` counts what went (or would go). ``days`` 0 keeps everything."""
    days, keep_last = policy(settings, days, keep_last)
    started = time.monotonic()
    report: dict[str, Any] = {
        "days": days,
        "keep_last": keep_last,
        "cutoff": None,
        "dry_run": dry_run,
        "deleted": 0,
        "jobs": [],
        "log_files": 0,
        "log_bytes": 0,
        "log_skipped": 0,
        "workers_pruned": 0,
        "seconds": 0.0,
    }
    if not days:
        return report
    cutoff = (as_utc(now) or backend.database_now()) - timedelta(days=days)
    report["cutoff"] = cutoff
    store = backend.executions
    logs = _LogFolder(settings)
    try:
        if dry_run:
            report["jobs"] = store.retention_plan(cutoff, keep_last=keep_last)
            report["deleted"] = sum(j["count"] for j in report["jobs"])
            for ids in store.retention_ids(cutoff, keep_last=keep_last):
                logs.measure(ids)
        else:
            jobs: dict[Any, dict[str, Any]] = {}

            def deleted(rows: list[tuple[str, Any, Any]]) -> None:
                logs.remove(rows)
                for _, job_id, start in rows:
                    entry = jobs.setdefault(job_id, {"job_id": job_id, "count": 0, "oldest": None, "newest": None})
                    entry["count"] += 1
                    start = as_utc(start)
                    entry["oldest"] = start if entry["oldest"] is None else min(entry["oldest"], start)
                    entry["newest"] = start if entry["newest"] is None else max(entry["newest"], start)

            report["deleted"] = store.delete_old(cutoff, keep_last=keep_last, on_deleted=deleted)
            report["jobs"] = sorted(jobs.values(), key=lambda e: (e["job_id"] is None, e["job_id"] or ""))
            report["workers_pruned"] = backend.workers.prune_workers(older_than=cutoff) or 0
    finally:
        logs.close()
    report.update(log_files=logs.files, log_bytes=logs.bytes, log_skipped=logs.skipped)
    report["seconds"] = round(time.monotonic() - started, 3)
    if report["deleted"] and not dry_run:
        log.info(
            "retention: removed %d executions older than %d days (%d log files, %d bytes)",
            report["deleted"],
            days,
            logs.files,
            logs.bytes,
        )
    return report


def report_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report as plain JSON data (times in ISO-8601 UTC): a step's output."""

    def iso(value: Any) -> Any:
        return as_utc(value).isoformat() if isinstance(value, datetime) else value

    out = {k: iso(v) for k, v in report.items() if k != "jobs"}
    out["jobs"] = [{k: iso(v) for k, v in job.items()} for job in report["jobs"]]
    return out


def save_policy(backend: Any, settings: Any, *, days: int, keep_last: int, schedule: str) -> list[str]:
    """The Retention screen's Save: the policy into the config file (comments and order kept,
    :func:`mimir_tui.ops.config_file.set_keys`), into the running settings, and into the
    system job (:mod:`mimir_tui.ops.scheduled`), so it holds now and after a restart. Returns
    what changed in the job. :class:`BadInput` (nothing written) for a bad value or no file."""
    from ..scheduler.cron import validate_cron
    from .config_file import set_keys
    from .scheduled import upsert_scheduled_ops

    days, keep_last = policy(settings, days, keep_last)
    schedule = validate_cron(schedule)
    if settings.config_path is None:
        raise BadInput("no config file to save the policy in: start Mimir with --config PATH (or MIMIR_CONFIG)")
    set_keys(
        settings.config_path,
        {
            "persistence.retention_days": days,
            "persistence.retention_keep_last": keep_last,
            "persistence.retention_schedule": schedule,
        },
    )
    settings.persistence.retention_days = days
    settings.persistence.retention_keep_last = keep_last
    settings.persistence.retention_schedule = schedule
    return upsert_scheduled_ops(backend, settings)
