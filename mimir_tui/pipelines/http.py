"""The HTTP half of :mod:`mimir_tui.pipelines.policy`: httpx's parts that cap a response and
check every address a connection goes to. Imported when a step first makes a request, not when
the plugins load: httpx and httpcore (which brings trio when it is installed) cost a process
about 10 MiB and a third of a second, and most instances run no HTTP step at all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import httpcore
import httpx

if TYPE_CHECKING:
    from .policy import Policy


def client(policy: Policy, verify: bool, **kwargs: Any) -> httpx.AsyncClient:
    """See :meth:`Policy.http_client`."""
    hooks = {"response": [policy._cap_response]}
    if not policy.block_private_networks:
        return httpx.AsyncClient(verify=verify, event_hooks=hooks, **kwargs)
    # A transport of our own also means no proxy from the environment: a proxy would
    # connect to addresses this policy never sees.
    return httpx.AsyncClient(transport=_CheckedTransport(policy, verify), event_hooks=hooks, **kwargs)


class CappedStream(httpx.AsyncByteStream):
    """A response body that raises past ``limit`` bytes as they arrive."""

    def __init__(self, inner: Any, limit: int, error: Callable[[], Exception]) -> None:
        self.inner, self.limit, self.error = inner, limit, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self.inner:
            total += len(chunk)
            if total > self.limit:
                raise self.error()
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CheckedTransport(httpx.AsyncBaseTransport):
    """httpx's transport, made of public parts: an httpcore pool (TLS from ``verify`` as httpx
    builds it, no proxy) whose every connection goes through :class:`_CheckedBackend`."""

    def __init__(self, policy: Policy, verify: bool) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=_CheckedBackend(policy),
            max_connections=100,  # httpx's default limits
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            request.method,
            httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=cast(AsyncIterable[bytes], request.stream),
            extensions=request.extensions,  # the timeouts, among others
        )
        with _httpx_errors():
            response = await self.pool.handle_async_request(core)
        stream = _CoreStream(cast(AsyncIterable[bytes], response.stream))
        return httpx.Response(response.status, headers=response.headers, stream=stream, extensions=response.extensions)

    async def aclose(self) -> None:
        await self.pool.aclose()


class _CoreStream(httpx.AsyncByteStream):
    """An httpcore response body, its errors raised as httpx's."""

    def __init__(self, inner: AsyncIterable[bytes]) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self.inner:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await cast(Any, self.inner).aclose()  # httpcore's streams have one


# httpcore's errors and httpx's, the most specific first: plugins catch httpx's.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        ours = next((ours for theirs, ours in _ERRORS if isinstance(exc, theirs)), None)
        if ours is None:
            raise
        raise ours(str(exc)) from exc


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving the host itself and connecting only to addresses
    the policy allows."""

    def __init__(self, policy: Policy) -> None:
        self.inner, self.policy = httpcore.AnyIOBackend(), policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            self.policy.check_address(host, address)
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise _policy_error("Unix sockets are not allowed with security.block_private_networks")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _policy_error(message: str) -> Exception:
    from .policy import PolicyError

    return PolicyError(message)
