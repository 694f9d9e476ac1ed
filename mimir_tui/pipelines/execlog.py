"""The execution log: ``<logging.executions_dir>/<execution id>.log``, one file per run, what
``mimir-tui executions show ID --log`` prints. Each line also goes to the ``mimir.runner``
logger, so a service's own log tells the same story."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..logsetup import open_private, private_dirs
from ..persistence.types import utcnow
from ..secrets import SecretMasker

log = logging.getLogger("mimir.runner")

#: The levels a line may carry; anything else is written as INFO (``WARN`` as WARNING).
LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def execution_log_path(settings: Any, execution_id: str) -> Path:
    return Path(settings.logging.executions_dir) / f"{execution_id}.log"


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
    0600 and the folders made for it 0700 (:func:`mimir_tui.logsetup.open_private`)."""

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
        self._handle = None
        try:
            private_dirs(path.parent)
            self._handle = open_private(path, buffering=1)
        except OSError as exc:  # a log that cannot be written must not stop the run
            log.warning("cannot write execution log %s: %s", path, exc)

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
        log.log(
            getattr(logging, level, logging.INFO), "%s %s%s", self.execution_id, f"[{step}] " if step else "", message
        )
        with self._lock:
            if self._handle is not None:
                try:
                    self._handle.write(line + "\n")
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


__all__ = ["LEVELS", "ExecutionLog", "execution_log_path", "log_level"]
