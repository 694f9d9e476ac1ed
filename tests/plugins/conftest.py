"""Helpers for plugin tests: call a plugin as the runner does, and serve HTTP on 127.0.0.1.

- ``run_plugin(PluginClass, config, context=..., cancel_event=..., timeout=...)`` validates the
  config with ``Plugin.Config.model_validate`` (as the runner does after expanding templates),
  builds a :class:`StepContext` and runs ``execute`` (awaited when async, in a thread when not,
  so a test can set the cancel event meanwhile). It returns the step's output.
- ``http_server``: a real threaded HTTP server on a free loopback port; tests add routes with
  ``http_server.route("GET", "/path", handler)`` where ``handler(request) -> (status, headers, body)``
  and read ``http_server.requests`` afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback import serve

from mimir_tui.pipelines.registry import Plugin, StepContext


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests must never be routed through a proxy from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


def make_context(plugin: type[Plugin], context: dict[str, Any] | None = None, **kwargs: Any) -> StepContext:
    logs: list[tuple[str, str]] = kwargs.pop("logs", [])
    return StepContext(
        execution_id=kwargs.pop("execution_id", "exec-test"),
        pipeline=kwargs.pop("pipeline", "test pipeline"),
        step_name=kwargs.pop("step_name", plugin.key()),
        context=context if context is not None else {},
        log=lambda level, message: logs.append((level, message)),
        **kwargs,
    )


async def call_plugin(
    plugin: type[Plugin],
    config: dict[str, Any],
    context: dict[str, Any] | None = None,
    **ctx_kwargs: Any,
) -> Any:
    cfg = plugin.Config.model_validate(config)
    ctx = make_context(plugin, context, **ctx_kwargs)
    instance = plugin()
    if plugin.is_async():
        return await instance.execute(cfg, ctx)
    return await asyncio.to_thread(instance.execute, cfg, ctx)


@pytest.fixture
def run_plugin() -> Callable[..., Any]:
    return call_plugin


# -- a loopback HTTP server --------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Response = tuple[int, dict[str, str], bytes | str | Any]
Handler = Callable[[Request], Response]


@dataclass
class LoopbackServer:
    base_url: str = ""
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def url(self, path: str) -> str:
        return self.base_url + path


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    state = LoopbackServer()

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k: v for k, v in self.headers.items()},
                body=body,
            )
            state.requests.append(request)
            handler = state.routes.get((self.command, parts.path))
            if handler is None:
                status, headers, payload = 404, {"Content-Type": "text/plain"}, b"no such route"
            else:
                status, headers, payload = handler(request)
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes):
                payload = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **headers}
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    with serve(RequestHandler) as state.base_url:
        yield state
