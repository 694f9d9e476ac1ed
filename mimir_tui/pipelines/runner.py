"""The execution engine: runs a pipeline's steps in order and keeps a live record of the run.

A run is saved at once as ``running`` (so another process sees it), updated as each step starts
and ends, and finished as ``success``, ``failed``, ``cancelled`` or ``timed_out`` with the final
context. Each step's result is stored in the shared context under its ``output`` key; later
steps read it through templates. Async plugins run on the event loop, sync ones in a thread of
their own, so a stuck plugin never holds up the runner. A plugin that raises fails its step,
never the process.

Cancellation: from another process through the database (``backend.request_cancel``, i.e.
``mimir-tui executions cancel ID``), noticed by asking ``backend.cancel_requested(id)`` every
:attr:`PipelineRunner.cancel_poll_interval` seconds; or in-process through a
:class:`~mimir_tui.pipelines.cancel.CancelToken` (the scheduler's shutdown, Ctrl-C; its reason
is recorded as the error). Either stops the run within a second.

Each run writes ``<logging.executions_dir>/<id>.log`` (:mod:`.execlog`). Secrets are masked in
records and logs (:mod:`mimir_tui.secrets`); values are summarized (:mod:`.summaries`).

Public API (the scheduler's)::

    runner = PipelineRunner(backend, settings, registry)
    record = runner.run("nightly-etl", job_id=job.id, triggered_by="scheduler",
                        execution_id=claimed.id, scheduled_for=fire, worker_id=me,
                        timeout=job.timeout_seconds, cancel=token)
    record = await runner.run_async(...)   # same arguments, on a loop of the run's own
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import BadInput, MimirError, NotFound, OutcomeNotSaved
from ..persistence.models import FINISHED, JobExecutionRecord, Status, StepRecord, new_id
from ..persistence.types import as_utc, utcnow
from ..secrets import SecretMasker, mask_tree, secret_values
from . import loops, templates
from .cancel import CancelToken, pause
from .execlog import ExecutionLog, execution_log_path
from .policy import source_folder, working_folder
from .registry import Plugin, PluginRegistry, StepContext
from .spec import PipelineError, PipelineIssue, PipelineSpec, load_file, validate_pipeline
from .summaries import summarize

log = logging.getLogger("mimir.runner")

OnStep = Callable[[StepRecord, JobExecutionRecord], Any]


class _Progress:
    """The saves of a running run's record until its end: the first change (its first step
    starting: the record's first save, which says ``running``) at once, then at most one
    every ``interval`` seconds. A change within ``interval`` of the last save is saved when
    the interval ends (with whatever else changed meanwhile), not at once: a run of short
    steps writes its record twice (first step, end) instead of 2 + 2 per step, and the live
    view of a long step sees it start within ``interval``."""

    def __init__(self, save: Callable[[bool], Any], interval: float) -> None:
        self._save_now = save  # save(first): first is True for the run's first save
        self.interval = interval
        self._last = -math.inf
        self._saved = False
        self._due: asyncio.Task[None] | None = None
        self._saving = asyncio.Lock()

    async def changed(self) -> None:
        if self._due is not None:
            return  # a save is due already: it takes this change along
        wait = self._last + self.interval - time.monotonic()
        if wait <= 0:
            await self._save()
        else:
            self._due = asyncio.create_task(self._save_later(wait))

    async def _save_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._due = None
        await self._save()

    async def _save(self) -> None:
        async with self._saving:
            self._last = time.monotonic()
            first, self._saved = not self._saved, True
            await self._save_now(first)

    async def close(self) -> None:
        """No more progress saves: one due is dropped (the final save comes), one under way
        ends first."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        async with self._saving:
            pass


@dataclass
class _Stop:
    """Why a run must stop early (set by the cancel watcher), and the status it ends with
    (``cancelled``, or ``interrupted`` when the instance running it stops)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    status: Status = Status.cancelled

    def set(self, reason: str, status: Status = Status.cancelled) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.status = status
            self.event.set()


_plugin_slots: dict[int, threading.BoundedSemaphore] = {}
_plugin_slots_guard = threading.Lock()


def plugin_slots(size: int) -> threading.BoundedSemaphore:
    """The process's slots for plugin steps running at once (``plugins.max_concurrency``),
    shared by every runner with that setting."""
    with _plugin_slots_guard:
        slots = _plugin_slots.get(size)
        if slots is None:
            slots = _plugin_slots[size] = threading.BoundedSemaphore(size)
        return slots


class _Outcome(Exception):
    """How a step ended when it did not succeed: status and message."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StepAbandoned(BaseException):
    """Raised inside the thread of a sync plugin that did not stop when its step timed out or
    was cancelled (a BaseException: ``except Exception`` in the plugin does not swallow it)."""


