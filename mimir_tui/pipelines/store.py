"""Pipelines in the database and on disk.

:func:`import_path` loads YAML files into the ``pipelines`` table (``PipelineConfig.config``
holds the definition as JSON). Validation comes first and a file is all-or-nothing: an invalid
file changes nothing. The rows of a file mirror the file: a pipeline removed from it is removed
from the table.

:class:`PipelineWatcher` keeps ``pipelines.directory`` and the table in step while the dashboard
or the service runs (watchfiles; a changed file is re-imported within about half a second). A
file that turns invalid keeps its last good version in the table, and its error is written to
``load_error`` of that file's pipelines; a file that never loaded gets a disabled placeholder row
(config ``{}``) carrying the error, so ``mimir-tui pipelines list`` shows it. Files deleted from
the directory have their pipelines removed.

Two files defining one name: the one imported first keeps it, and a file valid on its own wins
it over a broken one (whose placeholder never shadows a valid definition). One pass brings the
table to what the files define: a file's removal frees its names in the same pass, for a copy
that defines them too or a broken file they had shadowed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import Conflict, NotFound
from ..loop_errors import LoopErrors
from ..persistence.models import PipelineConfig
from ..safeio import MAX_PIPELINE_FILE_BYTES
from .spec import (
    YAML_SUFFIXES,
    FileReport,
    PipelineError,
    PipelineIssue,
    PipelineSpec,
    pipeline_files,
    read_file,
    validate_files,
)

log = logging.getLogger("mimir.pipelines")

#: How many issues of a bad file are kept in ``load_error``.
MAX_ERROR_LINES = 20
#: The ``source_path`` of Mimir's system pipelines (:mod:`mimir_tui.ops.scheduled`): no file is
#: theirs, so the folder's sync never removes them, and a file may not define their names.
SYSTEM_SOURCE = "mimir:system"


def is_placeholder(row: PipelineConfig) -> bool:
    """A row standing for a file that never loaded: no definition, only ``load_error``."""
    return (row.config or "").strip() in ("", "{}", "null")


def spec_from_row(row: PipelineConfig) -> PipelineSpec:
    """The spec kept in a ``pipelines`` row. A placeholder row (a file that never loaded) is a
    :class:`PipelineError` carrying the load error."""
    if is_placeholder(row):
        raise PipelineError(f"pipeline {row.name!r} has no valid definition: {row.load_error or 'empty config'}")
    return PipelineSpec.from_config(row.config, source=row.source_path)


def get_spec(backend: Any, name: str) -> PipelineSpec:
    """The spec of pipeline ``name`` in the database (``NotFound``, exit 2, if there is none)."""
    return spec_from_row(backend.get_pipeline(name))


def row_for(spec: PipelineSpec, source_path: str | None = None) -> PipelineConfig:
    return PipelineConfig(
        name=spec.name,
        description=spec.description,
        config=spec.to_json(),
        enabled=spec.enabled,
        source_path=source_path if source_path is not None else spec.source_path,
        checksum=spec.checksum(),
        load_error=None,
    )


def _outcome(old: PipelineConfig | None, new: PipelineConfig) -> str:
    """What storing ``new`` over ``old`` (the stored row of its name, or None) does:
    ``"added"``, ``"updated"`` or ``"unchanged"``."""
    if old is None:
        return "added"
    if (
        old.checksum == new.checksum
        and old.source_path == new.source_path
        and not old.load_error
        and old.enabled == new.enabled
        and old.description == new.description
    ):
        return "unchanged"
    return "updated"


def save_spec(backend: Any, spec: PipelineSpec, *, source_path: str | None = None) -> str:
    """Insert or replace one pipeline; returns ``"added"``, ``"updated"`` or ``"unchanged"``."""
    new = row_for(spec, source_path)
    try:
        old = backend.get_pipeline(spec.name)
    except NotFound:
        old = None
    if old is None:
        try:
            backend.save_pipeline(new)
            return "added"
        except Conflict:  # added meanwhile by another process
            old = backend.get_pipeline(spec.name)
    outcome = _outcome(old, new)
    if outcome == "updated":
        new.created_at = old.created_at
        backend.update_pipeline(new)
    return outcome


@dataclass
class ImportResult:
    """What an import did: names added, updated, unchanged and removed, and each file's report."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    files: list[FileReport] = field(default_factory=list)

    @property
    def issues(self) -> list[PipelineIssue]:
        return [issue for report in self.files for issue in report.issues]

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "files": [
                {
                    "path": r.path,
                    "ok": r.ok,
                    "pipelines": [s.name for s in r.pipelines],
                    "errors": [str(i) for i in r.issues],
                }
                for r in self.files
            ],
        }


def _source(path: str | Path) -> str:
    return str(Path(path).resolve())


def _defined_elsewhere(row: PipelineConfig, source: str, max_bytes: int) -> bool:
    """True if ``row`` came from another file that still exists and still defines it (and
    loaded once: a placeholder row of a file that never did holds no name against a valid one)."""
    other = row.source_path
    if not other or other == source or is_placeholder(row) or not Path(other).is_file():
        return False
    specs, _ = read_file(other, max_bytes)
    return any(s.name == row.name for s in specs)


