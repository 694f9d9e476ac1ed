"""Built-in plugins. Each module defines Plugin subclasses; list them here.

Adding one is a module with one Plugin subclass and one line in :data:`BUILTINS`. A built-in's
module is imported when a pipeline first names it (``PluginRegistry.get``), not with the
registry: the thirteen cost every instance 2 MiB, most of it pydantic's validators of their
configs, and an instance runs a few of them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..registry import Plugin

#: Each built-in's key and where its class is: ``module:Class`` in this package.
BUILTINS: dict[str, str] = {
    "Input.api": "input_api:ApiInput",
    "Input.rss": "input_rss:RssInput",
    "Input.file": "input_file:FileInput",
    "Data_Processing.transform": "transform:Transform",
    "Data_Processing.delay": "delay:Delay",
    "Output.json": "output_json:JsonOutput",
    "Output.html": "output_html:HtmlOutput",
    "System.command": "system_command:Command",
    "AIModels.openai": "ai_openai:OpenAIChat",
    "AIModels.mock": "ai_mock:MockChat",
    "Storage.vector": "storage_vector:VectorStorage",
    "Mimir.retention": "mimir_ops:Retention",
    "Mimir.backup": "mimir_backup:Backup",  # the scheduled backups' step
}


def load_builtin(key: str) -> type[Plugin]:
    """The class of built-in ``key`` (its module imported now if it was not)."""
    module, _, name = BUILTINS[key].partition(":")
    plugin: type[Plugin] = getattr(import_module(f"{__name__}.{module}"), name)
    return plugin


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_PLUGINS":  # every built-in class, each module imported
        return [load_builtin(key) for key in BUILTINS]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BUILTINS", "BUILTIN_PLUGINS", "load_builtin"]
