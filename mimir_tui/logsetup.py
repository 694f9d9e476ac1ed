"""Logging for the service and the dashboard: stdout and/or a rotating file, text or JSON lines.

Log files are the owner's only, like the database: files 0600, folders Mimir creates 0700,
whatever the umask (:func:`open_private`, :func:`private_descriptor`, :func:`private_dirs`; the
execution logs use them too).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import stat
import sys
from datetime import UTC, datetime
from io import TextIOWrapper
from pathlib import Path

from .errors import MimirError


def private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700. Folders that exist are left as
    they are (a log may live in ``/var/log``)."""
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for one in reversed(missing):
        try:
            one.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(one, 0o700)  # the umask may have taken bits off


def open_private(
    path: Path, *, encoding: str = "utf-8", errors: str | None = None, buffering: int = -1
) -> TextIOWrapper:
    """``path`` opened for appending text, as :func:`private_descriptor` opens it."""
    return open(private_descriptor(path), "a", encoding=encoding, errors=errors, buffering=buffering)


def private_descriptor(path: Path) -> int:
    """``path`` opened for appending (a descriptor); a new file is made 0600 (whatever the
    umask), an existing regular file that others may read is narrowed to its owner (a device
    or a FIFO is never touched)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)
    except FileExistsError:
        fd = os.open(path, flags)
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            try:
                os.fchmod(fd, stat.S_IMODE(mode) & 0o700 or 0o600)
            except OSError:  # not ours to change: it is still written
                pass
    return fd


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log whose files (the first, and each one after a rotation) are 0600."""

    def _open(self) -> TextIOWrapper:
        return open_private(Path(self.baseFilename), encoding=self.encoding or "utf-8", errors=self.errors)


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
    clean (the dashboard owns the terminal). Then log, once, what the config sets without
    effect (:meth:`~mimir_tui.config.Settings.no_effect_notice`): the service and the dashboard
    call this first thing."""
    cfg = settings.logging
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(cfg.level)
    # Alembic narrates each schema upgrade step at INFO; Mimir says "upgrading database schema"
    # once itself. Its warnings still show, and all of it at DEBUG.
    logging.getLogger("alembic").setLevel(logging.DEBUG if cfg.level == "DEBUG" else logging.WARNING)
    formatter: logging.Formatter = JsonFormatter() if cfg.format == "json" else logging.Formatter(TEXT_FORMAT)
    if console and cfg.output in ("stdout", "both"):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if cfg.output in ("file", "both") or not console:
        path = Path(cfg.file_path)
        try:
            private_dirs(path.parent)
            file_handler = PrivateRotatingFileHandler(
                path, maxBytes=cfg.max_size * 1024 * 1024, backupCount=cfg.max_backups, encoding="utf-8"
            )
        except OSError as exc:
            raise MimirError(f"logging.file_path {path}: cannot open: {exc.strerror or exc}") from None
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    notice = settings.no_effect_notice()
    if notice:
        logging.getLogger("mimir.config").warning(notice)