#: How many times a sync is judged again when another process changed the same names meanwhile.
SYNC_TRIES = 3


def import_path(
    backend: Any,
    path: str | Path,
    registry: Any,
    *,
    record_errors: bool = False,
    prune_missing: bool = False,
    max_bytes: int = MAX_PIPELINE_FILE_BYTES,
) -> ImportResult:
    """Import a YAML file, or every ``*.yaml``/``*.yml`` in a directory, into the ``pipelines``
    table. Each file is validated first (plugins, config keys, templates, duplicate names across
    the files given and against pipelines of other files in the table) and written only if it
    is entirely valid. ``record_errors`` (the watcher) writes the issues of an invalid file to
    ``load_error``; ``prune_missing`` (a directory sync) removes the pipelines of files that
    are gone from the directory. A file larger than ``max_bytes`` (``pipelines.max_file_bytes``)
    is refused as invalid. Raises ``NotFound`` if ``path`` does not exist.

    The pass's writes are one transaction (``PipelineStore.apply``): readers see the table as
    it was or as the files define it, never between. If another process wrote the same names
    meanwhile (two instances syncing one folder), the pass is judged again on what it left."""
    target = Path(path)
    if not target.exists():
        raise NotFound(f"{path}: no such file or directory")
    files = validate_files([target], registry, max_bytes)
    tries = 1
    while True:
        # Each try judges the files afresh (the issues a pass adds, a duplicate name, are its own).
        result = ImportResult(files=[replace(report, issues=list(report.issues)) for report in files])
        changes = _plan(backend, target, result, record_errors, prune_missing, max_bytes)
        try:
            if changes:
                backend.pipelines.apply(changes)
            return result
        except Conflict:
            if tries == SYNC_TRIES:
                raise
            tries += 1


def _plan(
    backend: Any, target: Path, result: ImportResult, record_errors: bool, prune_missing: bool, max_bytes: int
) -> list[tuple[str, Any]]:
    """The changes (see ``PipelineStore.apply``) that bring the table to what ``result.files``
    define; ``result`` says them as names added, updated, unchanged and removed."""
    changes: list[tuple[str, Any]] = []
    # The table as this pass leaves it, kept up to date as it plans: each step below judges
    # the rows the steps before it left, so one pass brings the table to what the files
    # define (the watcher makes one pass per change).
    rows = {row.name: row for row in backend.list_pipelines()}

    def remove(name: str) -> None:
        changes.append(("delete", name))
        result.removed.append(name)
        del rows[name]

    if prune_missing and target.is_dir():
        # First the pipelines of files gone from the folder: a name they held is free for a
        # file that defines it too (a copy, a broken file they had shadowed) in this same pass.
        folder = Path(_source(target))
        present = {_source(p) for p in pipeline_files(target)}
        for row in list(rows.values()):
            src = row.source_path
            if src and Path(src).parent == folder and Path(src).suffix.lower() in YAML_SUFFIXES and src not in present:
                remove(row.name)

    broken: list[tuple[FileReport, str]] = []
    for report in result.files:
        source = _source(report.path)
        if report.ok:
            for spec in report.pipelines:
                row = rows.get(spec.name)
                if row is not None and row.source_path == SYSTEM_SOURCE:
                    report.issues.append(
                        PipelineIssue(
                            "the name is Mimir's own (a system pipeline of its scheduled operations): rename it",
                            file=report.path,
                            line=spec.line(),
                            pipeline=spec.name,
                        )
                    )
                elif row is not None and _defined_elsewhere(row, source, max_bytes):
                    report.issues.append(
                        PipelineIssue(
                            f"duplicate pipeline name (already imported from {row.source_path})",
                            file=report.path,
                            line=spec.line(),
                            pipeline=spec.name,
                        )
                    )
        if not report.ok:
            broken.append((report, source))
            continue
        names = set()
        for spec in report.pipelines:
            names.add(spec.name)
            new = row_for(spec, source)
            old = rows.get(spec.name)
            outcome = _outcome(old, new)
            getattr(result, outcome).append(spec.name)
            if outcome != "unchanged":
                changes.append(("insert" if old is None else "update", new))
            rows[spec.name] = new
        for row in list(rows.values()):
            if row.source_path == source and row.name not in names:
                remove(row.name)
    # The broken files last: a name a valid file took in this pass is that file's.
    if record_errors:
        for report, source in broken:
            changes.extend(_error_changes(report, source, rows))
    return changes


def _error_text(report: FileReport) -> str:
    lines = [str(i) for i in report.issues[:MAX_ERROR_LINES]]
    more = len(report.issues) - MAX_ERROR_LINES
    if more > 0:
        lines.append(f"... and {more} more")
    return "\n".join(lines)


