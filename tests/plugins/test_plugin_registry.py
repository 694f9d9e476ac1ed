"""The plugin registry: built-ins, user plugin files, entry points, lookups."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from mimir_tui.config import load_settings
from mimir_tui.errors import BadInput
from mimir_tui.pipelines import registry as registry_module
from mimir_tui.pipelines.plugins import BUILTIN_PLUGINS, BUILTINS
from mimir_tui.pipelines.registry import Plugin, PluginConfig, PluginRegistry, default_registry

EXPECTED = {
    "Storage.vector",
    "Input.api",
    "Input.rss",
    "Input.file",
    "Data_Processing.transform",
    "Data_Processing.delay",
    "Output.json",
    "Output.html",
    "System.command",
    "AIModels.openai",
    "AIModels.mock",
    "Mimir.retention",
    "Mimir.backup",
}

USER_PLUGIN = textwrap.dedent("""
    from mimir_tui.pipelines.registry import Plugin, PluginConfig

    class Shout(Plugin):
        type = "Data_Processing"
        name = "shout"
        description = "Upper-case a text."

        class Config(PluginConfig):
            text: str

        def execute(self, config, ctx):
            return {"text": config.text.upper()}

    class _Helper:  # not a plugin
        pass
""")


def test_builtins_are_complete_and_well_formed():
    keys = {p.key() for p in BUILTIN_PLUGINS}
    assert keys == EXPECTED
    assert [p.key() for p in BUILTIN_PLUGINS] == list(BUILTINS)  # each listed under its own key
    for plugin in BUILTIN_PLUGINS:
        assert plugin.description, plugin.key()
        assert issubclass(plugin.Config, PluginConfig) and plugin.Config is not PluginConfig, plugin.key()
        assert plugin.Config.model_config.get("extra") == "forbid", plugin.key()
        fields = plugin.config_fields()
        assert fields and all(
            {"name", "aliases", "type", "required", "default", "description"} <= set(f) for f in fields
        )


def test_config_fields_show_aliases_and_defaults():
    from mimir_tui.pipelines.plugins.output_json import JsonOutput

    rows = {row["name"]: row for row in JsonOutput.config_fields()}
    assert rows["file"]["aliases"] == ["file_path", "filename", "path"] and rows["file"]["required"] is True
    assert rows["pretty"]["default"] is False and rows["mkdir"]["default"] is True


def test_default_registry_lookups():
    registry = default_registry()
    assert set(registry.names()) >= EXPECTED
    assert registry.get("Input.api").key() == "Input.api"
    assert registry.get("input.API") is registry.get("Input.api")
    assert registry.get("aimodels.OPENAI").key() == "AIModels.openai"
    assert registry.get("Input.nope") is None and registry.get("") is None
    assert "output.json" in registry and "storage.VECTOR" in registry and "Storage.kv" not in registry


def test_a_builtin_is_imported_when_a_pipeline_first_names_it():
    """The registry lists every built-in without importing one (2 MiB for the thirteen); a
    lookup imports that plugin's module alone, in a fresh interpreter."""
    probe = textwrap.dedent(f"""
        import sys
        from mimir_tui.pipelines.registry import default_registry

        def loaded():
            return sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("mimir_tui.pipelines.plugins."))

        registry = default_registry()
        assert set(registry.names()) >= set({sorted(EXPECTED)!r}), registry.names()
        print(loaded())
        assert registry.get("output.JSON").key() == "Output.json"
        print(loaded())
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "['common', 'output_json']"]


def test_a_builtin_can_be_replaced_before_it_is_loaded():
    """An entry point or a plugin file that registers a built-in's key replaces it (its
    module never imported); registering a different class under it without ``replace`` is
    refused, as for any plugin."""

    class MyJson(Plugin):
        type = "Output"
        name = "json"

    registry = default_registry()
    registry.register(MyJson, replace=True)
    assert registry.get("Output.json") is MyJson and registry.names().count("Output.json") == 1
    registry = default_registry()
    with pytest.raises(BadInput, match="registered twice"):
        registry.register(MyJson)
    assert registry.get("Output.json") is BUILTIN_PLUGINS[list(BUILTINS).index("Output.json")]


def test_register_rules():
    registry = PluginRegistry()

    class One(Plugin):
        type = "Output"
        name = "one"

    class Other(Plugin):
        type = "Output"
        name = "one"

    registry.register(One)
    registry.register(One)  # the same class again is fine
    with pytest.raises(BadInput, match="registered twice"):
        registry.register(Other)
    registry.register(Other, replace=True)
    assert registry.get("output.one") is Other
    with pytest.raises(BadInput, match="not a plugin class"):
        registry.register(object)  # type: ignore[arg-type]

    class Nameless(Plugin):
        type = "Output"

    with pytest.raises(BadInput):
        registry.register(Nameless)


def test_adding_a_plugin_is_one_class_and_one_register_call():
    class KeyValue(Plugin):
        type = "Storage"
        name = "kv"
        description = "stand-in"

        class Config(PluginConfig):
            operation: str

        def execute(self, config, ctx):
            return {"operation": config.operation}

    registry = default_registry()
    registry.register(KeyValue)
    assert registry.get("storage.kv") is KeyValue


def test_load_directory_with_a_user_plugin_and_a_broken_file(tmp_path, caplog):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "shout.py").write_text(USER_PLUGIN)
    (folder / "broken.py").write_text("import this_module_does_not_exist_xyz\n")
    (folder / "syntax.py").write_text("def oops(:\n")
    (folder / "_private.py").write_text("raise SystemExit('never imported')\n")
    (folder / "notes.txt").write_text("ignored")
    registry = PluginRegistry()
    with caplog.at_level(logging.ERROR, logger="mimir.plugins"):
        added = registry.load_directory(folder)
    assert added == ["Data_Processing.shout"]
    assert registry.get("data_processing.SHOUT") is not None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("broken.py" in m and "this_module_does_not_exist_xyz" in m for m in errors)
    assert any("syntax.py" in m for m in errors)
    assert registry.load_directory(tmp_path / "missing") == []


async def test_a_user_plugin_runs(tmp_path, run_plugin):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "shout.py").write_text(USER_PLUGIN)
    settings = load_settings(use_search=False, environ={})
    settings.plugins.directories = [str(folder)]
    registry = default_registry(settings)
    shout = registry.get("Data_Processing.shout")
    assert await run_plugin(shout, {"text": "hi"}) == {"text": "HI"}
    assert set(registry.names()) >= EXPECTED


def test_entry_points(monkeypatch, caplog):
    class FromPackage(Plugin):
        type = "Output"
        name = "from_package"

    class EP:
        def __init__(self, name, obj=None, error=None):
            self.name, self.obj, self.error = name, obj, error

        def load(self):
            if self.error:
                raise self.error
            return self.obj

    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: [EP("good", FromPackage), EP("bad", error=ImportError("nope"))]
    )
    registry = PluginRegistry()
    with caplog.at_level(logging.ERROR, logger="mimir.plugins"):
        assert registry.load_entry_points() == ["Output.from_package"]
    assert any("bad" in r.getMessage() for r in caplog.records)
