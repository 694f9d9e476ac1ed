"""``Output.json``: write a context value (or inline data) to a JSON file.

Writes are atomic: a temporary file in the same folder, then ``os.replace``; a crash leaves the
old file or the new one, never a truncated one.

``append: true`` keeps the file a JSON **array** and adds to it: a list value extends the array
(each record becomes one element), anything else is appended as one element; an existing file
that holds a single value becomes ``[old, new]``. The whole file is rewritten atomically, so it
stays valid JSON (readable by ``Input.file``) after every run. Runs inside one Mimir process
that append to the same file take turns; separate processes appending to one file at the same
moment may lose an update.

``lines: true`` writes JSON Lines instead (one compact value per line; a list gives one line per
record). With ``append: true`` the lines are added at the end with a single ``O_APPEND`` write,
which does not rewrite the file (fast for large logs, but a crash mid-write can leave a partial
last line, which ``Input.file`` reports with its line number).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ..policy import Policy
from ..registry import Plugin, PluginConfig, PluginError, StepContext
from .common import FILE_ALIASES, atomic_write, resolve_data, to_json_text

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class JsonOutputConfig(PluginConfig):
    file: str = Field(
        validation_alias=FILE_ALIASES, description="the file to write (relative: to the run's working folder)"
    )
    input: str | None = Field(None, description="context key to write (dotted path allowed); default the whole context")
    data: Any = Field(None, description="the value to write, inline (instead of input)")
    pretty: bool = Field(False, description="indent the JSON (2 spaces unless indent says otherwise)")
    indent: int | None = Field(None, ge=0, le=16, description="spaces per level; implies pretty")
    append: bool = Field(False, description="add to the JSON array in the file instead of replacing it")
    lines: bool = Field(False, description="write JSON Lines (one value per line)")
    mkdir: bool = Field(True, description="create missing parent folders")
    sort_keys: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> JsonOutputConfig:
        if self.input is not None and self.data is not None:
            raise ValueError("give 'input' or 'data', not both")
        return self

    def indent_width(self) -> int | None:
        if self.lines:
            return None
        if self.indent is not None:
            return self.indent
        return 2 if self.pretty else None


def _dumps(value: Any, indent: int | None, sort_keys: bool) -> str:
    if sort_keys:
        return json.dumps(json.loads(to_json_text(value)), indent=indent, ensure_ascii=False, sort_keys=True)
    return to_json_text(value, indent=indent)


class JsonOutput(Plugin):
    type = "Output"
    name = "json"
    description = (
        "Write a context value or inline data to a JSON (or JSON Lines) file, atomically."
        " Result {file, bytes, records}."
    )
    Config = JsonOutputConfig

    def execute(self, config: JsonOutputConfig, ctx: StepContext) -> dict[str, Any]:
        value = resolve_data(config.data, config.input, ctx, default_all=True)
        policy = Policy.of(ctx.settings, ctx.base_dir)
        path = policy.writable(config.file)
        new_items = list(value) if isinstance(value, (list, tuple)) else [value]
        indent = config.indent_width()
        with _lock_for(path):
            if config.lines:
                text = "".join(_dumps(item, None, config.sort_keys) + "\n" for item in new_items)
                if config.append:
                    size = self._append_lines(path, text.encode("utf-8"), config.mkdir)
                else:
                    size = atomic_write(path, text.encode("utf-8"), mkdir=config.mkdir)
                total = None
            elif config.append:
                existing = self._read_array(path, policy)
                combined = existing + new_items
                size = atomic_write(
                    path, (_dumps(combined, indent, config.sort_keys) + "\n").encode("utf-8"), mkdir=config.mkdir
                )
                total = len(combined)
            else:
                size = atomic_write(
                    path, (_dumps(value, indent, config.sort_keys) + "\n").encode("utf-8"), mkdir=config.mkdir
                )
                total = None
        records = len(new_items)
        ctx.log("INFO", f"wrote {records} record(s) to {path}" + (" (appended)" if config.append else ""))
        result: dict[str, Any] = {"file": str(path), "bytes": size, "records": records}
        if config.append:
            result["appended"] = True
            if total is not None:
                result["total_records"] = total
        return result

    @staticmethod
    def _read_array(path: Path, policy: Policy) -> list[Any]:
        if not path.exists():
            return []
        try:
            text = policy.read_bytes(path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PluginError(f"cannot append to {path}: {exc}") from None
        if not text.strip():
            return []
        try:
            existing = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PluginError(
                f"cannot append to {path}: it is not valid JSON ({exc.lineno}:{exc.colno}: {exc.msg}); "
                "fix or remove it, or use lines: true"
            ) from None
        return existing if isinstance(existing, list) else [existing]

    @staticmethod
    def _append_lines(path: Path, data: bytes, mkdir: bool) -> int:
        if not path.parent.exists():
            if not mkdir:
                raise PluginError(f"folder {path.parent} does not exist (set mkdir: true to create it)")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_NONBLOCK: opening a FIFO must not wait for a reader
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as exc:  # ENXIO: a FIFO that no one reads
            reason = "not a regular file" if exc.errno == errno.ENXIO else exc.strerror or exc
            raise PluginError(f"cannot append to {path}: {reason}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PluginError(f"cannot append to {path}: not a regular file")
            size = info.st_size
            if size:
                with open(path, "rb") as handle:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)
