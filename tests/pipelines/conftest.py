"""Helpers for the pipeline engine tests: small plugins, a store, a loopback HTTP server."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from loopback import serve

from mimir_tui.pipelines.registry import Plugin, PluginConfig, PluginRegistry, default_registry


class Echo(Plugin):
    """Returns its config; logs a line (with the api_key, to check masking)."""

    type = "Test"
    name = "echo"

    class Config(PluginConfig):
        value: Any = None
        api_key: str | None = None
        headers: dict[str, str] = {}
        count: int = 0

    def execute(self, config, ctx):
        ctx.log("INFO", f"echo value={config.value!r} api_key={config.api_key}")
        return {"value": config.value, "count": config.count, "seen": sorted(ctx.context)}


class Sleep(Plugin):
    """An async sleep that ignores the cancel event (so only task cancellation stops it)."""

    type = "Test"
    name = "sleep"

    class Config(PluginConfig):
        seconds: float

    async def execute(self, config, ctx):
        await asyncio.sleep(config.seconds)
        return {"slept": config.seconds}


class BlockingSleep(Plugin):
    """A sync sleep that never looks at the cancel event: a stuck plugin."""

    type = "Test"
    name = "block"

    class Config(PluginConfig):
        seconds: float

    def execute(self, config, ctx):
        time.sleep(config.seconds)
        return {"slept": config.seconds}


class Boom(Plugin):
    type = "Test"
    name = "boom"

    class Config(PluginConfig):
        message: str = "kaboom"
        exit: bool = False

    def execute(self, config, ctx):
        if config.exit:
            raise SystemExit(3)
        raise ValueError(config.message)


class AsyncBoom(Plugin):
    type = "Test"
    name = "aboom"

    async def execute(self, config, ctx):
        raise RuntimeError("async kaboom")


TEST_PLUGINS = (Echo, Sleep, BlockingSleep, Boom, AsyncBoom)


@pytest.fixture
def registry() -> PluginRegistry:
    """The built-in plugins plus the test ones."""
    reg = default_registry()
    for plugin in TEST_PLUGINS:
        reg.register(plugin)
    return reg


@pytest.fixture
def settings(sqlite_settings):
    sqlite_settings.plugins.timeout = 30
    return sqlite_settings


@pytest.fixture
def store(settings):
    from mimir_tui.persistence import open_backend

    backend = open_backend(settings)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def runner(store, settings, registry):
    from mimir_tui.pipelines.runner import PipelineRunner

    return PipelineRunner(store, settings, registry)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    """``write_yaml("name.yaml", text)``: a file under tmp_path/files (dedented)."""

    def write(name: str, text: str, folder: Path | None = None) -> Path:
        base = folder or tmp_path / "files"
        base.mkdir(parents=True, exist_ok=True)
        path = base / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


# -- a loopback HTTP server --------------------------------------------------------------------


@dataclass
class Loopback:
    base_url: str = ""
    routes: dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def route(self, method: str, path: str, handler: Callable[[dict[str, Any]], tuple[int, Any]]) -> None:
        self.routes[(method.upper(), path)] = handler

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    """A real HTTP server on 127.0.0.1; handlers get ``{method, path, headers, json}`` and return
    ``(status, json payload)``."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            request = {
                "method": self.command,
                "path": path,
                "headers": dict(self.headers.items()),
                "json": json.loads(body) if body else None,
            }
            state.requests.append(request)
            handler = state.routes.get((self.command, path))
            status, payload = handler(request) if handler else (404, {"error": "no such route"})
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

    with serve(Handler) as state.base_url:
        yield state
