"""What the dashboard's panes show, read from the store: the read model of the main screen.

No Textual here (the dashboard's core, as Harlequin keeps its own): each ``read_*`` function
takes the backend and returns a :class:`PaneData`, rows of display text keyed by a stable id
(job id, pipeline name, execution id, health item), which the dashboard's panes apply to their
tables by key. They run in the panes' worker threads, never on the event loop.

Each read is bounded: jobs are a page (filtered by the database), pipelines the definitions
(lean rows), executions two pages (the runs in flight on any instance, then the latest
``page_size`` finished ones), never the whole history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..constants import FINISHED, Status
from ..errors import MimirError

#: A row of a pane: its key and its cells, in the order of the pane's columns.
Row = tuple[str, tuple[str, ...]]

#: The recent results come second: at a glance, on any terminal (the columns after the schedule
#: scroll out of sight at 80 and 120 columns).
JOB_COLUMNS = ("Name", "Recent", "Pipeline", "Schedule", "Cron", "Zone", "On", "Next run", "Last run", "Last result")
PIPELINE_COLUMNS = ("Name", "State", "Steps", "Jobs", "Source")
EXECUTION_COLUMNS = ("Status", "Pipeline", "Job", "Step", "Time", "Started", "Instance", "Trigger")
HEALTH_COLUMNS = ("What", "Value")

#: Runs in flight shown at most (queued and running, on every instance).
ACTIVE_LIMIT = 200
#: The jobs pane's recent results: this many latest runs of each job, a mark each.
RECENT = 8
#: A run's status as a mark (one cell wide): distinct shapes, so the marks read without
#: colour (``NO_COLOR``) too; the dashboard colours them by the theme.
MARKS: dict[str, str] = {
    Status.success.value: "\u25cf",  # ●
    Status.failed.value: "\u2717",  # ✗
    Status.timed_out.value: "\u25c6",  # ◆
    Status.cancelled.value: "\u25cb",  # ○
    Status.interrupted.value: "\u25d0",  # ◐
    Status.running.value: "\u25b8",  # ▸
    Status.queued.value: "\u2026",  # …
    Status.missed.value: "\u00b7",  # ·
}
#: The status of each mark (the dashboard colours a mark by its status).
MARK_STATUS = {mark: status for status, mark in MARKS.items()}
#: The health pane's executions per day covers this many days, today included.
PER_DAY_DAYS = 7


@dataclass(frozen=True)
class PaneData:
    """A pane's content: ``rows`` in display order and a one-line ``summary``."""

    rows: list[Row] = field(default_factory=list)
    summary: str = ""
    #: The page shown (from 0) of how many, for a paged read (the jobs).
    page: int = 0
    pages: int = 1
    #: Figures a pane charts beside its rows (the health pane's ``latency_ms``).
    values: dict[str, float] = field(default_factory=dict)
    #: A line about a row, by key, shown while the row is under the cursor (a job's times in its zone).
    details: dict[str, str] = field(default_factory=dict)


def relative(when: datetime | None, now: datetime) -> str:
    """``in 42s`` / ``in 5m`` / ``3h10m ago`` / ``-``: seconds only under a minute, whole minutes
    under an hour (as ``ls -l`` and k9s round ages), so a table of times does not change at
    every refresh; the exact time is in the row's detail."""
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    whole = abs(seconds)
    text = span(whole) if whole < 60 or whole >= 3600 else f"{int(whole // 60)}m"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def span(seconds: float) -> str:
    """A length of time in its two largest units: ``850ms``, ``12s``, ``3m05s``, ``2h10m``, ``4d3h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // sub_size
            return f"{whole // size}{unit}{rest:02d}{sub}" if rest else f"{whole // size}{unit}"
    return f"{whole}s"


def overdue(job: Any, now: datetime) -> str:
    """``overdue 3m20s`` when the job's next run passed with no instance firing it
    (:func:`~mimir_tui.scheduler.jobs.overdue_by`), else ``""``."""
    from ..scheduler.jobs import overdue_by

    late = overdue_by(job, now)
    return f"overdue {span(late.total_seconds())}" if late is not None else ""


def size(n: int | None) -> str:
    """Bytes in a readable unit: ``4.2 MiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # not reached


@lru_cache(maxsize=4096)
def schedule_words(expr: str) -> str:
    """The cron expression in words (cached: a job list repeats a few expressions)."""
    from ..scheduler.cron import describe

    try:
        return describe(expr)
    except (MimirError, ValueError) as exc:
        return f"invalid: {exc}"