def _raise_in(thread: threading.Thread) -> None:
    """Stop the Python code running in ``thread`` with :class:`StepAbandoned`, raised at its
    next bytecode: CPython's documented ``PyThreadState_SetAsyncExc``. Code blocked in C (a
    socket read, a ``regex`` match) gets it when the call returns: the built-in plugins bound
    those by the step's time (see docs/security.md)."""
    if thread.is_alive() and thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(StepAbandoned))


async def _in_thread(fn: Callable[..., Any], *args: Any, grace: float = 0.5) -> Any:
    """Run ``fn`` in a daemon thread of its own and await its result. Unlike
    ``asyncio.to_thread`` the loop never waits for the thread at shutdown: a plugin stuck in a
    blocking call cannot hold up the end of a cancelled or timed-out run. Cancelled (the step
    timed out or was cancelled), the thread gets ``grace`` seconds to notice
    ``ctx.cancel_event``, then :class:`StepAbandoned` is raised in it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            try:
                outcome = (True, fn(*args))
            except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit fails the step only
                outcome = (False, exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}"))
            loop.call_soon_threadsafe(settle, *outcome)
        except (RuntimeError, StepAbandoned):  # the loop is gone, or stopped as fn returned: nobody waits
            pass

    thread = threading.Thread(target=target, name=f"mimir-step-{getattr(fn, '__qualname__', 'plugin')}", daemon=True)
    thread.start()
    try:
        return await future
    except asyncio.CancelledError:
        stopper = threading.Timer(grace, _raise_in, (thread,))
        stopper.daemon = True
        stopper.start()
        raise


def _snapshot(record: JobExecutionRecord) -> JobExecutionRecord:
    """A copy of a running record to save from another thread while the run goes on changing
    it (its steps list is changed in place)."""
    copy = record.model_copy()
    copy.steps = list(record.steps or [])
    return copy


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, MimirError):
        text = str(exc)
    elif isinstance(exc, ValidationError):
        text = _describe_validation(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split()) or type(exc).__name__


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        key = ".".join(str(p) for p in error["loc"]) or "config"
        msg = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            msg = "required key is missing"
        elif error["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"config key {key!r}: {msg}")
    return "; ".join(parts)


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


class PipelineRunner:
    """Runs pipelines and records them. One runner may serve many runs at once, from any thread.

    ``registry`` defaults to :func:`~mimir_tui.pipelines.registry.default_registry` for
    ``settings``; ``environ`` (default ``os.environ`` at run time) feeds ``${NAME}``."""

    #: Seconds between looks at ``job_executions.cancel_requested``.
    cancel_poll_interval: float = 0.25
    #: Least seconds between two saves of a running run's progress (see _Progress).
    progress_interval: float = 1.0
    #: Seconds a cancelled or timed-out step gets to wind down before the run moves on.
    stop_grace: float = 0.5
    #: Longest wait, in seconds, between two tries to save a run's end while the database is away.
    save_backoff_max: float = 5.0

    def __init__(
        self,
        backend: Any,
        settings: Any,
        registry: PluginRegistry | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Any = None,
    ) -> None:
        if registry is None:
            from .registry import default_registry

            registry = default_registry(settings)
        self.backend = backend
        self.settings = settings
        self.registry = registry
        self.environ = environ
        # The times of records and logs: this machine's clock, or the one the scheduler fires
        # on (the database server's), so that runs from every machine sort together.
        self.now: Callable[[], datetime] = clock.now if clock is not None else utcnow
        # name -> (stored version, spec, validation issues): see _resolve
        self._specs: dict[str, tuple[Any, PipelineSpec, list[PipelineIssue]]] = {}
        self._specs_lock = threading.Lock()

    # -- resolving ------------------------------------------------------------------------

    def load(self, pipeline: PipelineSpec | str) -> PipelineSpec:
        """The spec for ``pipeline``: a spec as is; a path to a YAML file holding one pipeline;
        else a name in the ``pipelines`` table. Raises ``NotFound`` / ``PipelineError``."""
        if isinstance(pipeline, PipelineSpec):
            return pipeline
        ref = str(pipeline)
        if ref.lower().endswith((".yaml", ".yml")) and Path(ref).is_file():
            specs = load_file(ref, self.registry, self.settings.pipelines.max_file_bytes)
            if len(specs) != 1:
                names = ", ".join(repr(s.name) for s in specs)
                raise PipelineError(f"{ref}: holds {len(specs)} pipelines ({names}); name one of them")
            return specs[0]
        from .store import spec_from_row

        return spec_from_row(self.backend.get_pipeline(ref))

    def _resolve(self, pipeline: PipelineSpec | str) -> tuple[PipelineSpec, list[PipelineIssue]]:
        """:meth:`load` and the spec's validation issues. A stored pipeline is parsed and
        validated once per version (see ``PipelineStore.version``), not at every run: each run
        reads the version alone."""
        store: Any = getattr(self.backend, "pipelines", None)
        if isinstance(pipeline, PipelineSpec) or not hasattr(store, "version"):
            spec = self.load(pipeline)
            return spec, validate_pipeline(spec, self.registry)
        name = str(pipeline)
        if name.lower().endswith((".yaml", ".yml")) and Path(name).is_file():
            spec = self.load(name)
            return spec, validate_pipeline(spec, self.registry)
        version = store.version(name)
        cached = self._cached(name, version)
        if cached is not None:
            return cached
        spec = self.load(name)
        issues = validate_pipeline(spec, self.registry)
        if version is not None:
            with self._specs_lock:
                self._specs[name] = (version, spec, issues)
        return spec, issues

    def _cached(self, name: str, version: Any) -> tuple[PipelineSpec, list[PipelineIssue]] | None:
        """The parsed spec and issues of stored pipeline ``name`` if this runner holds them for
        ``version`` (None: not known)."""
        if version is None:
            return None
        with self._specs_lock:
            cached = self._specs.get(name)
        return (cached[1], cached[2]) if cached is not None and cached[0] == version else None

    def log_path(self, execution_id: str) -> Path:
        return execution_log_path(self.settings, execution_id)

    # -- running --------------------------------------------------------------------------

    def run(self, pipeline: PipelineSpec | str, **kwargs: Any) -> JobExecutionRecord:
        """Run to the end and return the final record. Blocking; usable from any thread (from
        inside a running event loop it runs on a loop of its own in a helper thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return loops.run(self.run_async(pipeline, **kwargs))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = asyncio.run(self.run_async(pipeline, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc

        thread = threading.Thread(target=target, name="mimir-run", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    async def run_async(
        self,
        pipeline: PipelineSpec | str,
        *,
        job_id: str | None = None,
        triggered_by: str = "manual",
        execution_id: str | None = None,
        scheduled_for: datetime | None = None,
        attempt: int = 1,
        worker_id: str | None = None,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
        on_step: OnStep | None = None,
        claimed: bool = False,
        pipeline_version: Any = None,
    ) -> JobExecutionRecord:
        """Run ``pipeline`` (a spec, a pipeline name, or a YAML path) and return its final record.

        An unknown or invalid pipeline raises ``NotFound``/``PipelineError`` (exit 2) when the
        run is ad hoc (no ``job_id`` and no ``execution_id``); for a job's run it is recorded as
        a failed execution instead, so the operator sees it in the history. If the record
        ``execution_id`` exists already and has finished, it is returned untouched.

        ``claimed``: the caller has just claimed ``execution_id`` (the scheduler's executor):
        it is not read first (its first save finds out whether it ended meanwhile), and its end
        is saved together with its job's ``last_result``. ``pipeline_version``: the stored
        pipeline's version as the caller read it (``PipelineStore.versions``, one read for a
        batch of fires): a spec this runner holds for it is used without reading it again.

        The database calls made while no step is under way (the reads before the first step,
        the first save, the end's) run on the calling thread, blocking the loop for their
        while: a hand-off to a worker thread and back cost more than the save itself (0.38 ms
        of CPU each, measured). So the loop is the run's own (:meth:`run` makes sure of it).
        While a step runs, the progress saves and the cancel polls go to a worker thread: the
        step's time limit and cancel stay watched."""
        exec_id = execution_id or new_id()
        started = self.now()
        ref_name = pipeline.name if isinstance(pipeline, PipelineSpec) else str(pipeline)

        if execution_id is not None and not claimed:
            try:
                existing = self.backend.get_execution(execution_id)
            except NotFound:
                existing = None
            if existing is not None and existing.status in FINISHED:
                return existing

        try:
            known = None if isinstance(pipeline, PipelineSpec) else self._cached(str(pipeline), pipeline_version)
            spec, issues = known if known is not None else self._resolve(pipeline)
            if issues:
                raise PipelineError(issues)
        except BadInput as exc:
            if job_id is None and execution_id is None:
                raise
            record = JobExecutionRecord(
                id=exec_id,
                job_id=job_id,
                pipeline=ref_name[:255],
                start_time=started,
                end_time=self.now(),
                duration=0,
                status=Status.failed.value,
                error=f"pipeline {ref_name!r} cannot run: {exc}",
                context={},
                steps=[],
                triggered_by=triggered_by,
                scheduled_for=scheduled_for,
                attempt=attempt,
                worker_id=worker_id,
            )
            exec_log = ExecutionLog(
                self.log_path(exec_id), fmt=self.settings.logging.format, execution_id=exec_id, now=self.now
            )
            exec_log.write("ERROR", record.error or "")
            exec_log.close()
            return await self._save_final(record, cancel, job_result=claimed)

        record = JobExecutionRecord(
            id=exec_id,
            job_id=job_id,
            pipeline=spec.name,
            start_time=started,
            status=Status.running.value,
            context={},
            steps=[],
            triggered_by=triggered_by,
            scheduled_for=scheduled_for,
            attempt=attempt,
            worker_id=worker_id,
        )
        # The record is first saved as the first step starts, before its plugin runs (see
        # _Progress): one write for "running" and the step. A conflict there: nothing ran (an
        # error raised). A row that finished meanwhile (a reaper interrupted a claimed fire
        # before it started) is left as it is, and no plugin runs.
        secrets = SecretMasker()  # every secret the steps refer to, masked from the first step on
        secrets.add(templates.referenced_secrets([step.config for step in spec.steps], self._environ()))
        exec_log = ExecutionLog(
            self.log_path(exec_id),
            fmt=self.settings.logging.format,
            secrets=secrets,
            execution_id=exec_id,
            now=self.now,
        )
        stop = _Stop()
        watcher = asyncio.create_task(self._watch_cancel(exec_id, cancel, stop, exec_log))
        progress = _Progress(
            lambda first: self._save(_snapshot(record), exec_log, stop, strict=first), self.progress_interval
        )
        limits = [t for t in (spec.timeout, timeout) if t]
        pipeline_timeout = min(limits) if limits else None
        context: dict[str, Any] = {}
        job_text = f", job {job_id}" if job_id else ""
        exec_log.write(
            "INFO",
            f"pipeline {spec.name!r} started: execution {exec_id}, triggered by "
            f"{triggered_by}{job_text}, {len(spec.steps)} step(s)"
            + (f", timeout {_fmt_seconds(pipeline_timeout)}" if pipeline_timeout else ""),
        )
        interrupted = False
        try:
            status, error = await self._run_steps(
                spec,
                record,
                context,
                exec_log,
                secrets,
                stop,
                pipeline_timeout,
                on_step,
                progress,
            )
        except asyncio.CancelledError:
            interrupted = True
            status, error = Status.cancelled, "cancelled: the run was interrupted"
            self._close_open_step(record, Status.cancelled, "interrupted")
        except Exception:  # the first save failed: the caller records the run failed
            exec_log.close()
            raise
        finally:
            watcher.cancel()
            await progress.close()
        if status is Status.cancelled and not interrupted and stop.event.is_set():
            status = stop.status  # e.g. interrupted: the log's last line says it too

        record.status = status.value
        record.error = secrets.mask(error) if error else None
        record.end_time = self.now()
        record.duration = int((record.end_time - as_utc(record.start_time)).total_seconds() * 1000)
        max_chars = self.settings.pipelines.summary_max_chars
        record.context = {k: summarize(v, max_chars, secrets) for k, v in context.items()}
        # Secrets a step's {{ }} revealed after earlier steps were recorded: masked there too.
        record.steps = mask_tree(record.steps or [], secrets)
        # The log's last line after the final save: it says the end the history keeps (with
        # progress saved at most once a second, another instance's end of the run may first be
        # seen here).
        final: JobExecutionRecord | None = None
        try:
            final = await self._save_final(record, cancel, job_result=claimed)
        finally:
            self._log_end(exec_log, spec, record, final)
        if interrupted:
            raise asyncio.CancelledError()
        return final

    # -- internals ------------------------------------------------------------------------

    def _log_end(
        self, exec_log: ExecutionLog, spec: PipelineSpec, record: JobExecutionRecord, stored: JobExecutionRecord | None
    ) -> None:
        """The log's last line: the run's end as stored (``stored``: another instance's, if it
        ended the run first; None: not saved, the run's own), then the file is closed."""
        ended, error = record.status, record.error
        if stored is not None and stored is not record:
            ended = stored.status
            error = f"execution {record.id} was ended by another instance (status {stored.status})"
        exec_log.write(
            "INFO" if ended == Status.success else "ERROR",
            f"pipeline {spec.name!r} finished: {ended} in {record.duration} ms" + (f": {error}" if error else ""),
        )
        exec_log.close()

    def _save_unfinished(self, record: JobExecutionRecord, job_result: bool = False) -> bool:
        """Save ``record`` unless its row has finished meanwhile (another instance ended it:
        a reaper's ``interrupted``, whose retry is queued already); False then. ``job_result``:
        its end, saved with its job's ``last_result``."""
        return bool(self.backend.save_execution(record, only_unfinished=True, job_result=job_result))

    def _ended_elsewhere(self, ended: JobExecutionRecord) -> None:
        log.warning("execution %s was ended by another instance (status %s)", ended.id, ended.status)

    async def _save(
        self, record: JobExecutionRecord, exec_log: ExecutionLog, stop: _Stop | None = None, *, strict: bool = False
    ) -> None:
        """Save a running record. ``strict`` (its first save): an error is raised; else it is
        logged, and the run goes on (a progress update that fails must not fail the run)."""
        try:
            if strict:  # nothing of the run is under way yet: no need to leave its loop free
                applied = self._save_unfinished(record)
            else:
                applied = await asyncio.to_thread(self._save_unfinished, record)
        except Exception as exc:
            if strict:
                raise
            exec_log.write("WARNING", f"could not save progress: {exc}")
            return
        if not applied:
            # Another instance ended this run (it took us for dead): stop, and keep its verdict
            # (the log ends with it too).
            stored: Status | None = None
            try:
                stored = Status((await asyncio.to_thread(self.backend.get_execution, record.id)).status)
            except Exception:  # noqa: BLE001 - only for the message
                pass
            said = stored.value if stored else "finished"
            message = f"execution {record.id} was ended by another instance (status {said})"
            log.warning("%s", message)
            exec_log.write("WARNING", message)
            if stop is not None:
                stop.set(message, stored or Status.cancelled)

    async def _save_final(
        self, record: JobExecutionRecord, cancel: CancelToken | None = None, *, job_result: bool = False
    ) -> JobExecutionRecord:
        """Save the run's end; returns the record as stored: ours, or, if another instance ended
        the run meanwhile, theirs (never overwritten). ``job_result``: the end, ours or theirs,
        becomes the job's ``last_result``.

        While the database is away, the run keeps its end and tries again, with backoff (up to
        :attr:`save_backoff_max` s between tries), for ``scheduler.outcome_save_window``
        seconds; the process heartbeats meanwhile, so the run is not taken for ownerless. Once
        ``cancel`` is set (the instance is stopping), one more try. Then
        :class:`~mimir_tui.errors.OutcomeNotSaved`, with the record."""
        deadline = time.monotonic() + self.settings.scheduler.outcome_save_window
        delay, failing_since, last_try = 0.2, None, False
        while True:
            try:
                if self._save_unfinished(record, job_result):
                    stored = record
                else:
                    stored = self.backend.get_execution(record.id)
                    self._ended_elsewhere(stored)
                    if job_result and record.job_id is not None:  # theirs is the job's result
                        self.backend.jobs.set_schedule(record.job_id, last_result=stored.status)
                if failing_since is not None:
                    log.warning(
                        "execution %s: its end (%s) was saved after %.1f s of failed tries",
                        record.id,
                        record.status,
                        time.monotonic() - failing_since,
                    )
                return stored
            except MimirError as exc:
                now = time.monotonic()
                if last_try or now >= deadline or getattr(exc, "fatal", False):  # a damaged file stays damaged
                    message = f"execution {record.id} ended {record.status}, but its end could not be saved: {exc}"
                    raise OutcomeNotSaved(message, record) from exc
                if failing_since is None:
                    failing_since = now
                    log.warning(
                        "execution %s ended %s, but its end could not be saved (%s); trying again for up to %.0f s",
                        record.id,
                        record.status,
                        exc,
                        deadline - now,
                    )
                last_try = await pause(min(delay, deadline - now), cancel)
                delay = min(delay * 2, self.save_backoff_max)

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    def _cancel_requested(self, execution_id: str) -> bool:
        """Whether someone asked, through the database, to cancel the run (polled a few times
        a second: one indexed read of one column)."""
        return self.backend.executions.cancel_requested(execution_id)

    async def _watch_cancel(
        self, execution_id: str, cancel: CancelToken | None, stop: _Stop, exec_log: ExecutionLog
    ) -> None:
        # The first look after one interval: a run shorter than that (most) is never cancelled
        # through the database, and reads nothing for it.
        next_poll = time.monotonic() + self.cancel_poll_interval
        failures = 0
        while not stop.event.is_set():
            if cancel is not None and cancel.cancelled:
                reason = cancel.reason or "cancelled: stopped by the process running it"
                stop.set(reason, Status(cancel.status))
                exec_log.write("WARNING", str(reason))
                return
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self.cancel_poll_interval
                try:
                    if await asyncio.to_thread(self._cancel_requested, execution_id):
                        stop.set("cancelled by request")
                        exec_log.write("WARNING", "cancel requested")
                        return
                    failures = 0
                except Exception as exc:  # the database is briefly unreachable: keep running
                    failures += 1
                    if failures == 1:
                        exec_log.write("WARNING", f"cannot check for a cancel request: {exc}")
            exec_log.flush_if_due()
            await asyncio.sleep(0.05)

    def _close_open_step(self, record: JobExecutionRecord, status: Status, message: str) -> None:
        steps = list(record.steps or [])
        if steps and steps[-1].get("status") == Status.running:
            step = StepRecord.model_validate(steps[-1])
            step.status = status.value
            step.error = message
            step.end_time = self.now()
            if step.start_time:
                step.duration = int((step.end_time - as_utc(step.start_time)).total_seconds() * 1000)
            else:
                step.duration = None
            steps[-1] = step.to_json()
            record.steps = steps

    async def _notify(
        self, on_step: OnStep | None, step: StepRecord, record: JobExecutionRecord, exec_log: ExecutionLog
    ) -> None:
        if on_step is None:
            return
        try:
            result = on_step(step, record)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            exec_log.write("WARNING", f"on_step callback failed: {exc}")

    async def _call(self, plugin_cls: type, config: Any, ctx: StepContext) -> Any:
        plugin = plugin_cls()
        if inspect.iscoroutinefunction(plugin.execute):
            try:
                result = await plugin.execute(config, ctx)
            except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
                raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        else:
            result = await _in_thread(plugin.execute, config, ctx, grace=self.stop_grace)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _take_slot(
        self,
        slots: threading.BoundedSemaphore,
        stop: _Stop,
        deadline: float | None,
        pipeline_timeout: float | None,
        exec_log: ExecutionLog,
        step: Any,
        index: int,
    ) -> None:
        """Wait for a plugin slot (``plugins.max_concurrency`` steps at once in this process),
        as long as the run is not stopped and its pipeline timeout allows."""
        if slots.acquire(blocking=False):
            return
        exec_log.write(
            "INFO",
            f"waiting for a plugin slot (plugins.max_concurrency {self.settings.plugins.max_concurrency})",
            step=step.name,
            plugin=step.plugin,
        )
        while not slots.acquire(blocking=False):
            if stop.event.is_set():
                raise _Outcome(Status.cancelled, stop.reason)
            if deadline is not None and time.monotonic() >= deadline:
                raise _Outcome(
                    Status.timed_out,
                    f"pipeline timed out after {_fmt_seconds(pipeline_timeout or 0)} (waiting for a plugin slot)",
                )
            try:
                await asyncio.wait_for(stop.event.wait(), 0.05)
            except TimeoutError:
                pass

    async def _call_plugin(
        self,
        plugin_cls: Any,
        config: Any,
        record: JobExecutionRecord,
        spec: PipelineSpec,
        step: Any,
        context: dict,
        exec_log: ExecutionLog,
        stop: _Stop,
        step_timeout: float,
        deadline: float | None,
        pipeline_timeout: float | None,
        base_dir: Path,
    ) -> Any:
        """Run one step's plugin within its time limit: its result, or an _Outcome raised."""
        from .registry import StepCancelled, StepTimedOut

        remaining = deadline - time.monotonic() if deadline is not None else None
        limit = step_timeout if remaining is None else min(step_timeout, remaining)

        def log(level: str, message: str) -> None:
            exec_log.write(level, message, step=step.name, plugin=step.plugin)

        ctx = StepContext(
            execution_id=record.id,
            pipeline=spec.name,
            step_name=step.name,
            context=dict(context),
            settings=self.settings,
            backend=self.backend,
            timeout=limit,
            log=log,
            base_dir=base_dir,
        )
        task = asyncio.create_task(self._call(plugin_cls, config, ctx))
        stop_wait = asyncio.create_task(stop.event.wait())
        try:
            done, _ = await asyncio.wait({task, stop_wait}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if task in done:
            try:
                result = task.result()
            except StepTimedOut as exc:
                raise _Outcome(Status.timed_out, _describe_exception(exc)) from None
            except StepCancelled as exc:
                raise _Outcome(Status.cancelled, stop.reason or _describe_exception(exc)) from None
            except Exception as exc:
                raise _Outcome(Status.failed, _describe_exception(exc)) from None
        else:
            ctx.cancel_event.set()
            task.cancel()
            await asyncio.wait({task}, timeout=self.stop_grace)
            if not task.done():
                exec_log.write(
                    "WARNING", "the plugin did not stop when asked; abandoned", step=step.name, plugin=step.plugin
                )
            else:
                task.exception() if not task.cancelled() else None  # retrieve: no "never retrieved" noise
            if stop.event.is_set():
                raise _Outcome(Status.cancelled, stop.reason)
            if remaining is not None and remaining <= step_timeout:
                raise _Outcome(Status.timed_out, f"pipeline timed out after {_fmt_seconds(pipeline_timeout or 0)}")
            raise _Outcome(Status.timed_out, f"timed out after {_fmt_seconds(step_timeout)}")
        return result

    async def _run_steps(
        self,
        spec: PipelineSpec,
        record: JobExecutionRecord,
        context: dict[str, Any],
        exec_log: ExecutionLog,
        secrets: SecretMasker,
        stop: _Stop,
        pipeline_timeout: float | None,
        on_step: OnStep | None,
        progress: _Progress,
    ) -> tuple[Status, str | None]:
        """Run every step; return the run's (status, error)."""
        max_chars = self.settings.pipelines.summary_max_chars
        environ = self._environ()
        deadline = time.monotonic() + pipeline_timeout if pipeline_timeout else None
        base_dir = working_folder(self.settings, spec.source_path)
        run_info = {
            "id": record.id,
            "pipeline": spec.name,
            "job_id": record.job_id,
            "triggered_by": record.triggered_by,
            "attempt": record.attempt,
            "started_at": as_utc(record.start_time).isoformat(),
            "date": as_utc(record.start_time).strftime("%Y-%m-%d"),
            "source_dir": str(source_folder(spec.source_path)) if spec.source_path else str(base_dir),
            "working_dir": str(base_dir),
        }
        total = len(spec.steps)
        for index, step in enumerate(spec.steps, 1):
            if stop.event.is_set():
                exec_log.write("WARNING", f"stopped before step {index} ({step.name})")
                return Status.cancelled, stop.reason
            remaining = deadline - time.monotonic() if deadline is not None else None
            if remaining is not None and remaining <= 0:
                return Status.timed_out, (
                    f"pipeline timed out after {_fmt_seconds(pipeline_timeout or 0)}"
                    f" (before step {index} ({step.name}))"
                )
            step_timeout = step.timeout or self.settings.plugins.timeout
            step_started = self.now()
            srec = StepRecord(
                step_name=step.name, plugin=step.plugin, start_time=step_started, status=Status.running.value
            )
            record.steps = list(record.steps or []) + [srec.to_json()]
            exec_log.write("INFO", f"step {index}/{total} started", step=step.name, plugin=step.plugin)

            failure: _Outcome | None = None
            result: Any = None
            config_data: Any = None
            try:
                scope = {templates.RUN_KEY: run_info, **context}
                plugin_cls = self.registry.get(step.plugin)
                try:
                    config_data = (plugin_cls or Plugin).expand_config(step.config, scope, environ)
                except templates.TemplateError as exc:
                    srec.input = summarize(step.config, max_chars, secrets)  # as written, unexpanded
                    raise _Outcome(Status.failed, str(exc)) from None
                secrets.add(secret_values(config_data))
                srec.input = summarize(config_data, max_chars, secrets)
                record.steps[-1] = srec.to_json()
                await progress.changed()
                await self._notify(on_step, srec, record, exec_log)

                if plugin_cls is None:
                    raise _Outcome(Status.failed, f"unknown plugin {step.plugin!r}")
                try:
                    config = plugin_cls.Config.model_validate(config_data)
                except ValidationError as exc:
                    raise _Outcome(Status.failed, _describe_validation(exc)) from None

                if stop.event.is_set():  # e.g. the first save found the run ended elsewhere
                    raise _Outcome(Status.cancelled, stop.reason)
                slots = plugin_slots(self.settings.plugins.max_concurrency)
                await self._take_slot(slots, stop, deadline, pipeline_timeout, exec_log, step, index)
                try:
                    result = await self._call_plugin(
                        plugin_cls,
                        config,
                        record,
                        spec,
                        step,
                        context,
                        exec_log,
                        stop,
                        step_timeout,
                        deadline,
                        pipeline_timeout,
                        base_dir,
                    )
                finally:
                    slots.release()  # a plugin abandoned after a timeout no longer counts either
            except _Outcome as outcome:
                failure = outcome

            srec.end_time = step_ended = self.now()
            srec.duration = int((step_ended - step_started).total_seconds() * 1000)
            if failure is None:
                srec.status = Status.success.value
                srec.output = summarize(result, max_chars, secrets)
                if step.output:
                    context[step.output] = result
                exec_log.write(
                    "INFO", f"step {index}/{total} succeeded in {srec.duration} ms", step=step.name, plugin=step.plugin
                )
            else:
                srec.status = failure.status.value
                srec.error = secrets.mask(failure.message)
                exec_log.write(
                    "ERROR",
                    f"step {index}/{total} {failure.status.value}: {srec.error}",
                    step=step.name,
                    plugin=step.plugin,
                )
            record.steps[-1] = srec.to_json()
            record.context = {k: summarize(v, max_chars, secrets) for k, v in context.items()}
            exec_log.flush()
            await progress.changed()
            await self._notify(on_step, srec, record, exec_log)

            if failure is None:
                continue
            if failure.status is Status.cancelled:
                return Status.cancelled, failure.message
            if failure.status is Status.timed_out:
                if failure.message.startswith("pipeline timed out"):
                    return Status.timed_out, f"{failure.message} (in step {index} ({step.name}))"
                if failure.message.startswith("timed out"):
                    return Status.timed_out, f"step {index} ({step.name}) {failure.message}"
                return Status.timed_out, f"step {index} ({step.name}) timed out: {failure.message}"
            if step.continue_on_error:
                exec_log.write(
                    "WARNING",
                    f"step {index} ({step.name}) failed; continuing (continue_on_error)",
                    step=step.name,
                    plugin=step.plugin,
                )
                continue
            return Status.failed, f"step {index} ({step.name}) failed: {failure.message}"
        return Status.success, None


def run_pipeline(
    backend: Any, settings: Any, pipeline: PipelineSpec | str, *, registry: PluginRegistry | None = None, **kwargs: Any
) -> JobExecutionRecord:
    """Shorthand: ``PipelineRunner(backend, settings, registry).run(pipeline, **kwargs)``."""
    return PipelineRunner(backend, settings, registry).run(pipeline, **kwargs)


__all__ = [
    "PipelineRunner",
    "plugin_slots",
    "run_pipeline",
]
