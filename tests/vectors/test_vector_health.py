"""``mimir-tui health`` shows the vector store (issue 14, item 6): mode, where, reachable or
not, collections, documents, size; without importing chromadb (tests/unit/test_cli_imports.py),
and without making Mimir unhealthy when the store is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chroma_server import free_port

from mimir_tui.vectors import open_store

DOCS = [{"id": f"d{i}", "text": f"document number {i}"} for i in range(4)]


def write_config(vector_settings, extra: str = "") -> None:
    Path("config.yaml").write_text(
        f"persistence:\n  database_path: {vector_settings.persistence.database_path}\n"
        f"  vector_db_path: {vector_settings.persistence.vector_db_path}\n{extra}"
    )


def test_health_shows_the_embedded_store_and_who_holds_it(vector_settings, run_cli):
    store = open_store(vector_settings)
    store.create("health-docs")
    store.add("health-docs", DOCS)
    write_config(vector_settings)
    held = run_cli("health", "--json")  # this process holds the store
    assert held.returncode == 0, held.stderr
    vectors = json.loads(held.stdout)["vectors"]
    assert vectors["mode"] == "embedded" and vectors["where"] == vector_settings.persistence.vector_db_path
    assert (vectors["collections"], vectors["documents"], vectors["reachable"]) == (1, 4, True)
    assert vectors["size_bytes"] > 0 and vectors["in_use_by"] == f"pid {os.getpid()}"
    store.close()
    text = run_cli("health")
    line = [x for x in text.stdout.splitlines() if x.startswith("vectors")]
    assert line == [
        f"vectors         embedded {vector_settings.persistence.vector_db_path}, 1 collection(s), 4 document(s), "
        f"{json.loads(run_cli('health', '--json').stdout)['vectors']['size_bytes']} bytes"
    ]


def test_health_with_vectors_off_says_so(vector_settings, run_cli):
    write_config(vector_settings, "  enable_vector_db: false\n")
    proc = run_cli("health")
    assert proc.returncode == 0
    assert "vectors         off (persistence.enable_vector_db: false)" in proc.stdout.splitlines()
    assert json.loads(run_cli("health", "--json").stdout)["vectors"] == {"enabled": False}


@pytest.mark.slow
def test_health_shows_a_server_reachable_or_not(vector_settings, chroma_server, run_cli):
    vector_settings.vectors.server_url = chroma_server.url
    store = open_store(vector_settings)
    store.create("health-server-docs")
    try:
        store.add("health-server-docs", DOCS)
        write_config(vector_settings, f"vectors:\n  server_url: {chroma_server.url}\n")
        vectors = json.loads(run_cli("health", "--json").stdout)["vectors"]
        assert (vectors["mode"], vectors["where"], vectors["reachable"]) == ("server", chroma_server.url, True)
        assert vectors["collections"] >= 1 and vectors["documents"] >= 4 and vectors["latency_ms"] >= 0
    finally:
        store.drop("health-server-docs")
    gone = f"http://127.0.0.1:{free_port()}"
    write_config(vector_settings, f"vectors:\n  server_url: {gone}\n")
    proc = run_cli("health", "--json")
    assert proc.returncode == 0, proc.stderr  # the database is healthy; the vectors are shown away
    vectors = json.loads(proc.stdout)["vectors"]
    assert vectors["reachable"] is False and vectors["error"].startswith(f"vector server {gone}: unreachable (")
    text = run_cli("health").stdout
    assert f"vectors         server {gone}, unreachable" in text.splitlines()


def test_health_does_not_import_chromadb(vector_settings):
    write_config(vector_settings)
    code = (
        "import contextlib, io, sys\nfrom mimir_tui.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['health']) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'chromadb', 'wordllama', 'httpx'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
