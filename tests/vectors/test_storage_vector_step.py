"""The ``Storage.vector`` step (issue 14, item 5): the original's ``storage_demo.yaml`` validates
and runs unchanged, the example of ``pipelines/vectors`` answers its question, and a vector
server gone mid-pipeline fails the step cleanly while the rest of the system runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from chroma_server import start_chroma, stop_chroma

from mimir_tui.pipelines.registry import default_registry
from mimir_tui.pipelines.spec import validate_files
from mimir_tui.vectors import open_store

REPO = Path(__file__).resolve().parents[2]
COMPAT = Path("/work/shared/compat/mimir-aip")
if not COMPAT.is_dir():
    COMPAT = REPO.parent / "shared" / "compat" / "mimir-aip"
needs_compat = pytest.mark.skipif(not COMPAT.is_dir(), reason="shared/compat/mimir-aip is not beside the repository")


@needs_compat
def test_the_originals_storage_demo_validates_and_runs_unchanged(runner, vector_settings):
    demo = COMPAT / "storage_demo.yaml"
    assert [str(i) for r in validate_files([demo], default_registry()) for i in r.issues] == []
    for _ in range(2):  # twice: a rerun finds its collection and documents in place
        record = runner.run(str(demo))
        assert record.status == "success", record.error
    ctx = record.context
    assert ctx["init_result"] == {
        "operation": "create_collection",
        "name": "demo_collection",
        "successful": True,
        "created": False,
        "embedder": "offline",
        "count": 3,
    }
    stored = {"operation": "store", "collection": "demo_collection", "count": 3, "successful": True}
    assert ctx["store_result"] == stored
    for key, query, first in [
        ("physics_query", "How does quantum mechanics work?", "physics_001"),
        ("biology_query", "What is photosynthesis?", "biology_001"),
        ("ai_query", "What is machine learning?", "ai_001"),
    ]:
        result = ctx[key]
        assert (result["operation"], result["collection"], result["query"]) == ("query", "demo_collection", query)
        assert result["count"] == 2 and result["results"][0]["id"] == first, result
    doc = ctx["specific_doc"]
    assert doc["id"] == "physics_001" and doc["content"].startswith("Quantum mechanics describes")
    tags = ["quantum", "mechanics", "physics"]
    assert doc["metadata"] == {"subject": "physics", "difficulty": "advanced", "tags": tags}
    assert ctx["collections_list"] == ["demo_collection"]
    assert open_store(vector_settings).count("demo_collection") == 3


def test_the_knowledge_base_example_answers_its_question(runner):
    record = runner.run(str(REPO / "pipelines" / "vectors" / "knowledge-base.yaml"))
    assert record.status == "success", record.error
    assert record.context["ingested"]["count"] == 4
    answer = json.loads(Path("output/knowledge-base-answer.json").read_text())
    assert [r["id"] for r in answer["results"]][0] == "backups.md" and answer["count"] == 3


def test_step_keys_are_checked_per_operation(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nsteps:\n"
        "  - {name: q, plugin: Storage.vector, config: {operation: query, collection: abc}}\n"
        "  - {name: s, plugin: Storage.vector, config: {operation: store, collection: abc}}\n"
        "  - {name: g, plugin: Storage.vector, config: {operation: get}}\n"
        "  - {name: x, plugin: Storage.vector, config: {operation: upsert}}\n"
    )
    issues = [str(i) for r in validate_files([path], default_registry()) for i in r.issues]
    assert len(issues) == 4, issues
    text = "\n".join(issues)
    assert "query: give the query text" in text and "store: give one of documents, input" in text
    assert "get: give id or ids" in text and "upsert" in text


def test_vectors_turned_off_fail_the_step_in_one_line(runner, vector_settings):
    vector_settings.persistence.enable_vector_db = False
    record = runner.run(str(REPO / "pipelines" / "vectors" / "knowledge-base.yaml"))
    assert record.status == "failed"
    step = record.step_records()[0]
    assert step.status == "failed"
    assert step.error == "the vector store is turned off (persistence.enable_vector_db: false)"


@pytest.mark.slow
def test_a_server_gone_mid_pipeline_fails_the_step_and_the_rest_runs(runner, vector_settings, tmp_path):
    server = start_chroma(tmp_path / "server-store", tmp_path / "chroma.log")
    vector_settings.vectors.server_url = server.url
    pipeline = tmp_path / "kb.yaml"
    steps = (
        "name: kb\nsteps:\n"
        "  - {name: wait, plugin: Data_Processing.delay, config: {seconds: WAIT}}\n"
        "  - name: store\n    plugin: Storage.vector\n"
        "    config: {operation: store, collection: notes, documents: [{id: a, content: alpha beta}]}\n"
        "  - name: ask\n    plugin: Storage.vector\n    output: hit\n"
        "    config: {operation: query, collection: notes, query: alpha}\n"
    )
    try:
        pipeline.write_text(steps.replace("WAIT", "0"))
        first = runner.run(str(pipeline))
        assert first.status == "success", first.error
        assert first.context["hit"]["results"][0]["id"] == "a"
        # the server dies (SIGKILL: at once) while the run waits in its first step
        pipeline.write_text(steps.replace("WAIT", "2"))
        stopper = threading.Timer(0.3, lambda: (server.process.kill(), server.process.wait()))
        stopper.start()
        second = runner.run(str(pipeline))
        stopper.join()
    finally:
        stop_chroma(server)
    assert second.status == "failed"
    records = {s.step_name: s for s in second.step_records()}
    assert records["wait"].status == "success" and records["store"].status == "failed"
    assert records["store"].error.startswith(f"vector server {server.url}: unreachable (")
    assert "\n" not in records["store"].error
    # the rest of the system runs: a pipeline without vectors, its run saved in the database
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nsteps:\n  - {name: wait, plugin: Data_Processing.delay, config: {seconds: 0}}\n")
    assert runner.run(str(other)).status == "success"


def test_each_step_lets_go_of_the_embedded_store(runner, vector_settings):
    """Between steps (and after the run) another process, the command line say, may use it."""
    record = runner.run(str(REPO / "pipelines" / "vectors" / "knowledge-base.yaml"))
    assert record.status == "success", record.error
    probe = (
        "import sys\nfrom mimir_tui.config import load_settings\nfrom mimir_tui.vectors import open_store\n"
        "s = load_settings(use_search=False, environ={})\ns.persistence.vector_db_path = sys.argv[1]\n"
        "s.vectors.timeout = 0.5\nprint(open_store(s).count('notes'))\n"
    )
    path = vector_settings.persistence.vector_db_path
    proc = subprocess.run([sys.executable, "-c", probe, path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4"


def test_a_folder_is_read_under_the_read_policy(runner, vector_settings, tmp_path):
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (allowed / "a.md").write_text("alpha notes")
    (secret / "key.md").write_text("do not ingest")
    vector_settings.security.read_paths = [str(allowed)]
    pipeline = tmp_path / "ingest.yaml"
    pipeline.write_text(
        "name: ingest\nsteps:\n"
        f"  - name: store\n    plugin: Storage.vector\n    output: stored\n"
        f"    config: {{operation: store, collection: notes, folder: '{allowed}', pattern: 'PATTERN'}}\n"
    )
    text = pipeline.read_text()
    pipeline.write_text(text.replace("PATTERN", "*.md"))
    record = runner.run(str(pipeline))
    assert record.status == "success", record.error
    assert record.context["stored"]["count"] == 1
    pipeline.write_text(text.replace("PATTERN", "../secret/*.md"))
    record = runner.run(str(pipeline))
    assert record.status == "failed"
    assert "outside security.read_paths" in record.step_records()[0].error
