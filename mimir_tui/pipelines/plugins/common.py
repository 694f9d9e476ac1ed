"""Helpers shared by the built-in plugins (and free for user plugins to import)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices

# SECRET_KEY and is_secret_key are re-exported: user plugins import them from here.
from ...secrets import MASK, SECRET_KEY, is_secret_key, mask_url  # noqa: F401
from ..policy import resolve_path  # noqa: F401 - re-exported: user plugins import it from here
from ..registry import PluginError, StepCancelled, StepContext

T = TypeVar("T")

#: The original's pipeline files name an output file ``file``, ``file_path``, ``filename`` or ``path``.
FILE_ALIASES = AliasChoices("file", "file_path", "filename", "path")

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>", "__bool__": lambda self: False})()


# -- paths into data -----------------------------------------------------------------------------


def get_path(value: Any, path: str | None, default: Any = MISSING) -> Any:
    """``get_path(data, "body.items.0.name")``: walk dict keys and list indexes.

    A leading dot (the original's ``.key.path`` spelling) is ignored; an empty path is the value
    itself. A key that itself contains dots is found too (``{"a.b": 1}`` with ``"a.b"``).
    Returns ``default`` when the path does not exist."""
    if path is None:
        return value
    path = path.strip()
    if path.startswith("."):
        path = path[1:]
    if path == "":
        return value
    if isinstance(value, dict) and path in value:
        return value[path]
    parts = path.split(".")
    return _walk(value, parts, default)


def _walk(value: Any, parts: list[str], default: Any) -> Any:
    if not parts:
        return value
    # Longest prefix first, so keys containing dots are still reachable.
    if isinstance(value, dict):
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in value:
                found = _walk(value[key], parts[n:], default)
                if found is not default or n == 1:
                    return found
        return default
    head, rest = parts[0], parts[1:]
    if isinstance(value, (list, tuple)):
        try:
            index = int(head)
        except ValueError:
            return default
        if -len(value) <= index < len(value):
            return _walk(value[index], rest, default)
        return default
    if hasattr(value, head) and not head.startswith("_"):  # a pydantic model or a dataclass
        return _walk(getattr(value, head), rest, default)
    return default


def describe_keys(value: Any, limit: int = 12) -> str:
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        more = f", ... ({len(keys)} keys)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more if keys else "(none)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return f"a {type(value).__name__}"


def lookup_input(ctx: StepContext, path: str) -> Any:
    """The value at ``path`` (``api_result.body.items``) in the pipeline context, or a
    :class:`PluginError` naming the key and what the context has."""
    found = get_path(ctx.context, path)
    if found is MISSING:
        first = path.lstrip(".").split(".")[0]
        if first not in ctx.context:
            raise PluginError(f"input {path!r}: no such key in the context (keys: {describe_keys(ctx.context)})")
        raise PluginError(f"input {path!r}: path not found in {first!r}")
    return found


def resolve_data(data: Any, input_key: str | None, ctx: StepContext, *, default_all: bool = False) -> Any:
    """Inline ``data`` wins; else the context value named by ``input``; else (if allowed) the
    whole context; else an error."""
    if data is not None:
        return data
    if input_key:
        return lookup_input(ctx, input_key)
    if default_all:
        return dict(ctx.context)
    raise PluginError("give either 'input' (a context key) or 'data'")


def as_text(value: Any) -> Any:
    """For text config fields filled by a template that rendered to data (``prompt: "{{ rows }}"``):
    mappings and lists become JSON, numbers and booleans plain text; anything else is left for
    validation to judge."""
    if isinstance(value, (dict, list, tuple)):
        return to_json_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "text", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


# -- files ---------------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes, *, mkdir: bool = True) -> int:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    ``os.replace``: readers see the old file or the new one, never half of one. The mode of an
    existing file is kept (new files get 0644). Returns the number of bytes written."""
    folder = path.parent
    if not folder.exists():
        if not mkdir:
            raise PluginError(f"folder {folder} does not exist (set mkdir: true to create it)")
        folder.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise PluginError(f"{path} is a directory")
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return len(data)


def to_json_text(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "get_secret_value"):
        return MASK
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# -- network -------------------------------------------------------------------------------------


#: A URL with its userinfo password and secret query values masked: :func:`mimir_tui.secrets.mask_url`
#: (the one function for every URL shown), by the name the plugins use.
redact_url = mask_url


def excerpt(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


async def cancellable(awaitable: Awaitable[T], ctx: StepContext, what: str = "step", poll: float = 0.1) -> T:
    """Await ``awaitable``, but stop it and raise :class:`StepCancelled` as soon as
    ``ctx.cancel_event`` is set (checked every ``poll`` seconds)."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            if ctx.cancel_event.is_set():
                raise StepCancelled(f"{what} cancelled")
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def http_url(value: str) -> str:
    """A config ``url`` for the HTTP plugins: trimmed, and http:// or https:// only."""
    value = value.strip()
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https:// (got {redact_url(value)!r})")
    return value
