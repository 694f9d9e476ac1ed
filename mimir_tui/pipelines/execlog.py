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
from ..logsetup import open_private, private_dirs
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
    it), or ran elsewhere."""
    if record.status == Status.queued.value:
        return "none yet: the run has not started"
    if record.status == Status.missed.value or (record.worker_id is None and not record.steps):
        return "none: the run never started"
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
    0600 and the folders made for it 0700 (:func:`mimir_tui.logsetup.open_private`).

    The file is opened at the first line (a run that writes nothing leaves no file) and
    buffered: written through at :meth:`flush` (the runner's at each step's end), at a line
    that comes :attr:`FLUSH_EVERY` seconds or more after the last write-through (a long step's
    plugin lines reach ``executions logs --follow`` within that), at a WARNING or worse, at
    :meth:`flush_if_due` once they have waited that long, and at :meth:`close`. Each line also
    goes to the ``mimir.runner`` logger: INFO lines at DEBUG (a service's log says what each
    batch of fires did, not each run's every step), the others at their level."""

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
        self._handle: Any = None
        self._failed = False  # the file could not be opened: said once, lines go nowhere
        self._flushed = time.monotonic()
        self._dirty = False  # lines written since the last write-through

    def _open(self) -> Any:
        """The file, opened at the first line (under the lock)."""
        if self._handle is None and not self._failed:
            try:
                try:
                    self._handle = open_private(self.path)
                except FileNotFoundError:  # its folder is not there (yet, or any more)
                    private_dirs(self.path.parent)
                    self._handle = open_private(self.path)
            except OSError as exc:  # a log that cannot be written must not stop the run
                self._failed = True
                log.warning("cannot write execution log %s: %s", self.path, exc)
        return self._handle

    def write(self, level: str, message: str, *, step: str | None = None, plugin: str | None = None) -> None:
        level = log_level(level)
        message = self.secrets.mask(str(message))
        now = self.now()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
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
            handle = self._open()
            if handle is not None:
                try:
                    handle.write(line + "\n")
                    self._dirty = True
                    if severity >= logging.WARNING or time.monotonic() - self._flushed >= self.FLUSH_EVERY:
                        self._flush()
                except (OSError, ValueError):
                    pass

    def flush(self) -> None:
        """Write the buffered lines through to the file."""
        with self._lock:
            self._flush()

    def flush_if_due(self) -> None:
        """:meth:`flush` if lines have waited :attr:`FLUSH_EVERY` seconds or more (the
        runner asks a few times a second: a line written just before a long wait shows)."""
        if self._dirty and time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        self._dirty = False
        if self._handle is not None:
            try:
                self._handle.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                try:
                    self._handle.close()
                except OSError:
                    pass
                self._handle = None
            self._failed = True  # a line after the end is not written (nor a new file made)


__all__ = ["LEVELS", "ExecutionLog", "execution_log_path", "log_level"]