def read_jobs(backend: Any, now: datetime, *, page: int = 0, page_size: int = 200, text: str = "") -> PaneData:
    """Page ``page`` (from 0; the last one when past it) of the jobs whose name, id, pipeline,
    cron, zone or last result holds ``text``, ``page_size`` a page, by name."""
    total, enabled = backend.jobs.count(text)
    pages = max(1, -(-total // page_size))
    page = min(max(0, page), pages - 1)
    out: list[Row] = []
    jobs = backend.jobs.page(text, offset=page * page_size, limit=page_size)
    recent = backend.executions.recent_statuses([j.id for j in jobs], RECENT)
    for j in jobs:
        out.append(
            (
                j.id,
                (
                    j.name,
                    marks(recent.get(j.id, [])) or "-",
                    j.pipeline,
                    schedule_words(j.cron_expr),
                    j.cron_expr,
                    j.timezone,
                    "yes" if j.enabled else "no",
                    (overdue(j, now) or relative(j.next_run, now)) if j.enabled else "-",
                    relative(j.last_run, now),
                    j.last_result or "-",
                ),
            )
        )
    summary = f"{total} jobs" + (f" match {text.strip()!r}" if text.strip() else "") + f", {enabled} enabled"
    if pages > 1:
        summary += f"; page {page + 1}/{pages} ([ and ] turn)"
    return PaneData(out, summary, page=page, pages=pages, details={j.id: job_times(j) for j in jobs})


def job_times(job: Any) -> str:
    """``next Mon 2026-03-02 11:00 CET (10:00 UTC), last Mon 2026-03-02 10:00 CET``: a job's
    times in its own zone (a zone that no longer exists: UTC)."""
    try:
        zone: tzinfo = ZoneInfo(job.timezone or "UTC")
    except (ValueError, ZoneInfoNotFoundError):
        zone = UTC

    def local(when: datetime | None, *, with_utc: bool = False) -> str:
        if when is None:
            return "-"
        at = when if when.tzinfo else when.replace(tzinfo=UTC)  # stored in UTC
        text = at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")
        return f"{text} ({at:%H:%M} UTC)" if with_utc and str(zone) != "UTC" else text

    nxt = local(job.next_run, with_utc=True) if job.enabled else "- (disabled)"
    return f"next {nxt}, last {local(job.last_run)}"


def marks(statuses: list[str]) -> str:
    """The marks of runs given newest first, oldest on the left (as a sparkline reads): ``●●✗▸``."""
    return "".join(MARKS.get(status, "?") for status in reversed(statuses))


def marks_legend() -> str:
    """What each mark means: ``● success, ✗ failed, ...``."""
    return ", ".join(f"{mark} {status.replace('_', ' ')}" for status, mark in MARKS.items())


def step_count(config: str | None) -> int | None:
    """How many steps a stored pipeline definition has (None: no valid definition)."""
    try:
        steps = json.loads(config or "").get("steps")
    except (ValueError, AttributeError):
        return None
    return len(steps) if isinstance(steps, list) else None


def read_pipelines(backend: Any, now: datetime) -> PaneData:
    used = backend.jobs.counts_by_pipeline()
    out: list[Row] = []
    broken = 0
    for p in backend.list_pipelines():
        steps = step_count(p.config)
        if p.load_error:
            broken += 1
            state = "error: " + p.load_error.strip().splitlines()[0]
        else:
            state = "valid" if p.enabled else "disabled"
        cells = (p.name, state, "-" if steps is None else str(steps), str(used.get(p.name, 0)), p.source_path or "-")
        out.append((p.name, cells))
    summary = f"{len(out)} pipelines" + (f", {broken} with errors" if broken else "")
    return PaneData(out, summary)


def progress_bar(done: int, total: int, width: int = 5) -> str:
    """``███░░``: ``done`` of ``total`` as a text bar."""
    full = round(width * min(done, total) / total) if total else 0
    return "\u2588" * full + "\u2591" * (width - full)


def _step_cell(steps: list[dict[str, Any]] | None, total: int | None, status: str) -> str:
    """``step k of N``: ``███░░ 2/3 load`` for a running run (the bar counts finished steps)."""
    done = len(steps or [])
    of = f"/{total}" if total else ""
    if status == Status.running.value and steps:
        bar = ""
        if total:
            ended = sum(s.get("status") in FINISHED for s in steps)
            bar = progress_bar(ended, total) + " "
        return f"{bar}{done}{of} {steps[-1].get('step_name', '')}".rstrip()
    return f"{done}{of}" if done or total else "-"


def read_executions(
    backend: Any, now: datetime, *, page_size: int = 50, status: str | None = None, job: str | None = None
) -> PaneData:
    """Runs in flight on any instance (running first, then queued; newest first), then the
    latest ``page_size`` finished runs; only those with ``status`` and of ``job`` when given."""

    def only(statuses: Any) -> list[str]:
        return [s for s in statuses if status is None or s == status]

    active = backend.executions.page(job, ACTIVE_LIMIT, status=only([Status.running.value, Status.queued.value]))
    active.sort(key=lambda r: r.status != Status.running.value)  # stable: newest first within each
    if status is None and len(active) < ACTIVE_LIMIT:
        # Every run in flight is in ``active``: the latest runs of any status, less those, hold
        # the latest finished ones, read along the start-time index (a status filter would make
        # the database sort every finished run of the history).
        latest = backend.executions.page(job, page_size + len(active))
        finished = [r for r in latest if r.status in FINISHED][:page_size]
    else:
        finished = backend.executions.page(job, page_size, status=only(sorted(FINISHED)))
    totals: dict[str, int | None] = {}
    if active:  # step k of N: N from the pipeline's definition
        totals = {p.name: step_count(p.config) for p in backend.list_pipelines()}
    out: list[Row] = []
    for r in [*active, *finished]:
        running = r.status in (Status.running.value, Status.queued.value)
        if running:
            time = span((now - r.start_time).total_seconds()) if r.status == Status.running.value else "-"
        else:
            time = "-" if r.duration is None else span(r.duration / 1000)
        cells = (
            r.status,
            r.pipeline,
            r.job_id or "-",
            _step_cell(r.steps, totals.get(r.pipeline), r.status),
            time,
            relative(r.start_time, now),
            r.worker_id or "-",
            r.triggered_by,
        )
        out.append((r.id, cells))
    running_now = sum(r.status == Status.running.value for r in active)
    summary = f"{running_now} running, {len(active) - running_now} queued; latest {len(finished)} finished"
    shown = ", ".join(f"{k} {v}" for k, v in (("status", status), ("job", job)) if v)
    return PaneData(out, summary + (f" (only {shown})" if shown else ""))


def read_health(
    backend: Any,
    now: datetime,
    *,
    stale_after: float = 30.0,
    integrity: bool = True,
    timer: Callable[[], float] = time.perf_counter,
    vectors: dict[str, Any] | None = None,
    backups: dict[str, Any] | None = None,
    retention: Any = None,
) -> PaneData:
    """The store's health (:func:`~mimir_tui.health.check_health`; ``integrity=False``: without
    the integrity check; the latency measured with ``timer``), the persistence operations of
    this process that failed, and the live instances with their heartbeat age at ``now`` and
    run slots; and ``vectors``, the vector store's status as
    :func:`~mimir_tui.vectors.status.vector_status` read it, when given."""
    from ..health import check_health

    report = check_health(backend, stale_after=stale_after, integrity=integrity, now=now, timer=timer)
    if report.get("status") == "healthy":
        report["per_day"] = executions_per_day(backend, now)
    if vectors is not None:
        report["vectors"] = vectors
    if retention is not None:
        report["retention"] = retention_line(retention)
    if backups is not None:
        report["last_backup"] = backups
    return health_data(report, backend.metrics.snapshot(), now)


def retention_line(settings: Any) -> str:
    """The retention policy in a few words (``settings``: the Settings, read at each call: the
    Retention screen changes them)."""
    p = settings.persistence
    if not p.retention_days:
        return "off (persistence.retention_days: 0): history kept for ever"
    keep = f", keeps each job's last {p.retention_keep_last}" if p.retention_keep_last else ""
    return f"{p.retention_days} days{keep}; runs at {p.retention_schedule} ({settings.scheduler.timezone})"


def vector_rows(status: dict[str, Any]) -> list[Row]:
    """The vector store in the health pane: where it is and whether it answers, then what it
    holds (informational: a store away does not make Mimir unhealthy)."""
    import os

    if not status.get("enabled"):
        return [("vectors", ("vector store", "off (persistence.enable_vector_db: false)"))]
    state = "reachable" if status.get("reachable") else "unreachable"
    rows: list[Row] = [("vectors", ("vector store", f"{status['mode']} {status['where']}, {state}"))]
    if status.get("error"):
        rows.append(("vectors:error", ("  error", status["error"])))
    if "collections" in status:
        held = f"{status['collections']} collections, {status['documents']} documents"
        if "size_bytes" in status:
            held += f", {size(status['size_bytes'])}"
        rows.append(("vectors:contents", ("  vectors", held)))
    if "latency_ms" in status:
        rows.append(("vectors:latency", ("  latency", f"{status['latency_ms']:.1f} ms")))
    holder = status.get("in_use_by")
    if holder:
        mine = holder == f"pid {os.getpid()}"
        rows.append(("vectors:holder", ("  held by", f"{holder} (this dashboard)" if mine else holder)))
    if status.get("note"):
        rows.append(("vectors:note", ("  note", status["note"])))
    return rows


def executions_per_day(backend: Any, now: datetime, days: int = PER_DAY_DAYS) -> list[tuple[str, int]]:
    """``[(day, runs started)]`` for the last ``days`` UTC days, oldest first (0 for a quiet
    day); one grouped query over that range."""
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = backend.executions.per_day(first)
    return [(day, counts.get(day, 0)) for day in ((first + timedelta(days=i)).date().isoformat() for i in range(days))]


def backup_row(last: dict[str, Any], now: datetime | None) -> Row:
    """The health pane's "last backup": its age and whether it verified, or ``never``."""
    if not last.get("archive"):
        return ("last_backup", ("last backup", "never"))
    state = {True: "verified", False: "FAILED verification", None: "not verified"}[last.get("verified")]
    age = relative(last["created"], now or datetime.now(UTC))
    return ("last_backup", ("last backup", f"{age}, {state} ({last['archive']})"))


def health_data(
    report: dict[str, Any], operations: dict[str, dict[str, Any]] | None = None, now: datetime | None = None
) -> PaneData:
    rows: list[Row] = [("backend", ("backend", str(report.get("backend", "-"))))]
    for key in ("status", "database", "error", "integrity", "schema_version"):
        if key in report:
            rows.append((key, (key, str(report[key]))))
    if "latency_ms" in report:
        rows.append(("latency_ms", ("latency", f"{report['latency_ms']:.1f} ms")))
    if "wal_bytes" in report:  # SQLite: the file and its WAL apart
        rows.append(("database_bytes", ("database size", size(report["database_bytes"]))))
        rows.append(("wal_bytes", ("WAL size", size(report["wal_bytes"]))))
    elif "size_bytes" in report:
        rows.append(("size_bytes", ("database size", size(report["size_bytes"]))))
    for name, count in report.get("row_counts", {}).items():
        rows.append((f"rows:{name}", (f"rows in {name}", str(count))))
    per_day = report.get("per_day", [])
    if per_day:
        shown = " ".join(str(n) for _, n in per_day)
        rows.append(("per_day", ("runs per day", f"{shown} ({per_day[0][0][5:]}..today)")))
    for w in report.get("instances", []):
        load = f"{w['runs'] or 0}/{w['run_slots']} slots" if w.get("run_slots") else f"{w['runs'] or 0} runs"
        value = f"{w['status']}, beat {w['heartbeat_age_s']:g}s ago, {load}"
        rows.append((f"instance:{w['id']}", (f"instance {w['id']}", value)))
    for name, q in report.get("queues", {}).items():
        value = f"{q['jobs']} jobs, {q['queued']} queued, {q['instances']} instances"
        rows.append((f"queue:{name}", (f"queue {name}", value)))
    if "retention" in report:
        rows.append(("retention", ("retention policy", report["retention"])))
    if "vectors" in report:
        rows += vector_rows(report["vectors"])
    if "last_backup" in report:
        rows.append(backup_row(report["last_backup"], now))
    failed = {op: s for op, s in (operations or {}).items() if s.get("failures")}
    rows.append(("failed", ("failed operations", str(sum(int(s["failures"]) for s in failed.values())))))
    for op, s in failed.items():
        rows.append((f"failed:{op}", (f"  {op}", f"{s['failures']} of {s['count']}")))
    summary = f"Store: {report.get('status', '?')} ({report.get('backend', '?')})"
    values = {"latency_ms": float(report["latency_ms"])} if "latency_ms" in report else {}
    return PaneData(rows, summary, values=values)
