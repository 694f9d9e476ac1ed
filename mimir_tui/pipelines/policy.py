"""Where pipeline steps may reach, and how much they may read: the one place plugins ask.

The threat model (docs/security.md): a pipeline is code its author trusts, as a DAG is in
Airflow; the data it reads is not. A path or a URL filled from a fetched record, a feed that
never ends, a redirect to ``http://127.0.0.1``: the operator's ``security`` section confines
what such data can make a step do, and the size caps of ``plugins`` bound what it can make a
step hold. With the section left out, nothing is confined (as before it existed); the caps
always apply.

- Files: :meth:`Policy.readable` / :meth:`Policy.writable` resolve ``~``, ``..`` and symlinks
  (a relative path against the run's working folder, :func:`working_folder`) and refuse a path
  outside ``security.read_paths`` / ``security.write_paths``;
  :meth:`Policy.read_bytes` reads a regular file only, at most ``plugins.max_file_bytes``.
- HTTP: :meth:`Policy.http_client` is an ``httpx.AsyncClient`` whose every response, redirects
  included, stops at ``plugins.max_response_bytes``; with ``security.block_private_networks``
  it connects only to addresses it resolved and checked itself (loopback, private, link-local,
  reserved and multicast ones are refused, unless ``security.allowed_hosts`` lists the host or
  its network), on every connection, redirects included, so DNS cannot answer differently
  between the check and the connection. :meth:`Policy.send` makes a request and reads the body
  with the cap applied to the decoded bytes too (a gzip bomb stops at the cap): a
  :class:`Reply`, the response and its body.

A user plugin does the same: ``policy = Policy.of(ctx.settings, ctx.base_dir)``, then these
methods.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..safeio import MAX_STEP_INPUT_BYTES, UnsafeFile, read_capped
from .registry import PluginError

if TYPE_CHECKING:
    import httpx


class PolicyError(PluginError):
    """A step tried to reach what the operator's ``security`` section does not allow."""


def resolve_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> Path:
    """``~`` expanded; a relative path is relative to ``base`` (a step's ``ctx.base_dir``: the
    run's working folder, see :func:`working_folder`), or to the process's working directory
    without one."""
    given = Path(os.path.expanduser(os.fspath(path)))
    return (Path(base) / given if base is not None else given).absolute()


def working_folder(settings: Any, source_path: str | None) -> Path:
    """The folder relative paths in a pipeline's steps resolve against, the same whichever way
    its run starts (the command line, a job's run, the service, the dashboard) and whatever the
    current directory: ``pipelines.working_dir`` if set; else the folder of the pipeline's
    file; else (a pipeline stored without one) the config file's folder."""
    configured = settings.pipelines.working_dir if settings is not None else None
    if configured:
        return Path(configured)
    if source_path:
        return source_folder(source_path)
    config = getattr(settings, "config_path", None)
    return config.parent if config is not None else Path.cwd()


def source_folder(source_path: str) -> Path:
    """The folder of a pipeline's file, links resolved: once per absolute path (resolving
    reads every part of the path, and every run of the pipeline asks)."""
    if os.path.isabs(source_path):
        return _resolved_folder(source_path)
    return Path(source_path).resolve().parent  # relative to the current directory, which may change


@functools.lru_cache(maxsize=1024)
def _resolved_folder(source_path: str) -> Path:
    return Path(source_path).resolve().parent


