"""The vector store's health for ``mimir-tui health``, without importing chromadb (a second or
more; the command line's ordinary commands do not pay for it, tests/unit/test_cli_imports.py):

- embedded: the folder's size, and its collections and documents read from chromadb's SQLite
  file (read-only; figures it cannot read are left out), and the process that holds it, if any;
- server: chroma's HTTP API (heartbeat, collections, each one's count) with the standard
  library's client, within ``vectors.timeout`` (at most 5 s a request).

Informational: the store being away does not make Mimir unhealthy (its jobs run without it;
the steps that need it fail, each in one line).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..secrets import mask_url

API = "/api/v2/tenants/default_tenant/databases/default_database"
MAX_COLLECTIONS = 1000


def vector_status(settings: Any) -> dict[str, Any]:
    """``{enabled, mode, where, reachable, collections, documents, size_bytes, ...}``."""
    if not settings.persistence.enable_vector_db:
        return {"enabled": False}
    server = settings.vectors.server()
    if server:
        return _server_status(server, min(settings.vectors.timeout, 5.0))
    return _embedded_status(Path(settings.persistence.vector_db_path))


def _embedded_status(folder: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"enabled": True, "mode": "embedded", "where": str(folder)}
    if not folder.is_dir():
        report.update(reachable=True, collections=0, documents=0, size_bytes=0, note="not created yet")
        return report
    report["size_bytes"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    report["reachable"] = True
    holder = _holder(folder)
    if holder:
        report["in_use_by"] = holder
    database = folder / "chroma.sqlite3"
    if database.is_file():
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2) as db:
                rows = db.execute(
                    "SELECT c.name, COUNT(e.id) FROM collections c "
                    "LEFT JOIN segments s ON s.collection = c.id AND s.scope = 'METADATA' "
                    "LEFT JOIN embeddings e ON e.segment_id = s.id GROUP BY c.id"
                ).fetchall()
            report["collections"] = len(rows)
            report["documents"] = sum(count for _, count in rows)
        except sqlite3.Error as exc:
            report["note"] = f"cannot read {database.name}: {exc}"
    return report


def _holder(folder: Path) -> str | None:
    """The process that holds the store (mimir_tui.vectors.owner), if another one does."""
    from .owner import LOCK_NAME

    path = folder / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return f"pid {pid}" if pid.isdigit() else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _get(url: str, timeout: float) -> Any:
    import urllib.request  # here: ssl and http.client are for server mode only

    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the configured server
        return json.loads(response.read(10_000_000))


def _server_status(server: str, timeout: float) -> dict[str, Any]:
    report: dict[str, Any] = {"enabled": True, "mode": "server", "where": mask_url(server)}
    started = time.perf_counter()
    try:
        _get(f"{server}/api/v2/heartbeat", timeout)
        report["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        collections = _get(f"{server}{API}/collections?limit={MAX_COLLECTIONS}", timeout)
        report["collections"] = len(collections)
        report["documents"] = sum(int(_get(f"{server}{API}/collections/{c['id']}/count", timeout)) for c in collections)
        report["reachable"] = True
    except (OSError, ValueError, KeyError, TypeError) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", None) or exc
        report["reachable"] = False
        report["error"] = f"vector server {mask_url(server)}: unreachable ({' '.join(str(reason).split())[:200]})"
    return report


def status_line(report: dict[str, Any]) -> str:
    """One line for ``health``'s text output."""
    if not report.get("enabled"):
        return "off (persistence.enable_vector_db: false)"
    parts = [f"{report['mode']} {report['where']}"]
    if not report.get("reachable"):
        return f"{parts[0]}, unreachable"
    if "collections" in report:
        parts.append(f"{report['collections']} collection(s), {report['documents']} document(s)")
    if "size_bytes" in report:
        parts.append(f"{report['size_bytes']} bytes")
    if "latency_ms" in report:
        parts.append(f"{report['latency_ms']} ms")
    if report.get("in_use_by"):
        parts.append(f"in use by {report['in_use_by']}")
    if report.get("note"):
        parts.append(report["note"])
    return ", ".join(parts)
