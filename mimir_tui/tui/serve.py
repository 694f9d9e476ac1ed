"""``mimir-tui --serve``: the dashboard in a browser, through textual-serve.

textual-serve answers each browser connection by starting a command whose output it relays to
xterm.js in the page. The command here is the same dashboard with the operator's ``--config``
and ``--theme`` (never ``--serve`` again), started from the same folder and environment, so it
reads the same configuration and the same database.

It listens on loopback unless told otherwise: there is no authentication, and whoever reaches
the port drives the dashboard, so an operator reaches it through an SSH tunnel. Two checks keep
other web pages in the operator's browser out: on a loopback address, a request must name a
loopback host (a DNS-rebound name is refused), and a browser's websocket must come from the
page's own origin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import BadInput

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
QUIT_GRACE = 15  # seconds the dashboards have to quit when the server stops
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class ServeError(BadInput):
    """A host or port the server cannot listen on: bad input, exit 2."""


def dashboard_command(settings: Settings, theme: str | None) -> str:
    """The shell command textual-serve runs per browser connection: this dashboard, once more."""
    argv = [sys.executable, "-m", "mimir_tui.cli"]
    if settings.config_path is not None:
        argv += ["--config", str(settings.config_path)]
    if theme:
        argv += ["--theme", theme]
    return shlex.join(argv)


def _is_loopback_name(name: str) -> bool:
    name = name.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_host(host: str, port: int) -> bool:
    """Whether ``host`` is loopback only; ServeError if it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ServeError(f"--host {host!r}: cannot resolve it ({reason})") from None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def url_of(host: str, port: int) -> str:
    """The URL to open; for a wildcard address (0.0.0.0, ::), this machine's name."""
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = False
    return f"http://{_bracketed(socket.gethostname() if wildcard else host)}:{port}"


def _make_server(command: str, host: str, port: int, loopback: bool) -> Any:
    from aiohttp import web
    from textual_serve.server import Server

    class DashboardServer(Server):
        """textual-serve's server; its page points the browser at the address the browser used
        (an SSH tunnel's local port), and it refuses what another site's page could send."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sessions: set[asyncio.Task[Any]] = set()  # one per browser connection

        def _refused(self, request: web.Request) -> str | None:
            if loopback and not _is_loopback_name(urlsplit(f"//{request.host}").hostname or ""):
                return f"host {request.host!r} is not a loopback name"
            origin = request.headers.get("Origin")
            if request.path == "/ws" and origin is not None:
                if urlsplit(origin).netloc.lower() != request.host.lower():
                    return f"websocket from another origin ({origin})"
            return None

        async def handle_index(self, request: web.Request) -> Any:
            if reason := self._refused(request):
                raise web.HTTPForbidden(text=f"mimir-tui: refused: {reason}\n")
            # No await before the page is built: the URL stays this request's. Behind a TLS
            # proxy the page is https, and its websocket must be wss.
            forwarded = request.headers.get("X-Forwarded-Proto", "").lower()
            scheme = forwarded if forwarded in ("http", "https") else request.scheme
            self.public_url = f"{scheme}://{request.host}"
            return await super().handle_index(request)

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            if reason := self._refused(request):
                raise web.HTTPForbidden(text=f"mimir-tui: refused: {reason}\n")
            task = asyncio.current_task()
            assert task is not None
            self.sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.sessions.discard(task)

    return DashboardServer(command, host=host, port=port, title="Mimir")


async def _serve(server: Any, host: str, port: int, ready_line: str) -> None:
    from aiohttp import web

    app = await server._make_app()
    app.on_startup.clear()  # textual-serve's banner; the ready line below says what matters
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ServeError(f"--host {host} --port {port}: cannot listen ({reason})") from None
        print(ready_line, flush=True)
        await stop.wait()
        # Each session, cancelled, tells its dashboard to quit and waits for it to end.
        sessions = set(server.sessions)
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=QUIT_GRACE)
    finally:
        await runner.cleanup()


def serve_dashboard(
    settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, theme: str | None = None
) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; 0 then, ServeError if it cannot listen."""
    import logging

    loopback = resolve_host(host, port)
    url = url_of(host, port)
    if loopback:
        ready = (
            f"mimir-tui: the dashboard is at {url} (from another machine: "
            f"ssh -L {port}:{_bracketed(host)}:{port} {socket.gethostname()}, then open http://localhost:{port})"
        )
    else:
        ready = f"mimir-tui: the dashboard is at {url}"
        print(
            f"mimir-tui: warning: --host {host} is reachable from the network and there is no "
            f"authentication: anyone who reaches port {port} drives the dashboard",
            file=sys.stderr,
            flush=True,
        )
    logging.getLogger("textual-serve").setLevel(logging.WARNING)
    server = _make_server(dashboard_command(settings, theme), host, port, loopback)
    asyncio.run(_serve(server, host, port, ready))
    return 0
