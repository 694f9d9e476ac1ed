"""Subcommands of ``mimir-tui``. Each module has ``NAME`` and ``HELP`` (the command's word and
its line in the top-level help), ``register(subparsers, common)``, and sets a
``handler(ctx, args) -> exit code`` on its parsers. The handlers call the same core functions
the dashboard's screens call.

Building the parser must stay cheap: ``--help`` and usage errors print before any handler
runs, so this package and its modules import only the standard library, ``..errors``,
``..constants`` and ``..inputs`` at the top. Configuration, persistence, the scheduler, the
pipelines and YAML are imported inside the handlers that use them
(tests/unit/test_cli_imports.py checks it).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..inputs import is_printable, printable

if TYPE_CHECKING:
    from ..config import Settings
    from ..persistence import PersistenceBackend


class Context:
    """Lazily loaded settings and backend for one command."""

    def __init__(self, config_path: str | None = None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._backend: PersistenceBackend | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            self._settings = load_settings(self.config_path)
            quiet_logging()
        return self._settings

    @property
    def backend(self) -> PersistenceBackend:
        if self._backend is None:
            from ..persistence import open_backend

            self._backend = open_backend(self.settings)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def quiet_logging() -> None:
    """Subcommands report errors as one line on stderr themselves; keep log records off it."""
    import logging  # here, not at the top: --help and usage errors need no logging

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def to_jsonable(value: Any) -> Any:
    """Models, lean rows, datetimes (ISO-8601 UTC), enums and paths, as plain JSON data."""
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    if hasattr(value, "as_dict"):  # a lean row (persistence.rows): a tuple with named columns
        return to_jsonable(value.as_dict())
    if isinstance(value, datetime):
        from ..persistence.types import as_utc  # cheap: whatever made a datetime has loaded it already

        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def short_time(value: Any) -> str:
    """``2026-03-08 07:00:00Z`` for tables; ``-`` for none."""
    text = to_jsonable(value)
    return text[:19].replace("T", " ") + "Z" if text else "-"


def print_json(value: Any) -> None:
    """JSON on stdout; C1 control characters and lone surrogates, which JSON leaves as they are
    outside ASCII, escaped as ``\\u0085`` (still the same JSON)."""
    text = json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


_JSON_UNSAFE = re.compile("[\x7f-\x9f\ud800-\udfff]")


def print_table(rows: list[list[Any]], headers: list[str]) -> None:
    """Columns padded to their widest cell; stored text escaped (:func:`printable`), after one
    check of the whole table (a million rows print)."""
    table = [[str(c) for c in row] for row in rows]
    if not is_printable("".join(map("".join, table))):
        table = [[printable(c) for c in row] for row in table]
    widths = [len(h) for h in headers]
    for row in table:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


from . import backup, config_cmd, db, executions, health, jobs, migrate, pipelines, retention, vectors  # noqa: E402

COMMAND_MODULES = [health, config_cmd, jobs, pipelines, executions, vectors, backup, db, retention, migrate]
