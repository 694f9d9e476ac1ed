"""Output.html: a readable, escaped, self-contained report."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from mimir_tui.pipelines.plugins.output_html import HtmlOutput
from mimir_tui.pipelines.registry import PluginError

CONTEXT = {
    "api_result": {
        "url": "http://127.0.0.1:8000/get",
        "status_code": 200,
        "headers": {"content-type": "application/json"},
        "body": {"args": {}, "origin": "127.0.0.1"},
        "timestamp": "2025-06-01T00:00:00+00:00",
    },
    "records": [
        {"name": "<script>alert('x')</script>", "stars": 3},
        {"name": "odin & thor", "stars": 5, "extra": "only here"},
    ],
    "summary": "Line one\nLine <two>",
    "tags": ["a", "b"],
    "creds": {"api_key": "sk-secret-123", "user": "ada"},
}


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> Collector:
    collector = Collector()
    collector.feed(text)
    return collector


async def test_report_of_the_whole_context(run_plugin):
    result = await run_plugin(HtmlOutput, {"title": "Test Report"}, CONTEXT)
    html = result["html"]
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Test Report</title>" in html and "<h1>Test Report</h1>" in html
    assert result["file"] is None and result["bytes"] == len(html.encode())
    assert result["sections"] == list(CONTEXT)
    # Data is escaped: no script element ever appears, its text does.
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "odin &amp; thor" in html
    collector = parse(html)
    assert "script" not in collector.tags
    assert "<script>alert('x')</script>" in "".join(collector.text)
    # Structure: records as a table with a column per key, dicts as key/value tables, text in <pre>.
    assert re.search(
        r'<table class="records"><thead><tr><th scope="col">name</th>'
        r'<th scope="col">stars</th><th scope="col">extra</th>',
        html,
    )
    assert '<table class="kv">' in html and '<th scope="row">status_code</th>' in html
    assert "<pre>Line one\nLine &lt;two&gt;</pre>" in html
    assert '<ol class="items"><li>a</li><li>b</li></ol>' in html
    assert '<a href="http://127.0.0.1:8000/get"' in html
    # Secrets are not shown.
    assert "sk-secret-123" not in html and "ada" in html
    # Metadata of the run.
    assert "exec-test" in html and "test pipeline" in html


async def test_chosen_inputs_and_file(run_plugin, tmp_path):
    target = tmp_path / "reports" / "r.html"
    result = await run_plugin(
        HtmlOutput, {"title": "Repos", "inputs": ["records", "api_result.body"], "filename": str(target)}, CONTEXT
    )
    assert result["file"] == str(target)
    text = target.read_text(encoding="utf-8")
    assert result["html"] == text and result["bytes"] == len(text.encode())
    assert result["sections"] == ["records", "api_result.body"]
    assert "<h2>records</h2>" in text and "<h2>api_result.body</h2>" in text
    assert "Line one" not in text
    assert [p.name for p in target.parent.iterdir()] == ["r.html"]


async def test_single_input_string_and_inline_data(run_plugin):
    result = await run_plugin(HtmlOutput, {"input": "summary", "data": {"note": "<b>hi</b>"}}, CONTEXT)
    assert result["sections"] == ["summary", "data"]
    assert "&lt;b&gt;hi&lt;/b&gt;" in result["html"]


async def test_title_is_escaped_and_long_results_truncated(run_plugin, tmp_path):
    result = await run_plugin(
        HtmlOutput,
        {"title": "<img src=x onerror=alert(1)>", "file": str(tmp_path / "r.html"), "result_chars": 100},
        {"big": ["x" * 50] * 100},
    )
    assert len(result["html"]) == 100 and result["truncated"] is True
    full = (tmp_path / "r.html").read_text()
    assert "<img" not in full and "&lt;img src=x onerror=alert(1)&gt;" in full


async def test_max_rows_and_depth(run_plugin):
    result = await run_plugin(
        HtmlOutput,
        {"inputs": ["many", "deep"], "max_rows": 3, "max_depth": 2},
        {"many": list(range(10)), "deep": {"a": {"b": {"c": {"d": 1}}}}},
    )
    assert "… 7 more not shown" in result["html"]
    assert "<pre>{\n  &quot;c&quot;" in result["html"]


async def test_empty_context_and_unknown_input(run_plugin):
    result = await run_plugin(HtmlOutput, {}, {})
    assert "Nothing to show" in result["html"]
    with pytest.raises(PluginError, match="input 'missing'"):
        await run_plugin(HtmlOutput, {"inputs": ["missing"]}, CONTEXT)


async def test_an_earlier_reports_html_is_not_repeated(run_plugin):
    first = await run_plugin(HtmlOutput, {"title": "First"}, {"x": 1})
    second = await run_plugin(HtmlOutput, {"title": "Second"}, {"x": 1, "first_report": first})
    assert "&lt;!DOCTYPE" not in second["html"]
    assert "<h2>first_report</h2>" in second["html"]