def _within(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


@dataclass(frozen=True)
class Policy:
    """What steps may reach and read; :meth:`of` builds it from the settings."""

    read_paths: tuple[Path, ...] | None = None
    write_paths: tuple[Path, ...] | None = None
    block_private_networks: bool = False
    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_file_bytes: int = MAX_STEP_INPUT_BYTES
    max_response_bytes: int = MAX_STEP_INPUT_BYTES
    base_dir: Path | None = None  # what relative paths are relative to (None: the working directory)

    @classmethod
    def of(cls, settings: Any, base_dir: Path | None = None) -> Policy:
        """The policy of a :class:`~mimir_tui.config.Settings` (``None``: nothing confined,
        default caps), for a step whose relative paths resolve against ``base_dir`` (its
        ``ctx.base_dir``)."""
        if settings is None:
            return cls(base_dir=base_dir)
        security = settings.security

        def folders(paths: list[str] | None) -> tuple[Path, ...] | None:
            return None if paths is None else tuple(Path(os.path.realpath(p)) for p in paths)

        names, networks = set(), []
        for entry in security.allowed_hosts:  # config.py checked each is one or the other
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError:
                names.add(entry.rstrip("."))
        return cls(
            read_paths=folders(security.read_paths),
            write_paths=folders(security.write_paths),
            block_private_networks=security.block_private_networks,
            allowed_names=frozenset(names),
            allowed_networks=tuple(networks),
            max_file_bytes=settings.plugins.max_file_bytes,
            max_response_bytes=settings.plugins.max_response_bytes,
            base_dir=base_dir,
        )

    # -- files -------------------------------------------------------------------------------

    def readable(self, path: str | os.PathLike[str]) -> Path:
        """The path to read ``path`` at (``~`` expanded, relative to :attr:`base_dir`), or a
        :class:`PolicyError` if it resolves outside ``security.read_paths``."""
        return self._confine(path, self.read_paths, "read", "security.read_paths")

    def writable(self, path: str | os.PathLike[str]) -> Path:
        """As :meth:`readable`, for writing, against ``security.write_paths``."""
        return self._confine(path, self.write_paths, "write", "security.write_paths")

    def _confine(self, path: str | os.PathLike[str], folders: tuple[Path, ...] | None, verb: str, key: str) -> Path:
        given = resolve_path(path, self.base_dir)
        if folders is None:
            return given
        # The resolved path is what is checked and what the plugin opens: a symlink or ".."
        # cannot lead elsewhere after the check.
        real = Path(os.path.realpath(given))
        if _within(real, folders):
            return real
        shown = str(given) if real == given else f"{given} (that is {real})"
        allowed = ", ".join(str(f) for f in folders) or "none"
        raise PolicyError(f"may not {verb} {shown}: it is outside {key} ({allowed})")

    def read_bytes(self, path: Path, max_bytes: int | None = None) -> bytes:
        """The bytes of the regular file ``path`` (already allowed), at most
        ``plugins.max_file_bytes`` (or ``max_bytes``, if smaller); a FIFO, a device, a
        directory or a larger file is a :class:`PluginError` naming the path."""
        limit, name = self.max_file_bytes, "plugins.max_file_bytes"
        if max_bytes is not None and max_bytes < limit:
            limit, name = max_bytes, "max_bytes"
        try:
            return read_capped(path, limit, name)
        except UnsafeFile as exc:
            raise PluginError(f"{path} {exc}") from None
        except FileNotFoundError:
            raise PluginError(f"file {path} does not exist") from None
        except OSError as exc:
            raise PluginError(f"cannot read {path}: {exc.strerror or exc}") from None

    # -- HTTP --------------------------------------------------------------------------------

    def http_client(self, *, verify: bool = True, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` (``kwargs`` as httpx takes them) under this policy."""
        from .http import client

        return client(self, verify, **kwargs)

    async def send(self, client: httpx.AsyncClient, method: str, url: Any, **kwargs: Any) -> Reply:
        """``client.request(method, url, **kwargs)``, its body read (decoded) up to
        ``plugins.max_response_bytes``: past it, a :class:`PluginError`."""
        response = await client.send(client.build_request(method, url, **kwargs), stream=True)
        chunks: list[bytes] = []
        try:
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > self.max_response_bytes:
                    raise self._too_large(response.request)
                chunks.append(chunk)
        finally:
            await response.aclose()
        return Reply(response, b"".join(chunks))

    def _too_large(self, request: httpx.Request) -> PluginError:
        from .plugins.common import redact_url

        return PluginError(
            f"{request.method} {redact_url(str(request.url))}: the response is larger than "
            f"plugins.max_response_bytes ({self.max_response_bytes:,} bytes)"
        )

    async def _cap_response(self, response: httpx.Response) -> None:
        # Every response, a redirect's too (httpx reads those whole before following them).
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_large(response.request)
        from .http import CappedStream

        response.stream = CappedStream(
            response.stream, self.max_response_bytes, lambda: self._too_large(response.request)
        )

    def check_address(self, host: str, address: str) -> None:
        """A :class:`PolicyError` if connecting to ``address`` (which ``host`` resolved to) is
        blocked."""
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if (ip.is_global and not ip.is_multicast) or host.lower().rstrip(".") in self.allowed_names:
            return
        if any(ip in network for network in self.allowed_networks):
            return
        kind = next(
            (
                name
                for name, flag in (
                    ("loopback", ip.is_loopback),
                    ("link-local", ip.is_link_local),
                    ("multicast", ip.is_multicast),
                    ("private", ip.is_private),
                )
                if flag
            ),
            "non-public",
        )
        shown = address if host == address else f"{host} ({address})"
        raise PolicyError(
            f"may not connect to {shown}: a {kind} address, and security.block_private_networks is on"
            " (security.allowed_hosts can let it through)"
        )


@dataclass(frozen=True)
class Reply:
    """What :meth:`Policy.send` returns: the ``response`` (status, headers, final URL; its
    stream read and closed) and its body, decoded and within ``plugins.max_response_bytes``."""

    response: httpx.Response
    content: bytes

    @property
    def text(self) -> str:
        """The body as text, decoded as httpx's ``response.text`` would (Content-Type's charset,
        else UTF-8)."""
        return self.content.decode(self.response.encoding or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


__all__ = ["Policy", "PolicyError", "Reply", "resolve_path", "working_folder"]
