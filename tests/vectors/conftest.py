"""Fixtures of the vector store's tests: settings on an embedded store in ``tmp_path``, and a
real ``chroma run`` server on 127.0.0.1 (one per test session, about 3 s to start; skipped
without the ``chroma`` program, a failure with ``CI=true``). Never the network."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chroma_server import ChromaServer, start_chroma, stop_chroma

from mimir_tui.config import Settings


@pytest.fixture
def vector_settings(sqlite_settings: Settings) -> Settings:
    """Defaults, every path under ``tmp_path``: the embedded store at tmp_path/data/chromem.db."""
    return sqlite_settings


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """One ``chroma run`` for the session; tests use collections of their own names."""
    root = tmp_path_factory.mktemp("chroma")
    server = start_chroma(root / "store", root / "chroma.log")
    try:
        yield server
    finally:
        stop_chroma(server)


@pytest.fixture
def server_vector_settings(vector_settings: Settings, chroma_server: ChromaServer) -> Settings:
    vector_settings.vectors.server_url = chroma_server.url
    return vector_settings


@pytest.fixture
def runner(vector_settings: Settings) -> Iterator[Any]:
    """A real pipeline runner on SQLite in tmp_path, its relative paths in the test's folder."""
    from pathlib import Path

    from mimir_tui.persistence import open_backend
    from mimir_tui.pipelines.registry import default_registry
    from mimir_tui.pipelines.runner import PipelineRunner

    vector_settings.pipelines.working_dir = str(Path.cwd())
    backend = open_backend(vector_settings)
    try:
        yield PipelineRunner(backend, vector_settings, default_registry())
    finally:
        backend.close()
