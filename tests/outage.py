"""A real database made unavailable for a while, then available again, for the tests (no
mocks): a SQLite file whose write lock another process holds, and a TCP proxy on loopback in
front of a database server that can be cut and restored (the shared server itself is never
stopped: other tests use it)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextmanager
def sqlite_write_locked(path: str) -> Iterator[None]:
    """Another process holds the SQLite file's write lock (``BEGIN IMMEDIATE``, as any program
    could) for the length of the block: every write waits for the busy timeout, then fails;
    reads go on (WAL)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``(host, upstream_port)``. :meth:`cut` closes every
    connection and refuses new ones (each is accepted and closed at once, as a server that
    went away); :meth:`restore` lets them through again, on the same port."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._cut
            if refused:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._cut:
                    _close(client)
                    _close(server)
                    continue
                self._open.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Outage:
    """The database of ``settings`` (a copy, made to reach it through here) made unavailable by
    :meth:`cut` and available again by :meth:`restore`: on SQLite another process holds the
    write lock (writes fail after the busy timeout, reads go on); on PostgreSQL and MariaDB a
    :class:`TcpProxy` cuts every connection and refuses new ones. Only backends opened on
    :attr:`settings` are affected: the test's own backend still reaches the database."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings.model_copy(deep=True)
        persistence = self.settings.persistence
        self._held = ExitStack()
        self._proxy: TcpProxy | None = None
        if persistence.backend == "sqlite":
            persistence.busy_timeout_ms = 300
            return
        parts = urlsplit(persistence.connection_string)
        self._proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self._proxy.port}" if auth else f"127.0.0.1:{self._proxy.port}"
        persistence.connection_string = urlunsplit(parts._replace(netloc=netloc))
        persistence.connect_timeout = 2

    def cut(self) -> None:
        if self._proxy is not None:
            self._proxy.cut()
        else:
            self._held.enter_context(sqlite_write_locked(self.settings.persistence.database_path))

    def restore(self) -> None:
        if self._proxy is not None:
            self._proxy.restore()
        else:
            self._held.close()

    def close(self) -> None:
        self._held.close()
        if self._proxy is not None:
            self._proxy.close()
