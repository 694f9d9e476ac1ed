"""Logging for the service and the dashboard: stdout and/or a rotating file, text or JSON lines."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

from .errors import MimirError


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(settings, *, console: bool = True) -> None:
    """Configure the root logger from ``settings.logging``; ``console`` False keeps stdout
    clean (the dashboard owns the terminal)."""
    cfg = settings.logging
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(cfg.level)
    formatter: logging.Formatter = JsonFormatter() if cfg.format == "json" else logging.Formatter(TEXT_FORMAT)
    if console and cfg.output in ("stdout", "both"):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if cfg.output in ("file", "both") or not console:
        path = Path(cfg.file_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=cfg.max_size * 1024 * 1024, backupCount=cfg.max_backups, encoding="utf-8"
            )
        except OSError as exc:
            raise MimirError(f"logging.file_path {path}: cannot open: {exc.strerror or exc}") from None
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
