"""The execution log: ``<logging.executions_dir>/<execution id>.log``, one file per run, what
``mimir-tui executions show ID --log`` prints. Each line also goes to the ``mimir.runner``
logger, so a service's own log tells the same story."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..constants import Status
from ..logsetup import private_descriptor, private_dirs
from ..persistence.types import utcnow
from ..secrets import SecretMasker

log = logging.getLogger("mimir.runner")

#: The levels a line may carry; anything else is written as INFO (``WARN`` as WARNING).
LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def execution_log_path(settings: Any, execution_id: str) -> Path:
    return Path(settings.logging.executions_dir) / f"{execution_id}.log"


def no_log_reason(record: Any) -> str:
    """Why the log file of ``record`` (an execution) is not on this machine: the run has not
    started yet (queued), never started (missed, or cancelled in the queue: no instance had
    it), has not written it yet (running: see :class:`ExecutionLog`), or ran elsewhere."""
    if record.status == Status.queued.value:
        return "none yet: the run has not started"
    if record.status == Status.missed.value or (record.worker_id is None and not record.steps):
        return "none: the run never started"
    if record.status == Status.running.value:  # its lines reach the file within a second
        return "not written yet, or the run is on another machine"
    return "not on this machine"


def logged_ids(settings: Any) -> set[str]:
    """The ids of the executions whose log files are on this machine: one listing of the
    folder (a path built per id costs some 20 us, seconds for a long history)."""
    try:
        with os.scandir(settings.logging.executions_dir) as entries:
            return {entry.name.removesuffix(".log") for entry in entries if entry.name.endswith(".log")}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def log_level(level: Any) -> str:
    """``level`` as one of :data:`LEVELS` (a plugin may pass ``"warn"`` or its own name)."""
    level = str(level).upper()
    if level == "WARN":
        return "WARNING"
    return level if level in LEVELS else "INFO"


class ExecutionLog:
    """``logs/executions/<id>.log``: one line per event, tagged with time, level, step and plugin.
    Text lines (``logging.format: text``) or JSON lines (``json``: the original's
    ``{timestamp, level, message, step_name, plugin}``). Thread-safe; secrets masked; the file
    0600 and the folders made for it 0700 (:func:`mimir_tui.logsetup.private_descriptor`).

    Lines are kept in memory and written through at :meth:`flush` (the runner's at each step's
    end), at a line that comes :attr:`FLUSH_EVERY` seconds or more after the last write-through
    (a long step's plugin lines reach the dashboard's log view within that), at a WARNING or
    worse, at :meth:`flush_if_due` once they have waited that long, and at :meth:`close`. The
    file is made at the first write-through (a run that writes nothing leaves no file; a short
    run's whole log is one write), and written with ``os.write`` on its descriptor: no file
    object, whose set-up (``fstat``, ``lseek``, ``isatty``) cost more system calls than the
    lines. Each line also goes to the ``mimir.runner`` logger: INFO lines at DEBUG (a service's
    log says what each batch of fires did, not each run's every step), the others at their
    level."""

    #: Seconds a written line may wait in the buffer before it reaches the file.
    FLUSH_EVERY = 1.0

    def __init__(
        self,
        path: Path,
        *,
        fmt: str = "text",
        secrets: SecretMasker | None = None,
        execution_id: str = "",
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.path = path
        self.now = now
        self.fmt = fmt
        self.secrets = secrets or SecretMasker()
        self.execution_id = execution_id
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._failed = False  # the file could not be made: said once, lines go nowhere
        self._closed = False
        self._pending: list[str] = []  # lines not written through yet
        self._flushed = time.monotonic()

    def _open(self) -> int | None:
        """The file's descriptor, the file made at the first write-through (under the lock)."""
        if self._fd is None and not self._failed:
            try:
                try:
                    self._fd = private_descriptor(self.path)
                except FileNotFoundError:  # its folder is not there (yet, or any more)
                    private_dirs(self.path.parent)
                    self._fd = private_descriptor(self.path)
            except OSError as exc:  # a log that cannot be written must not stop the run
                self._failed = True
                log.warning("cannot write execution log %s: %s", self.path, exc)
        return self._fd

    def write(self, level: str, message: str, *, step: str | None = None, plugin: str | None = None) -> None:
        level = log_level(level)
        message = self.secrets.mask(str(message))
        now = self.now()
        stamp = now.isoformat(timespec="milliseconds")[:23] + "Z"  # strftime costs 5x more
        if self.fmt == "json":
            line = json.dumps(
                {
                    "timestamp": stamp,
                    "level": level,
                    "message": message,
                    "step_name": step,
                    "plugin": plugin,
                    "execution_id": self.execution_id,
                },
                ensure_ascii=False,
            )
        else:
            tag = f"[{step}]" if step else "[pipeline]"
            if plugin:
                tag += f" ({plugin})"
            line = f"{stamp} {level:<7} {tag} " + message.replace("\n", "\n    ")
        severity = getattr(logging, level, logging.INFO)
        if severity == logging.INFO:
            severity = logging.DEBUG
        if log.isEnabledFor(severity):
            log.log(severity, "%s %s%s", self.execution_id, f"[{step}] " if step else "", message)
        with self._lock:
            if self._closed:
                return  # a line after the end is not written (nor a new file made)
            self._pending.append(line + "\n")
            if severity >= logging.WARNING or time.monotonic() - self._flushed >= self.FLUSH_EVERY:
                self._flush()

    def flush(self) -> None:
        """Write the lines kept so far through to the file."""
        with self._lock:
            self._flush()

    def flush_if_due(self) -> None:
        """:meth:`flush` if lines have waited :attr:`FLUSH_EVERY` seconds or more (the
        runner asks a few times a second: a line written just before a long wait shows)."""
        if self._pending and time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        if not self._pending:
            return
        data = "".join(self._pending).encode("utf-8", "replace")
        self._pending.clear()
        fd = self._open()
        try:
            while data and fd is not None:
                data = data[os.write(fd, data) :]
        except OSError:  # a full disk: the run goes on, its lines are lost
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._flush()
            self._closed = True
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None


__all__ = ["LEVELS", "ExecutionLog", "execution_log_path", "log_level"]
