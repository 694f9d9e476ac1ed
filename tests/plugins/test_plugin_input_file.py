"""Input.file on real files of each format."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.input_file import FileInput
from mimir_tui.pipelines.registry import PluginError


async def test_text(run_plugin, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("línea uno\nline two\n", encoding="utf-8")
    result = await run_plugin(FileInput, {"path": str(path)})
    assert result == {
        "path": str(path),
        "format": "text",
        "bytes": len("línea uno\nline two\n".encode()),
        "data": "línea uno\nline two\n",
    }


async def test_json_and_aliases(run_plugin, tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"items": [1, 2]}))
    for key in ("path", "file", "file_path", "filename"):
        result = await run_plugin(FileInput, {key: str(path)})
        assert result["format"] == "json" and result["data"] == {"items": [1, 2]}


async def test_relative_path_is_from_the_working_directory(run_plugin):
    with open("rel.json", "w") as handle:
        handle.write("[1]")
    result = await run_plugin(FileInput, {"path": "rel.json"})
    assert result["data"] == [1]


async def test_yaml(run_plugin, tmp_path):
    path = tmp_path / "conf.yml"
    path.write_text("name: mimir\nsteps:\n  - a\n  - b\n")
    result = await run_plugin(FileInput, {"path": str(path)})
    assert result["format"] == "yaml"
    assert result["data"] == {"name": "mimir", "steps": ["a", "b"]}


async def test_csv_rows_become_dicts(run_plugin, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes('\ufeffname,city,age\r\nAda,"London, UK",36\r\nLinus,Helsinki,28\r\n'.encode("utf-8"))
    result = await run_plugin(FileInput, {"path": str(path)})
    assert result["format"] == "csv"
    assert result["data"] == [
        {"name": "Ada", "city": "London, UK", "age": "36"},
        {"name": "Linus", "city": "Helsinki", "age": "28"},
    ]


async def test_csv_delimiter_tsv_and_no_header(run_plugin, tmp_path):
    semi = tmp_path / "semi.txt"
    semi.write_text("a;b\n1;2\n")
    result = await run_plugin(FileInput, {"path": str(semi), "format": "csv", "delimiter": ";"})
    assert result["data"] == [{"a": "1", "b": "2"}]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1\t2\n")
    assert (await run_plugin(FileInput, {"path": str(tsv)}))["data"] == [{"a": "1", "b": "2"}]
    result = await run_plugin(FileInput, {"path": str(semi), "format": "csv", "delimiter": ";", "header": False})
    assert result["data"] == [["a", "b"], ["1", "2"]]


async def test_jsonl_and_forced_format(run_plugin, tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert (await run_plugin(FileInput, {"path": str(path)}))["data"] == [{"a": 1}, {"a": 2}]
    odd = tmp_path / "data.out"
    odd.write_text('{"x": true}')
    assert (await run_plugin(FileInput, {"path": str(odd)}))["data"] == '{"x": true}'
    assert (await run_plugin(FileInput, {"path": str(odd), "format": "JSON"}))["data"] == {"x": True}


async def test_encoding(run_plugin, tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    with pytest.raises(PluginError, match="not valid utf-8.*encoding"):
        await run_plugin(FileInput, {"path": str(path)})
    assert (await run_plugin(FileInput, {"path": str(path), "encoding": "latin-1"}))["data"] == "café"


async def test_errors_name_the_file_and_position(run_plugin, tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        await run_plugin(FileInput, {"path": str(tmp_path / "nope.json")})
    with pytest.raises(PluginError, match="is a directory"):
        await run_plugin(FileInput, {"path": str(tmp_path)})
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(PluginError, match=r"bad.json:3:3: invalid JSON"):
        await run_plugin(FileInput, {"path": str(bad)})
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(PluginError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        await run_plugin(FileInput, {"path": str(bad_yaml)})
    big = tmp_path / "big.txt"
    big.write_text("x" * 100)
    with pytest.raises(PluginError, match="more than max_bytes"):
        await run_plugin(FileInput, {"path": str(big), "max_bytes": 10})


def test_config_errors():
    with pytest.raises(ValidationError, match="format"):
        FileInput.Config.model_validate({"path": "x", "format": "xml"})
    with pytest.raises(ValidationError, match="one character"):
        FileInput.Config.model_validate({"path": "x", "delimiter": ";;"})
    with pytest.raises(ValidationError):
        FileInput.Config.model_validate({})
