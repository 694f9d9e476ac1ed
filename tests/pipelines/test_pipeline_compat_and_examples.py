"""The original's pipeline files run unchanged against servers on 127.0.0.1, and the examples in
``pipelines/`` run (offline, or against a local server for the API one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mimir_tui.pipelines.registry import default_registry
from mimir_tui.pipelines.runner import PipelineRunner
from mimir_tui.pipelines.spec import load_file

REPO = Path(__file__).resolve().parents[2]
COMPAT = Path("/work/shared/compat/mimir-aip")
if not COMPAT.is_dir():
    COMPAT = REPO.parent / "shared" / "compat" / "mimir-aip"
needs_compat = pytest.mark.skipif(not COMPAT.is_dir(), reason="shared/compat/mimir-aip is not beside the repository")


@pytest.fixture
def real_runner(store, settings):
    # Relative paths in steps resolve against the working folder: the test's own, not the
    # folders of the files (the repository's pipelines/, the shared originals).
    settings.pipelines.working_dir = str(Path.cwd())
    return PipelineRunner(store, settings, default_registry())


@needs_compat
def test_the_originals_test_pipeline_runs_against_a_local_server(real_runner, loopback, tmp_path):
    loopback.route("GET", "/get", lambda req: (200, {"url": "local", "headers": req["headers"], "args": {}}))
    original = (COMPAT / "test_pipeline.yaml").read_text()
    assert "https://httpbin.org/get" in original
    copy = tmp_path / "test_pipeline.yaml"
    copy.write_text(original.replace("https://httpbin.org/get", loopback.url("/get")))

    (spec,) = load_file(copy, real_runner.registry)
    record = real_runner.run(spec)
    assert record.status == "success", record.error
    assert [s.step_name for s in record.step_records()] == ["Test API Call", "Generate HTML Report"]
    assert record.context["api_result"]["status_code"] == 200
    assert record.context["api_result"]["body"]["url"] == "local"
    assert "html_report" in record.context
    assert len(loopback.requests) == 1


def _fake_openai(loopback):
    """``POST /v1/chat/completions``: replies with a numbered text that quotes the last user
    message, so the test can see each step's template expansion."""
    calls = []

    def chat(request):
        body = request["json"]
        calls.append({"body": body, "auth": request["headers"].get("Authorization")})
        last = body["messages"][-1]["content"]
        reply = f"reply {len(calls)} to: {last}"
        return 200, {
            "id": f"chatcmpl-{len(calls)}",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    loopback.route("POST", "/v1/chat/completions", chat)
    return calls


@needs_compat
def test_the_originals_llm_chain_runs_unchanged_against_a_local_openai_server(real_runner, loopback, monkeypatch):
    calls = _fake_openai(loopback)
    monkeypatch.setenv("OPENAI_BASE_URL", loopback.url("/v1"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test-0123456789")
    monkeypatch.delenv("OPENAI_MODEL", raising=False)

    record = real_runner.run(str(COMPAT / "llm_chain_example.yaml"))
    assert record.status == "success", record.error
    assert len(calls) == 3
    assert all(c["auth"] == "Bearer sk-local-test-0123456789" for c in calls)
    first = "reply 1 to: Write a brief explanation of quantum computing for beginners."
    assert calls[1]["body"]["messages"][1]["content"] == f"Please summarize: {first}"
    assert calls[2]["body"]["messages"][1]["content"] == f"Refine this summary: reply 2 to: Please summarize: {first}"
    assert calls[0]["body"]["max_tokens"] == 200 and calls[0]["body"]["temperature"] == 0.8

    saved = json.loads(Path("output/llm_chain_result.json").read_text())
    assert saved["content"].startswith("reply 3 to: Refine this summary:")

    # The key never lands in the record or the log.
    stored = real_runner.backend.get_execution(record.id)
    assert "sk-local-test-0123456789" not in json.dumps(stored.steps) + json.dumps(stored.context)
    assert "sk-local-test-0123456789" not in real_runner.log_path(record.id).read_text()
    assert stored.step_records()[0].input["api_key"] == "***"


@needs_compat
def test_the_llm_chain_without_a_key_fails_naming_the_variable(real_runner, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    record = real_runner.run(str(COMPAT / "llm_chain_example.yaml"))
    assert record.status == "failed"
    assert record.error == (
        "step 1 (Generate Initial Content) failed: environment variable OPENAI_API_KEY is not set "
        "(use ${OPENAI_API_KEY:-default} for a default)"
    )


# -- the examples in pipelines/ ------------------------------------------------------------------


def test_the_examples_validate(registry):
    from mimir_tui.pipelines.spec import validate_files

    reports = validate_files([REPO / "pipelines"], registry)
    assert [str(i) for r in reports for i in r.issues] == []
    names = {s.name for r in reports for s in r.pipelines}
    assert {"api-to-json", "orders-by-region", "orders-report"} <= names


def test_the_file_transform_and_report_examples_run_offline(real_runner):
    totals = real_runner.run(str(REPO / "pipelines" / "file-transform.yaml"))
    assert totals.status == "success", totals.error
    written = json.loads(Path("output/orders-by-region.json").read_text())
    assert {row["region"]: row["sum"] for row in written["totals"]}["west"] == pytest.approx(3605.6)
    assert all(order["status"] == "shipped" for order in written["shipped_orders"])

    report = real_runner.run(str(REPO / "pipelines" / "report.yaml"))
    assert report.status == "success", report.error
    html = Path("output/orders-report.html").read_text()
    assert "<title>Orders report</title>" in html and "Umbrella" in html


def test_the_api_example_runs_against_a_local_server(real_runner, loopback, monkeypatch):
    todos = [{"id": i, "userId": 1, "title": f"todo {i}", "completed": i % 2 == 0} for i in range(1, 8)]
    loopback.route("GET", "/todos", lambda req: (200, todos))
    monkeypatch.setenv("MIMIR_EXAMPLE_API_URL", loopback.url("/todos"))
    record = real_runner.run(str(REPO / "pipelines" / "api-to-json.yaml"))
    assert record.status == "success", record.error
    saved = json.loads(Path("output/open-todos.json").read_text())
    assert saved == [{"id": i, "userId": 1, "title": f"todo {i}"} for i in (1, 3, 5, 7)]


def test_seed_demo_imports_the_examples_and_is_idempotent(store):
    from mimir_tui.demo import seed_demo

    seed_demo(store)
    counts = (len(store.list_pipelines()), len(store.list_jobs()), len(store.list_executions(limit=1000)))
    seed_demo(store)
    assert (len(store.list_pipelines()), len(store.list_jobs()), len(store.list_executions(limit=1000))) == counts
    names = {p.name for p in store.list_pipelines()}
    assert {"api-to-json", "orders-by-region", "orders-report"} <= names
    assert {j.pipeline for j in store.list_jobs()} <= names