def _error_changes(report: FileReport, source: str, rows: dict[str, PipelineConfig]) -> list[tuple[str, Any]]:
    """Keep the last good version of the file's pipelines; note the error on them. If the file
    never loaded, a disabled placeholder row carries the error."""
    text = _error_text(report)
    changes: list[tuple[str, Any]] = []
    mine = [row for row in rows.values() if row.source_path == source]
    for row in mine:
        if row.load_error != text:
            row.load_error = text
            changes.append(("update", row))
    if mine:
        return changes
    for name in [s.name for s in report.pipelines] or [Path(report.path).name]:
        if name in rows:  # someone else's pipeline (or this file's, twice): do not touch it
            continue
        rows[name] = PipelineConfig(
            name=name,
            description="(did not load)",
            config="{}",
            enabled=False,
            source_path=source,
            checksum=None,
            load_error=text,
        )
        changes.append(("insert", rows[name]))
    return changes


def import_specs(backend: Any, specs: Iterable[PipelineSpec]) -> list[str]:
    """Save specs built in code (the demo): each added or updated; returns their names."""
    names = []
    for spec in specs:
        save_spec(backend, spec)
        names.append(spec.name)
    return names


# -- the watcher ---------------------------------------------------------------------------------


def _yaml_filter(change: Any, path: str) -> bool:
    name = Path(path).name
    return Path(path).suffix.lower() in YAML_SUFFIXES and not name.startswith(".")


class PipelineWatcher:
    """Keeps ``pipelines.directory`` (or ``directory``) and the ``pipelines`` table in step.

    ``start()`` imports the directory once and then watches it in a daemon thread; ``stop()``
    ends the thread. ``sync()`` is one pass, callable any time. ``on_sync(result)`` is called
    after each pass that changed something or found errors."""

    def __init__(
        self,
        backend: Any,
        settings: Any,
        registry: Any = None,
        *,
        directory: str | Path | None = None,
        debounce_ms: int = 150,
        on_sync: Callable[[ImportResult], Any] | None = None,
    ) -> None:
        if registry is None:
            from .registry import default_registry

            registry = default_registry(settings)
        self.backend = backend
        self.settings = settings
        self.registry = registry
        self.directory = Path(directory or settings.pipelines.directory)
        self.debounce_ms = debounce_ms
        self.on_sync = on_sync
        self.last_result: ImportResult | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()
        self._logged: set[str] = set()
        # A bug's stack once, not at every change (a database hiccup: one line each time).
        self._sync_errors = LoopErrors(log, f"pipeline sync of {self.directory} failed")
        self._watch_errors = LoopErrors(log, f"watching {self.directory} failed (retrying)", level=logging.WARNING)
        self.ready = threading.Event()  # set once the first sync is done and watching began

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def sync(self) -> ImportResult:
        with self._sync_lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            result = import_path(
                self.backend,
                self.directory,
                self.registry,
                record_errors=True,
                prune_missing=True,
                max_bytes=self.settings.pipelines.max_file_bytes,
            )
            self.last_result = result
            current = {str(issue) for issue in result.issues}
            for text in sorted(current - self._logged):  # each problem once, not on every sync
                log.warning("pipeline file: %s", text)
            self._logged = current
            if result.changed:
                log.info(
                    "pipelines synced from %s: added %s, updated %s, removed %s",
                    self.directory,
                    result.added,
                    result.updated,
                    result.removed,
                )
            if self.on_sync is not None and (result.changed or not result.ok):
                try:
                    self.on_sync(result)
                except Exception:
                    log.exception("pipeline watcher callback failed")
            return result

    def _safe_sync(self) -> None:
        try:
            self.sync()
            self.last_error = None
            self._sync_errors.ok()
        except Exception as exc:  # the database is briefly away: try again on the next change
            self.last_error = str(exc)
            self._sync_errors.report(exc)

    def start(self) -> PipelineWatcher:
        if self.running:
            return self
        self._stop.clear()
        self.ready.clear()
        self._thread = threading.Thread(target=self._loop, name="mimir-pipeline-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> PipelineWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        import watchfiles

        self._safe_sync()
        while not self._stop.is_set():
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self.ready.set()
                for _changes in watchfiles.watch(
                    self.directory,
                    watch_filter=_yaml_filter,
                    debounce=self.debounce_ms,
                    # How often the watcher wakes to look at the stop event (and groups
                    # changes): 20 times a second was 0.1% of a core on an idle service, 4
                    # times 0.04%; twice, 0.02%, and a stop waits half a second at most.
                    step=500,
                    stop_event=self._stop,
                    rust_timeout=0,  # no return to Python but for a change or the stop
                    recursive=False,
                    raise_interrupt=False,
                ):
                    if self._stop.is_set():
                        break
                    self._safe_sync()
            except Exception as exc:  # the folder vanished, or the OS watcher failed
                self._watch_errors.report(exc)
                self._stop.wait(1.0)
                self._safe_sync()
        self._sync_errors.flush()
        self._watch_errors.flush()
        self.ready.set()


__all__ = [
    "ImportResult",
    "PipelineWatcher",
    "get_spec",
    "import_path",
    "import_specs",
    "is_placeholder",
    "row_for",
    "save_spec",
    "spec_from_row",
]
