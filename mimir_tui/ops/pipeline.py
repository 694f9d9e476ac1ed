"""What the pipeline screen shows and does, without Textual: one pipeline's steps and YAML,
checking its file as ``pipelines validate`` does, and queueing a run of it. Called in the
screen's thread workers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..persistence import RunRequest
from ..safeio import UnsafeFile, read_capped
from .overview import Row

STEP_COLUMNS = ("Step", "Plugin", "Timeout", "Output")


@dataclass(frozen=True)
class PipelineDetail:
    name: str
    steps: list[Row]
    #: The source file's text, or the stored definition as YAML when the file is not here.
    yaml: str
    source: str | None
    load_error: str | None


def read_pipeline(backend: Any, settings: Any, name: str) -> PipelineDetail:
    """The stored pipeline's steps (name, plugin, timeout, output key) and its YAML."""
    import yaml

    row = backend.get_pipeline(name)
    try:
        config = json.loads(row.config or "") or {}
    except ValueError:
        config = {}
    steps: list[Row] = []
    for i, step in enumerate(config.get("steps") or []):
        timeout = step.get("timeout")
        cells = (str(step.get("name", "?")), str(step.get("plugin", "?")), "-" if timeout is None else f"{timeout:g}s")
        steps.append((str(i), (*cells, str(step.get("output") or "-"))))
    text: str | None = None
    if row.source_path:
        try:
            data = read_capped(Path(row.source_path), settings.pipelines.max_file_bytes, "pipelines.max_file_bytes")
            text = data.decode("utf-8", errors="replace")
        except (OSError, UnsafeFile):
            text = None  # not on this machine (or refused): the stored definition
    if text is None:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else ""
    return PipelineDetail(row.name, steps, text, row.source_path, row.load_error)


def validate_pipeline(backend: Any, settings: Any, name: str) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``, each line naming file:line: the pipeline's source file checked as
    ``pipelines validate`` checks it, or, without a file here, its stored definition."""
    from ..pipelines.registry import default_registry
    from ..pipelines.spec import pipeline_warnings, validate_files
    from ..pipelines.spec import validate_pipeline as check
    from ..pipelines.store import spec_from_row

    registry = default_registry(settings)
    row = backend.get_pipeline(name)
    if row.source_path and Path(row.source_path).is_file():
        reports = validate_files([row.source_path], registry, settings.pipelines.max_file_bytes)
        errors = [str(i) for r in reports for i in r.issues]
        return errors, [str(w) for r in reports for w in r.warnings]
    try:
        spec = spec_from_row(row)
    except BadInput as exc:
        return [str(exc)], []
    return [str(i) for i in check(spec, registry)], [str(w) for w in pipeline_warnings(spec, registry)]


def queue_run(backend: Any, name: str) -> RunRequest:
    """Queue a run of the pipeline now, without a job (as a re-run of such a run does)."""
    backend.get_pipeline(name)  # a pipeline that is gone is an error now, not a failed run
    return backend.runs.enqueue(RunRequest(pipeline=name))
