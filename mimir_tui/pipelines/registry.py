"""Plugins: classes with a type, a name, a config model and an ``execute`` method.

A plugin is addressed as ``"Type.Name"`` (``Input.api``), as the original's pipeline files do.
Built-ins live in :mod:`mimir_tui.pipelines.plugins`; more come from Python files in
``plugins.directories`` and from the entry-point group ``mimir_tui.plugins``. Adding one is a
class and one ``register`` call::

    class Shout(Plugin):
        type = "Data_Processing"
        name = "shout"

        class Config(PluginConfig):
            text: str

        def execute(self, config, ctx):
            return {"text": config.text.upper()}
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

from pydantic import BaseModel, ConfigDict

from ..errors import BadInput, MimirError
from . import templates

log = logging.getLogger("mimir.plugins")

ENTRY_POINT_GROUP = "mimir_tui.plugins"
#: ``Mimir``: Mimir's own operations (``Mimir.retention``, ``Mimir.backup``), run by its system jobs
#: (mimir_tui.ops.scheduled).
PLUGIN_TYPES = ("Input", "Data_Processing", "AIModels", "Output", "Storage", "System", "Mimir")


class PluginError(MimirError):
    """A step failed for a reason its plugin explains (bad response, missing file, non-zero
    exit...). The message is one line meant for the operator and never holds a secret."""


class StepCancelled(PluginError):
    """The step stopped early because ``ctx.cancel_event`` was set."""


class StepTimedOut(PluginError):
    """The step (or the program / request it waited for) ran out of time."""


class PluginConfig(BaseModel):
    """Base of every plugin's config schema: unknown keys are errors; the original's other
    spellings of a key are declared as aliases (``Field(validation_alias=AliasChoices(...))``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)


#: A plugin's config model. Spelled through an alias because in ``Plugin``'s body ``type`` is the
#: plugin's family (a class attribute), not the builtin.
ConfigModel: TypeAlias = type[PluginConfig]


