"""Pipeline definitions: the YAML format of the original Mimir, read unchanged, and validated
before anything runs.

A file holds one pipeline, a top-level ``pipelines:`` list of them, or several YAML documents.
A pipeline: ``name``, ``enabled`` (true), ``description``, ``steps``, ``timeout`` (seconds, ours).
A step: ``name``, ``plugin`` (``"Type.Name"``), ``config`` (the plugin's keys), ``output`` (the
context key its result is stored under), and ours: ``timeout``, ``continue_on_error``,
``description``. Keys the original's files carry that Mimir has no use for at pipeline level
(``expected_outputs``...) are ignored.

Every problem is a :class:`PipelineIssue` that prints as one line naming
``file:line``, the pipeline, the step and the key; :class:`PipelineError` (a ``BadInput``, exit 2)
carries them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from ..constants import NAME_LENGTH
from ..errors import BadInput
from ..inputs import shown, text_problem
from ..safeio import MAX_PIPELINE_FILE_BYTES, SafeLoader, UnsafeFile, read_capped
from . import templates
from .templates import RUN_KEY, TemplateError

YAML_SUFFIXES = (".yaml", ".yml")
PLUGIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_\-]*$")


# -- issues -------------------------------------------------------------------------------------


@dataclass
class PipelineIssue:
    """One problem with a pipeline definition."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    pipeline: str | None = None
    step: str | None = None
    key: str | None = None

    def where(self) -> str:
        if not self.file:
            return ""
        out = self.file
        if self.line:
            out += f":{self.line}"
            if self.column:
                out += f":{self.column}"
        return out

    def __str__(self) -> str:
        parts: list[str] = []
        if self.pipeline is not None:
            parts.append(f"pipeline {shown(self.pipeline)}")
        if self.step is not None:
            parts.append(f"step {shown(self.step)}")
        if self.key is not None:
            parts.append(f"key {shown(self.key)}")
        head = ", ".join(parts)
        where = self.where()
        text = f"{head}: {self.message}" if head else self.message
        return f"{where}: {text}" if where else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "pipeline": self.pipeline,
            "step": self.step,
            "key": self.key,
            "message": self.message,
            "text": str(self),
        }


class PipelineError(BadInput):
    """An invalid pipeline definition; ``issues`` lists every problem found (at least one)."""

    def __init__(self, issues: PipelineIssue | Sequence[PipelineIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [PipelineIssue(issues)]
        elif isinstance(issues, PipelineIssue):
            issues = [issues]
        self.issues: list[PipelineIssue] = list(issues)
        first = str(self.issues[0]) if self.issues else "invalid pipeline"
        more = len(self.issues) - 1
        super().__init__(first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""))


# -- YAML with line numbers ---------------------------------------------------------------------


class LineDict(dict):
    """A mapping from YAML that remembers where it and each of its keys stand (1-based lines)."""

    line: int | None = None
    column: int | None = None
    key_lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}


