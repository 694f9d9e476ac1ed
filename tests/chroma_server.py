"""A real ``chroma run`` server on 127.0.0.1 for the tests (chromadb's own server program)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI (as tests/conftest.py does for the database servers)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroma_program() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


@dataclass
class ChromaServer:
    url: str
    path: Path
    process: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None


def start_chroma(path: Path, log: Path, port: int | None = None, timeout: float = 60) -> ChromaServer:
    import httpx

    program = chroma_program()
    if program is None:
        unavailable("no `chroma` program (chromadb's server) on this machine")
    port = port or free_port()
    handle = log.open("wb")
    process = subprocess.Popen(
        [program, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited with {process.returncode}: {log.read_text()[-500:]}")
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1, trust_env=False).status_code == 200:
                return ChromaServer(url=url, path=path, process=process, log=log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"chroma run did not answer within {timeout:g} s: {log.read_text()[-500:]}")


def stop_chroma(server: ChromaServer) -> None:
    if server.alive():
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