@dataclass
class StepContext:
    """What a running step may use besides its config."""

    execution_id: str
    pipeline: str
    step_name: str
    context: dict[str, Any]  # earlier steps' outputs by key (read it; do not mutate)
    settings: Any = None  # mimir_tui.config.Settings
    cancel_event: threading.Event = field(default_factory=threading.Event)
    timeout: float | None = None  # seconds this step may take, if limited
    # The folder relative paths resolve against (policy.working_folder): resolve_path(p, ctx.base_dir)
    base_dir: Path | None = None
    log: Callable[[str, str], None] = lambda level, message: None  # (level, message) -> execution log
    backend: Any = None  # the runner's PersistenceBackend (Mimir's own operations use it)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class Plugin:
    """Base class. ``execute`` may be a plain or an ``async`` method; what it returns becomes the
    step's output, stored in the pipeline context under the step's ``output`` key. Raising fails
    the step (and so the run), never the process."""

    type: ClassVar[str] = ""
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[ConfigModel] = PluginConfig

    @classmethod
    def key(cls) -> str:
        return f"{cls.type}.{cls.name}"

    @classmethod
    def is_async(cls) -> bool:
        return inspect.iscoroutinefunction(cls.execute)

    @classmethod
    def config_fields(cls) -> list[dict[str, Any]]:
        """The config schema as rows ``{name, aliases, type, required, default, description}``,
        for help screens and documentation."""
        rows: list[dict[str, Any]] = []
        for name, info in cls.Config.model_fields.items():
            aliases: list[str] = []
            alias = info.validation_alias
            if isinstance(alias, str):
                aliases = [alias]
            elif alias is not None and hasattr(alias, "choices"):
                aliases = [c for c in alias.choices if isinstance(c, str)]
            elif info.alias:
                aliases = [info.alias]
            shown = aliases[0] if aliases else name
            rows.append(
                {
                    "name": shown,
                    "aliases": [a for a in aliases if a != shown],
                    "type": _type_name(info.annotation),
                    "required": info.is_required(),
                    "default": None if info.is_required() else info.get_default(call_default_factory=True),
                    "description": info.description or "",
                }
            )
        return rows

    @classmethod
    def expand_config(cls, config: Any, scope: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Any:
        """The step's config with its templates filled in from ``scope`` (earlier outputs and
        ``run``) and ``environ``, as the runner calls it before validating the config. A plugin
        that hands text to an interpreter overrides it to quote what the templates bring in
        (``System.command`` with ``shell: true``)."""
        return templates.expand(config, scope, environ)

    @classmethod
    def config_warnings(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``[(key, message)]``: risks in a step's config (as written) that are not errors;
        ``pipelines validate`` prints them as warnings."""
        return []

    def execute(self, config: Any, ctx: StepContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class PluginRegistry:
    def __init__(self) -> None:
        self._plugins: dict[str, type[Plugin]] = {}
        self._lower: dict[str, str] = {}
        # Registered by key, their class loaded at the first get (the built-ins: see plugins/).
        self._lazy: dict[str, Callable[[], type[Plugin]]] = {}

    def register_lazy(self, key: str, load: Callable[[], type[Plugin]]) -> None:
        """Register plugin ``key`` whose class ``load()`` returns when a pipeline first names it."""
        self._lazy[key] = load
        self._lower[key.lower()] = key

    def register(self, plugin: type[Plugin], *, replace: bool = False) -> type[Plugin]:
        if not (isinstance(plugin, type) and issubclass(plugin, Plugin)) or not plugin.type or not plugin.name:
            raise BadInput(f"{plugin!r} is not a plugin class with a type and a name")
        key = plugin.key()
        if key in self._lazy:
            if replace:
                del self._lazy[key]
            else:
                self._load(key, self._lazy[key])
        if key in self._plugins and not replace and self._plugins[key] is not plugin:
            raise BadInput(
                f"plugin {key} is registered twice ({self._plugins[key].__module__} and {plugin.__module__})"
            )
        self._plugins[key] = plugin
        self._lower[key.lower()] = key
        return plugin

    def get(self, key: str) -> type[Plugin] | None:
        """Exact ``Type.Name``, or the same ignoring case (``input.API``)."""
        if not isinstance(key, str):
            return None
        if key not in self._plugins and key not in self._lazy:
            key = self._lower.get(key.lower(), key)
        found = self._plugins.get(key)
        if found is None:
            load = self._lazy.get(key)
            # None: not a plugin, or another thread loaded it just now (in _plugins before it
            # left _lazy)
            found = self._load(key, load) if load is not None else self._plugins.get(key)
        return found

    def _load(self, key: str, load: Callable[[], type[Plugin]]) -> type[Plugin]:
        plugin = load()
        if plugin.key() != key:
            raise BadInput(f"plugin {key} loaded as {plugin.key()} ({plugin.__module__})")
        self._plugins[key] = plugin  # before the lazy entry goes: a get meanwhile finds one of them
        self._lazy.pop(key, None)
        return plugin

    def names(self) -> list[str]:
        return sorted({*self._plugins, *self._lazy})

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def load_directory(self, directory: str | Path) -> list[str]:
        """Import every ``*.py`` in ``directory`` and register the Plugin subclasses it defines
        (or those listed in a module-level ``PLUGINS``). A module that fails to import is logged
        with its path and skipped."""
        folder = Path(directory)
        added: list[str] = []
        if not folder.is_dir():
            return added
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            module_name = f"mimir_user_plugins.{path.stem}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except Exception as exc:  # a broken user file must not stop Mimir
                log.error("plugin file %s failed to load: %s", path, exc)
                continue
            for plugin in _plugins_in(module):
                self.register(plugin, replace=True)
                added.append(plugin.key())
        return added

    def load_entry_points(self) -> list[str]:
        added: list[str] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as exc:
                log.error("plugin entry point %s failed to load: %s", ep.name, exc)
                continue
            candidates = _plugins_in(obj) if inspect.ismodule(obj) else [obj]
            for plugin in candidates:
                self.register(plugin, replace=True)
                added.append(plugin.key())
        return added


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    return text.replace("typing.", "").replace("pydantic.types.", "").replace("NoneType", "None")


def _plugins_in(module: Any) -> list[type[Plugin]]:
    listed = getattr(module, "PLUGINS", None)
    if listed is not None:
        return list(listed)
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.type
        and obj.name
        and obj.__module__ == module.__name__
    ]


def default_registry(settings: Any = None) -> PluginRegistry:
    """Built-ins, then entry points, then the configured plugin directories."""
    from .plugins import BUILTINS, load_builtin

    registry = PluginRegistry()
    for key in BUILTINS:
        registry.register_lazy(key, functools.partial(load_builtin, key))
    registry.load_entry_points()
    if settings is not None:
        for directory in settings.plugins.directories:
            registry.load_directory(directory)
    return registry
