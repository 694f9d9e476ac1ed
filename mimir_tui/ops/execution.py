"""What the dashboard's Execution screen shows, and its actions, without Textual.

:func:`read_execution` reads one run (its step timeline, its context and step outputs, where its
log is); :class:`LogTail` reads what was appended to a log file since the last look;
:func:`rerun` queues a run like the one shown, as ``jobs run`` does. The screen calls them in
thread workers, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..constants import FINISHED, Status
from ..persistence import JobExecutionRecord, RunRequest
from ..persistence.types import as_utc
from .overview import Row, relative, span

STEP_COLUMNS = ("#", "Step", "Plugin", "Status", "Started", "Duration", "Error")

#: The most of a log file read when the screen opens (its end; Toolong pages the rest).
LOG_TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class ExecutionDetail:
    record: JobExecutionRecord
    steps: list[Row]
    #: ``{"context": ..., "outputs": {step: output}}``: what the JSON tree shows.
    data: dict[str, Any]
    summary: str
    log_path: Path

    @property
    def finished(self) -> bool:
        return self.record.status in FINISHED


def _clock(when: datetime | None) -> str:
    return "-" if when is None else as_utc(when).strftime("%H:%M:%S")


def read_execution(backend: Any, settings: Any, execution_id: str, now: datetime) -> ExecutionDetail:
    """One run as the Execution screen shows it (``NotFound`` for an unknown id)."""
    from ..pipelines.execlog import execution_log_path

    record = backend.get_execution(execution_id)
    steps: list[Row] = []
    outputs: dict[str, Any] = {}
    for i, step in enumerate(record.step_records(), 1):
        if step.duration is not None:
            took = span(step.duration / 1000)
        elif step.start_time is not None and step.status == Status.running.value:
            took = span((now - as_utc(step.start_time)).total_seconds())
        else:
            took = "-"
        error = next(iter((step.error or "").strip().splitlines()), "")
        cells = (str(i), step.step_name, step.plugin, step.status, _clock(step.start_time), took, error)
        steps.append((str(i), cells))
        if step.output is not None:
            outputs[step.step_name] = step.output
    if record.status in FINISHED:
        took = "-" if record.duration is None else span(record.duration / 1000)
    elif record.status == Status.running.value:
        took = span((now - as_utc(record.start_time)).total_seconds())
    else:
        took = "-"
    state = record.status + (" (cancel requested)" if record.cancel_requested and record.status not in FINISHED else "")
    summary = (
        f"{state} | {record.pipeline} | job {record.job_id or '-'} | {record.triggered_by}, attempt {record.attempt}"
        f" | started {relative(record.start_time, now)} | {took} | on {record.worker_id or '-'}"
    )
    data = {"context": record.context or {}, "outputs": outputs}
    return ExecutionDetail(record, steps, data, summary, execution_log_path(settings, record.id))


def record_lines(record: JobExecutionRecord) -> list[str]:
    """The run told from its records, for a log that is not on this machine."""
    lines = []
    for step in record.step_records():
        line = f"{_clock(step.start_time)} {step.status:<9} [{step.step_name}] ({step.plugin})"
        lines.append(line + (f" {step.error}" if step.error else ""))
    if record.error:
        lines.append(f"{_clock(record.end_time)} {record.status:<9} [pipeline] {record.error}")
    return lines


class LogTail:
    """Reads a log file by what was appended since the last :meth:`read` (complete lines only;
    a partial last line waits for its end). The first read starts at most
    :data:`LOG_TAIL_BYTES` before the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset: int | None = None
        self._partial = b""

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                end = f.seek(0, 2)
                if self.offset is None or end < self.offset:  # first look, or the file was replaced
                    self.offset = max(0, end - LOG_TAIL_BYTES)
                    self._partial = b""
                    if self.offset:  # started mid-line: drop it
                        f.seek(self.offset)
                        self.offset += len(f.readline())
                f.seek(self.offset)
                chunk = f.read(end - self.offset)
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]


def rerun(backend: Any, record: JobExecutionRecord) -> RunRequest:
    """Queue a run like ``record``: its job's run now (:func:`~mimir_tui.scheduler.jobs.run_job_now`,
    what ``jobs run`` does), or, for a run without a job, its pipeline. Follow it with
    :func:`~mimir_tui.scheduler.jobs.wait_for_run` (which runs it here when no instance does)."""
    from ..scheduler.jobs import run_job_now

    if record.job_id is not None:
        return run_job_now(backend, record.job_id)
    from .pipeline import queue_run

    return queue_run(backend, record.pipeline)


__all__ = ["STEP_COLUMNS", "ExecutionDetail", "LogTail", "read_execution", "record_lines", "rerun"]