class LineList(list):
    """A sequence from YAML that remembers the line of each item."""

    line: int | None = None
    column: int | None = None
    item_lines: list[int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines = []


class _LineLoader(SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.column = node.start_mark.column + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {result.key_lines[key]})", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    result.line = node.start_mark.line + 1
    result.column = node.start_mark.column + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_documents(text: str, source: str) -> list[Any]:
    """Every YAML document in ``text``, with line numbers; a YAML error is a
    :class:`PipelineError` at ``source:line:column``."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_LineLoader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        message = f"invalid YAML: {problem}" + (f" ({context})" if context and context not in problem else "")
        raise PipelineError(
            PipelineIssue(
                message,
                file=source,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            )
        ) from None


def line_at(container: Any, path: Sequence[Any]) -> int | None:
    """The line of the deepest element of ``path`` found under ``container`` (LineDict/LineList)."""
    line = getattr(container, "line", None)
    node = container
    for part in path:
        if isinstance(node, LineDict):
            key = part if part in node else str(part) if str(part) in node else None
            if key is None:
                break
            line = node.key_lines.get(key, line)
            node = node[key]
        elif isinstance(node, LineList):
            try:
                index = int(part)
                node_next = node[index]
                line = node.item_lines[index]
            except (ValueError, TypeError, IndexError):
                break
            node = node_next
        else:
            break
    return line


# -- the models ---------------------------------------------------------------------------------

#: Validation context of a definition read back from the database: its names were checked when
#: it came in (rows saved before a check existed still load and run).
STORED = {"stored": True}


def _input_text(value: str | None, info: ValidationInfo, *, limit: int | None = None) -> str | None:
    """A name or text of a definition as given: no control characters (newlines and tabs in a
    description), at most ``limit`` characters (the database column's); ValueError if not."""
    if value is None or (info.context or {}).get("stored"):
        return value
    problem = text_problem(value, limit=limit, multiline=info.field_name == "description")
    if problem is not None:
        raise ValueError(f"{shown(value)} {problem}")
    return value


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    plugin: str
    config: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    continue_on_error: bool = False
    description: str = ""

    _raw: Any = PrivateAttr(default=None)

    @field_validator("name", "output", "description")
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _input_text(value, info)

    @field_validator("config", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("plugin")
    @classmethod
    def _plugin_name(cls, value: str) -> str:
        value = value.strip()
        if not PLUGIN_NAME.match(value):
            raise ValueError(f'plugin must be written "Type.Name" (like Input.api), got {value!r}')
        return value

    @field_validator("output")
    @classmethod
    def _output_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            return None
        if "." in value or "{" in value:
            raise ValueError(f"output must be a plain key (no dots or braces), got {value!r}")
        return value

    def line(self, *path: Any) -> int | None:
        """The source line of this step, or of ``path`` inside it (``"config", "url"``)."""
        return line_at(self._raw, path) if self._raw is not None else None


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    enabled: bool = True
    description: str = ""
    steps: list[StepSpec] = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0)

    _source: str | None = PrivateAttr(default=None)
    _raw: Any = PrivateAttr(default=None)

    @field_validator("description", mode="before")
    @classmethod
    def _none_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("name", "description")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str | None:
        return _input_text(value, info, limit=NAME_LENGTH if info.field_name == "name" else None)

    @property
    def source_path(self) -> str | None:
        return self._source

    def line(self, *path: Any) -> int | None:
        return line_at(self._raw, path) if self._raw is not None else None

    def to_config(self) -> dict[str, Any]:
        """The definition as plain JSON data (what ``pipelines.config`` holds), defaults left out."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["name"] = self.name
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_config(), ensure_ascii=False)

    def checksum(self) -> str:
        canonical = json.dumps(self.to_config(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def outputs(self) -> list[str]:
        return [s.output for s in self.steps if s.output]

    @classmethod
    def from_config(cls, data: str | Mapping[str, Any], *, source: str | None = None) -> PipelineSpec:
        """A spec from the JSON kept in the database (or a mapping)."""
        raw = json.loads(data) if isinstance(data, str) else data
        try:
            spec = cls.model_validate(raw, context=STORED)
        except ValidationError as exc:
            name = raw.get("name") if isinstance(raw, Mapping) else None
            raise PipelineError(_structure_issues(exc, raw, source, name)) from None
        spec._source = source
        return spec


# -- parsing ------------------------------------------------------------------------------------


def _loc_text(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _error_message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind in ("value_error", "assertion_error"):
        return msg
    given = error.get("input")
    shown = repr(given)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{msg} (got {shown})"


def _structure_issues(exc: ValidationError, raw: Any, source: str | None, name: str | None) -> list[PipelineIssue]:
    """Issues for a pipeline mapping that does not fit :class:`PipelineSpec`."""
    issues: list[PipelineIssue] = []
    steps_raw = raw.get("steps") if isinstance(raw, Mapping) else None
    for error in exc.errors():
        loc = list(error["loc"])
        step_name: str | None = None
        key = _loc_text(loc) or None
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            index = loc[1]
            step_raw = steps_raw[index] if isinstance(steps_raw, list) and index < len(steps_raw) else None
            if isinstance(step_raw, Mapping) and isinstance(step_raw.get("name"), str):
                step_name = step_raw["name"]
            else:
                step_name = f"#{index + 1}"
            key = _loc_text(loc[2:]) or None
        message = _error_message(error)
        if error["type"] == "too_short" and loc == ["steps"]:
            message = "has no steps"
        elif error["type"] == "missing" and loc == ["steps"]:
            message = "has no steps (the 'steps' key is missing)"
        elif error["type"] == "missing" and loc == ["name"]:
            message = "the pipeline has no name"
            key = "name"
        if error["type"] == "missing" and len(loc) >= 2:
            line = line_at(raw, loc[:-1])  # where the mapping that lacks the key starts
        else:
            line = line_at(raw, loc)
        issues.append(PipelineIssue(message, file=source, line=line, pipeline=name, step=step_name, key=key))
    return issues


def parse_documents(docs: Iterable[Any], source: str) -> tuple[list[PipelineSpec], list[PipelineIssue]]:
    """Pipelines from loaded YAML documents; structural problems as issues."""
    specs: list[PipelineSpec] = []
    issues: list[PipelineIssue] = []
    found_any = False
    for doc in docs:
        if isinstance(doc, Mapping) and "pipelines" in doc:
            items = doc["pipelines"]
            if not isinstance(items, list):
                issues.append(
                    PipelineIssue(
                        "'pipelines' must be a list of pipelines",
                        file=source,
                        line=line_at(doc, ["pipelines"]),
                        key="pipelines",
                    )
                )
                continue
            entries = [(item, line_at(items, [i])) for i, item in enumerate(items)]
        elif isinstance(doc, Mapping):
            entries = [(doc, getattr(doc, "line", None))]
        elif isinstance(doc, list):
            entries = [(item, line_at(doc, [i])) for i, item in enumerate(doc)]
        else:
            issues.append(
                PipelineIssue(
                    f"expected a pipeline (a mapping with name and steps) or a 'pipelines:' list, "
                    f"not {type(doc).__name__}",
                    file=source,
                    line=1,
                )
            )
            continue
        for item, line in entries:
            found_any = True
            if not isinstance(item, Mapping):
                issues.append(
                    PipelineIssue(
                        f"a pipeline must be a mapping with name and steps, not {type(item).__name__}",
                        file=source,
                        line=line,
                    )
                )
                continue
            name = item.get("name") if isinstance(item.get("name"), str) else None
            try:
                spec = PipelineSpec.model_validate(item)
            except ValidationError as exc:
                issues.extend(_structure_issues(exc, item, source, name))
                continue
            spec._source = source
            spec._raw = item
            steps_raw = item.get("steps")
            for index, step in enumerate(spec.steps):
                step._raw = steps_raw[index] if isinstance(steps_raw, list) else None
            specs.append(spec)
    if not found_any and not issues:
        issues.append(PipelineIssue("no pipeline in this file", file=source, line=1))
    return specs, issues


def parse_text(text: str, source: str = "<text>") -> tuple[list[PipelineSpec], list[PipelineIssue]]:
    try:
        docs = load_yaml_documents(text, source)
    except PipelineError as exc:
        return [], exc.issues
    return parse_documents(docs, source)


def read_file(
    path: str | Path, max_bytes: int = MAX_PIPELINE_FILE_BYTES
) -> tuple[list[PipelineSpec], list[PipelineIssue]]:
    """Parse a pipeline file (no plugin checks): its pipelines and its structural issues. A
    FIFO, a device or a file larger than ``max_bytes`` (``pipelines.max_file_bytes``) is an
    issue, not read."""
    path = Path(path)
    source = str(path)
    try:
        text = read_capped(path, max_bytes, "pipelines.max_file_bytes").decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [PipelineIssue(f"not UTF-8 text: {exc.reason}", file=source)]
    except UnsafeFile as exc:
        return [], [PipelineIssue(f"refused: the file {exc}", file=source)]
    except OSError as exc:
        return [], [PipelineIssue(f"cannot read: {exc.strerror or exc}", file=source)]
    return parse_text(text, source)


def load_file(path: str | Path, registry: Any = None, max_bytes: int = MAX_PIPELINE_FILE_BYTES) -> list[PipelineSpec]:
    """The pipelines of one file, validated (against ``registry`` if given); raises
    :class:`PipelineError` listing every problem."""
    specs, issues = read_file(path, max_bytes)
    if registry is not None:
        for spec in specs:
            issues += validate_pipeline(spec, registry)
        issues += duplicate_names(specs)
    if issues:
        raise PipelineError(issues)
    return specs


def pipeline_files(path: str | Path) -> list[Path]:
    """``path`` itself if a file, else the ``*.yaml``/``*.yml`` files in it (not hidden), sorted."""
    path = Path(path)
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in YAML_SUFFIXES and not p.name.startswith(".")
        )
    return [path]


# -- validation ---------------------------------------------------------------------------------


def duplicate_names(specs: Iterable[PipelineSpec]) -> list[PipelineIssue]:
    """Pipelines of the same name (within or across files): one issue per repeat."""
    seen: dict[str, PipelineSpec] = {}
    issues: list[PipelineIssue] = []
    for spec in specs:
        first = seen.get(spec.name)
        if first is None:
            seen[spec.name] = spec
            continue
        where = first.source_path or "?"
        if first.line():
            where += f":{first.line()}"
        issues.append(
            PipelineIssue(
                f"duplicate pipeline name (already defined at {where})",
                file=spec.source_path,
                line=spec.line(),
                pipeline=spec.name,
            )
        )
    return issues


def _walk_strings(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk_strings(v, path + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk_strings(v, path + (i,))


def _templated_along(config: Any, loc: Sequence[Any]) -> bool:
    """True if the value at ``loc`` in ``config``, or any value on the way to it, is templated."""
    node = config
    for part in loc:
        if isinstance(node, str):
            break
        if isinstance(node, Mapping):
            if part in node:
                node = node[part]
            elif str(part) in node:
                node = node[str(part)]
            else:
                return False
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        else:
            return False
        if isinstance(node, str) and templates.has_template(node):
            return True
    return templates.has_template(node) if isinstance(node, str) else False


def _templated_strings(config: Any) -> list[str]:
    return [s for _, s in _walk_strings(config) if templates.has_template(s)]


def config_keys(model: Any) -> list[str]:
    """The keys a config model accepts, aliases included, in declaration order."""
    keys: list[str] = []
    for name, info in getattr(model, "model_fields", {}).items():
        alias = info.validation_alias
        choices = (
            [alias] if isinstance(alias, str) else [c for c in getattr(alias, "choices", []) if isinstance(c, str)]
        )
        if info.alias and info.alias not in choices:
            choices.append(info.alias)
        for key in choices or [name]:
            if key not in keys:
                keys.append(key)
        if name not in keys and (not choices or getattr(model, "model_config", {}).get("populate_by_name")):
            keys.append(name)
    return keys


def check_config(plugin_cls: Any, config: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Static check of a step config against its plugin's ``Config``: ``[(loc, message)]``.

    Type errors on values that hold templates are skipped (they are known only at run time);
    unknown and missing keys are always reported."""
    model = getattr(plugin_cls, "Config", None)
    if model is None or not hasattr(model, "model_validate"):
        return []
    try:
        model.model_validate(dict(config))
    except ValidationError as exc:
        problems: list[tuple[tuple[Any, ...], str]] = []
        templated = None
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] not in ("missing", "extra_forbidden"):
                if loc and _templated_along(config, loc):
                    continue
                if not loc:
                    templated = templated if templated is not None else _templated_strings(config)
                    if any(t in str(error.get("msg", "")) or t in repr(error.get("input", "")) for t in templated):
                        continue
            message = _error_message(error)
            if error["type"] == "extra_forbidden" and len(loc) == 1:
                message += f" (known keys: {', '.join(config_keys(model)) or 'none'})"
            problems.append((loc, message))
        return problems
    except Exception as exc:  # a plugin's validator that raised something else
        return [((), f"config check failed: {type(exc).__name__}: {exc}")]
    return []


_CONTEXT_KEY_HINT = re.compile(r"\bcontext keys?\b", re.IGNORECASE)


def context_key_refs(plugin_cls: Any, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(config key, output name)]`` for config values that name context keys (``input:
    api_result.body``). A plugin marks such fields by listing them in a ``context_keys`` class
    attribute, or by a field description that says "context key"."""
    model = getattr(plugin_cls, "Config", None)
    fields = getattr(model, "model_fields", {})
    marked = set(getattr(plugin_cls, "context_keys", ()) or ())
    refs: list[tuple[str, str]] = []
    for name, info in fields.items():
        if name not in marked and not _CONTEXT_KEY_HINT.search(info.description or ""):
            continue
        alias = info.validation_alias
        keys = [alias] if isinstance(alias, str) else [c for c in getattr(alias, "choices", []) if isinstance(c, str)]
        for key in dict.fromkeys([*keys, name]):
            if key not in config:
                continue
            value = config[key]
            values = value if isinstance(value, list) else [value]
            for item in values:
                if not isinstance(item, str) or templates.has_template(item):
                    continue
                head = item.strip().lstrip(".").split(".")[0].split("[")[0]
                if head:
                    refs.append((key, head))
    return refs


def validate_pipeline(spec: PipelineSpec, registry: Any) -> list[PipelineIssue]:
    """Every problem of one parsed pipeline: unknown plugins, config keys, templates that refer
    to outputs no earlier step produces, duplicate step names."""
    issues: list[PipelineIssue] = []
    source = spec.source_path
    produced: list[str] = []
    step_lines: dict[str, int | None] = {}

    def issue(message: str, step: StepSpec, key: str | None = None, line: int | None = None) -> None:
        issues.append(
            PipelineIssue(
                message,
                file=source,
                line=line or step.line(),
                pipeline=spec.name,
                step=step.name,
                key=key,
            )
        )

    for step in spec.steps:
        if step.name in step_lines:
            first = step_lines[step.name]
            issue(f"duplicate step name (first at line {first})" if first else "duplicate step name", step)
        else:
            step_lines[step.name] = step.line()

        plugin_cls = registry.get(step.plugin) if registry is not None else None
        if registry is not None and plugin_cls is None:
            known = ", ".join(registry.names()) or "none"
            issue(
                f"unknown plugin {step.plugin!r} (known plugins: {known})", step, key="plugin", line=step.line("plugin")
            )
        elif plugin_cls is not None:
            for loc, message in check_config(plugin_cls, step.config):
                key = "config." + _loc_text(loc) if loc else "config"
                if loc and message == "required key is missing":
                    line = step.line("config", *loc[:-1]) if len(loc) > 1 else step.line("config")
                else:
                    line = step.line("config", *loc)
                issue(message, step, key=key, line=line)

        available = set(produced) | {RUN_KEY}
        if plugin_cls is not None:
            for key, ref in context_key_refs(plugin_cls, step.config):
                if ref not in available:
                    earlier = ", ".join(produced) if produced else "none"
                    issue(
                        f"refers to output {ref!r}, which no earlier step produces (earlier outputs: {earlier})",
                        step,
                        key=f"config.{key}",
                        line=step.line("config", key),
                    )
        for path, text in _walk_strings(step.config):
            key = "config." + _loc_text(path) if path else "config"
            for problem in templates.check_syntax(text):
                issue(problem, step, key=key, line=step.line("config", *path))
            for expr in _exprs(text):
                try:
                    head = str(templates.parse_path(expr)[0])
                except TemplateError:
                    continue  # reported above
                if head not in available:
                    earlier = ", ".join(produced) if produced else "none"
                    issue(
                        f"template {{{{ {expr.strip()} }}}} refers to output {head!r}, which no earlier step "
                        f"produces (earlier outputs: {earlier})",
                        step,
                        key=key,
                        line=step.line("config", *path),
                    )
        if step.output:
            produced.append(step.output)
    issues.sort(key=lambda i: i.line or 0)
    return issues


def _exprs(text: str) -> list[str]:
    return list(templates.iter_templates(text))


def pipeline_warnings(spec: PipelineSpec, registry: Any) -> list[PipelineIssue]:
    """Risks in a valid pipeline that its plugins point out (``Plugin.config_warnings``, e.g.
    a shell command built from templates): reported, never refused."""
    found: list[PipelineIssue] = []
    for step in spec.steps:
        plugin_cls = registry.get(step.plugin) if registry is not None else None
        for key, message in plugin_cls.config_warnings(step.config) if plugin_cls is not None else []:
            found.append(
                PipelineIssue(
                    message,
                    file=spec.source_path,
                    line=step.line("config", key),
                    pipeline=spec.name,
                    step=step.name,
                    key=f"config.{key}",
                )
            )
    return found


@dataclass
class FileReport:
    """What validating one file found: ``issues`` (errors) and ``warnings``."""

    path: str
    pipelines: list[PipelineSpec]
    issues: list[PipelineIssue]
    warnings: list[PipelineIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def validate_files(
    paths: Iterable[str | Path], registry: Any, max_bytes: int = MAX_PIPELINE_FILE_BYTES
) -> list[FileReport]:
    """Parse and validate files (directories expand to their YAML files), including duplicate
    pipeline names across all of them. A file with any issue has ``ok`` False."""
    reports: list[FileReport] = []
    for given in paths:
        for path in pipeline_files(given):
            specs, issues = read_file(path, max_bytes)
            warnings: list[PipelineIssue] = []
            for spec in specs:
                issues += validate_pipeline(spec, registry)
                warnings += pipeline_warnings(spec, registry)
            reports.append(FileReport(str(path), specs, issues, warnings))
    seen: list[PipelineSpec] = []
    by_source = {r.path: r for r in reports}
    # A file valid on its own claims its names before a broken one repeating them: a broken
    # file never shadows a valid one.
    for report in sorted(reports, key=lambda r: not r.ok):
        seen.extend(report.pipelines)
    for dup in duplicate_names(seen):
        target = by_source.get(dup.file or "")
        if target is not None:
            target.issues.append(dup)
    return reports


__all__ = [
    "FileReport",
    "LineDict",
    "LineList",
    "PipelineError",
    "PipelineIssue",
    "PipelineSpec",
    "StepSpec",
    "check_config",
    "duplicate_names",
    "load_file",
    "load_yaml_documents",
    "parse_documents",
    "parse_text",
    "pipeline_files",
    "pipeline_warnings",
    "read_file",
    "validate_files",
    "validate_pipeline",
]
