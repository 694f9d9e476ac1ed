"""Output.json: write, aliases, pretty, append (array and JSON Lines), mkdir, atomicity."""

from __future__ import annotations

import json
import os
import stat

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.output_json import JsonOutput
from mimir_tui.pipelines.registry import PluginError

CONTEXT = {"refined_summary": {"content": "Quantum computers use qubits.", "model": "m"}, "rows": [{"a": 1}, {"a": 2}]}


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


async def test_write_input_with_the_originals_aliases(run_plugin, tmp_path):
    for key in ("file", "file_path", "filename", "path"):
        target = tmp_path / f"{key}.json"
        result = await run_plugin(JsonOutput, {key: str(target), "input": "refined_summary"}, CONTEXT)
        assert json.loads(target.read_text()) == CONTEXT["refined_summary"]
        assert result == {"file": str(target), "bytes": target.stat().st_size, "records": 1}
    assert leftovers(tmp_path) == []


async def test_the_llm_chain_example_step(run_plugin):
    # As in the original's llm_chain_example.yaml: a relative path under a folder that does not exist.
    result = await run_plugin(
        JsonOutput, {"file_path": "./output/llm_chain_result.json", "input": "refined_summary", "pretty": True}, CONTEXT
    )
    written = os.path.join(os.getcwd(), "output", "llm_chain_result.json")
    assert result["file"] == written
    with open(written, encoding="utf-8") as handle:
        text = handle.read()
    assert text.startswith('{\n  "content"')
    assert json.loads(text)["content"] == "Quantum computers use qubits."


async def test_inline_data_indent_and_unicode(run_plugin, tmp_path):
    target = tmp_path / "d.json"
    result = await run_plugin(
        JsonOutput, {"file": str(target), "data": [{"name": "Ægir"}, {"name": "Rán"}], "indent": 4}
    )
    assert result["records"] == 2
    assert '    {\n        "name": "Ægir"' in target.read_text(encoding="utf-8")
    await run_plugin(JsonOutput, {"file": str(target), "data": {"b": 1, "a": 2}, "sort_keys": True})
    assert target.read_text() == '{"a": 2, "b": 1}\n'


async def test_whole_context_by_default_and_dotted_input(run_plugin, tmp_path):
    target = tmp_path / "all.json"
    await run_plugin(JsonOutput, {"file": str(target)}, CONTEXT)
    assert json.loads(target.read_text()) == CONTEXT
    await run_plugin(JsonOutput, {"file": str(target), "input": "refined_summary.content"}, CONTEXT)
    assert json.loads(target.read_text()) == "Quantum computers use qubits."
    with pytest.raises(PluginError, match="input 'nope': no such key"):
        await run_plugin(JsonOutput, {"file": str(target), "input": "nope"}, CONTEXT)


async def test_append_keeps_a_valid_json_array(run_plugin, tmp_path):
    target = tmp_path / "history.json"
    r1 = await run_plugin(JsonOutput, {"file": str(target), "input": "rows", "append": True}, CONTEXT)
    assert r1["records"] == 2 and r1["total_records"] == 2 and r1["appended"] is True
    r2 = await run_plugin(JsonOutput, {"file": str(target), "data": {"run": 2}, "append": True, "pretty": True})
    assert r2["total_records"] == 3
    assert json.loads(target.read_text()) == [{"a": 1}, {"a": 2}, {"run": 2}]
    single = tmp_path / "single.json"
    single.write_text('{"old": true}')
    await run_plugin(JsonOutput, {"file": str(single), "data": {"new": True}, "append": True})
    assert json.loads(single.read_text()) == [{"old": True}, {"new": True}]
    assert leftovers(tmp_path) == []


async def test_append_refuses_to_destroy_a_broken_file(run_plugin, tmp_path):
    target = tmp_path / "broken.json"
    target.write_text("[1, 2")
    with pytest.raises(PluginError, match=r"cannot append to .*broken.json: it is not valid JSON"):
        await run_plugin(JsonOutput, {"file": str(target), "data": [3], "append": True})
    assert target.read_text() == "[1, 2"


async def test_json_lines(run_plugin, tmp_path):
    target = tmp_path / "events.jsonl"
    await run_plugin(JsonOutput, {"file": str(target), "input": "rows", "lines": True}, CONTEXT)
    assert target.read_text() == '{"a": 1}\n{"a": 2}\n'
    target.write_text(target.read_text().rstrip("\n"))  # a file without a final newline
    result = await run_plugin(JsonOutput, {"file": str(target), "data": {"a": 3}, "lines": True, "append": True})
    assert target.read_text() == '{"a": 1}\n{"a": 2}\n{"a": 3}\n'
    assert result["bytes"] == target.stat().st_size and result["records"] == 1


async def test_mkdir(run_plugin, tmp_path):
    deep = tmp_path / "a" / "b" / "out.json"
    await run_plugin(JsonOutput, {"file": str(deep), "data": 1})
    assert deep.read_text() == "1\n"
    with pytest.raises(PluginError, match="does not exist .*mkdir: true"):
        await run_plugin(JsonOutput, {"file": str(tmp_path / "x" / "out.json"), "data": 1, "mkdir": False})


async def test_atomic_replace_keeps_mode_and_leaves_nothing_on_failure(run_plugin, tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    target.write_text('{"old": 1}')
    os.chmod(target, 0o600)
    await run_plugin(JsonOutput, {"file": str(target), "data": {"new": 1}})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def crash(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        await run_plugin(JsonOutput, {"file": str(target), "data": {"newer": 1}})
    assert json.loads(target.read_text()) == {"new": 1}  # the old content, whole
    assert leftovers(tmp_path) == []


async def test_unserialisable_values_are_written_as_text(run_plugin, tmp_path):
    import datetime

    target = tmp_path / "t.json"
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    await run_plugin(JsonOutput, {"file": str(target), "data": {"when": when, "tags": {"x"}}})
    assert json.loads(target.read_text()) == {"when": "2025-01-02T03:04:05+00:00", "tags": ["x"]}


def test_config_errors():
    with pytest.raises(ValidationError, match="file"):
        JsonOutput.Config.model_validate({"input": "x"})
    with pytest.raises(ValidationError, match="'input' or 'data', not both"):
        JsonOutput.Config.model_validate({"file": "a", "input": "x", "data": 1})
    with pytest.raises(ValidationError, match="Extra inputs"):
        JsonOutput.Config.model_validate({"file": "a", "file_path": "b"})
