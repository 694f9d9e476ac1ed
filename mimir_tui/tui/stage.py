"""The dashboard on a stage: fixed data, a fixed clock, and each view an operator sees, reached
the way the operator reaches it. The snapshot tests (``tests/tui/test_snapshots.py``) and the
screenshots (``screenshots/make_screenshots.py``) are both taken from here.

What would differ from one run to the next is fixed by what the app is given, not special-cased
in the dashboard:

- the time: the app's ``clock`` stands at :data:`AT` (relative times, ages, elapsed times, the
  editor's next fires), and the demo's history is seeded up to it (:func:`~mimir_tui.demo.seed_demo`);
- the database's round trip: the app's ``timer`` stands still (latency 0.0 ms);
- paths: relative to the working directory (the database, the pipeline files, copied there from
  ``pipelines/``, and the run logs), so they read the same wherever the stage is built;
- ids: the demo's runs are named after their job and start; the instance is a seeded one;
- nothing moves by itself: no scheduler, no pipelines watcher, and a refresh interval longer
  than any shot, so the panes read once (the health pane twice: its integrity check).
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Input
from textual.worker import WorkerState

from ..config import LoggingSettings, PersistenceSettings, PipelinesSettings, Settings, UISettings
from ..demo import EXAMPLES_DIR, run_id, seed_demo, steps_of
from ..persistence import JobExecutionRecord, StepRecord, open_backend
from ..persistence.models import Worker
from .app import MimirApp
from .panes import Polling

#: The stage's "now": a Monday morning, so the weekday job's next fire is today.
AT = datetime(2026, 3, 2, 9, 41, 30, tzinfo=UTC)

#: The instance whose heartbeat the health pane shows, and which runs :data:`RUNNING`.
INSTANCE = "ops-1:4242:7f3a9c"
#: A run in flight (step 2 of 3), so the executions pane shows its progress.
RUNNING_JOB, RUNNING_START = "demo-nightly-report", AT - timedelta(seconds=95)

#: The terminal sizes of the snapshots.
SIZES = ((80, 24), (120, 40))


def stage_settings() -> Settings:
    """Settings with paths relative to the working directory, nothing running by itself."""
    return Settings(
        persistence=PersistenceSettings(database_path="data/mimir.db"),
        pipelines=PipelinesSettings(directory="pipelines", watch=False),
        logging=LoggingSettings(file_path="logs/mimir.log", executions_dir="logs/executions"),
        ui=UISettings(theme="mimir", refresh_interval=3600, run_scheduler=False),
    )


def build_stage() -> Settings:
    """The stage in the working directory: the example pipelines copied to ``pipelines/``, and
    a SQLite store seeded by :func:`seed_stage`. Returns its settings."""
    settings = stage_settings()
    shutil.copytree(EXAMPLES_DIR, settings.pipelines.directory, dirs_exist_ok=True)
    with open_backend(settings) as backend:
        seed_stage(backend)
    return settings


def seed_stage(backend: Any) -> None:
    """The demo's data at :data:`AT` (its pipelines from ``./pipelines``, where
    :func:`build_stage` copies them), an instance beating 4 s ago, and its run in flight."""
    seed_demo(backend, now=AT, examples=Path("pipelines"))
    backend.workers.register_worker(
        Worker(
            id=INSTANCE,
            host="ops-1",
            pid=4242,
            version="demo",
            started_at=AT - timedelta(hours=6),
            heartbeat_at=AT - timedelta(seconds=4),
            capacity=4,
            running=1,
            queues="default",
        )
    )
    job = backend.get_job(RUNNING_JOB)
    (name1, plugin1), (name2, plugin2) = steps_of(backend, job.pipeline)[:2]
    first = StepRecord(
        step_name=name1,
        plugin=plugin1,
        start_time=RUNNING_START,
        end_time=RUNNING_START + timedelta(seconds=2),
        duration=2000,
        status="success",
        output={"rows": 120},
    )
    second = StepRecord(step_name=name2, plugin=plugin2, start_time=first.end_time, status="running")
    backend.save_execution(
        JobExecutionRecord(
            id=run_id(RUNNING_JOB, RUNNING_START),
            job_id=RUNNING_JOB,
            pipeline=job.pipeline,
            start_time=RUNNING_START,
            status="running",
            triggered_by="scheduler",
            worker_id=INSTANCE,
            context={},
            steps=[first.to_json(), second.to_json()],
        )
    )


def stage_app(settings: Settings) -> MimirApp:
    """The dashboard over the stage, its clock at :data:`AT`, its latency timer still."""
    return MimirApp(settings, theme_name="mimir", scheduler=False, clock=lambda: AT, timer=lambda: 0.0)


# -- reaching each view --------------------------------------------------------------------------

#: Worker groups that run as long as their screen (not waited for).
LASTING = {"follow-log", "service"}


def busy(app: MimirApp) -> bool:
    """A worker or a read is still running, or its result is being shown."""
    for worker in app.workers:
        if worker.group not in LASTING and worker.state in (WorkerState.PENDING, WorkerState.RUNNING):
            return True
    for screen in app.screen_stack:
        for node in (screen, *screen.walk_children()):
            if isinstance(node, Polling) and node.polling:
                return True
            if isinstance(node, DataTable) and (node._require_update_dimensions or node._updated_cells):
                # A DataTable measures its columns for new rows at its next idle, and says so only
                # in these private flags (no public hook): a view taken before showed the columns
                # as wide as their headers, now and then in a whole-suite run.
                return True
    return False


def shape(app: MimirApp) -> tuple[int, int, str | None, int]:
    """What a finished worker's outcome changes when it is handled, a moment after the worker
    reads as finished (a screen pushed, a widget mounted or focused): the view is not still
    until this holds still too."""
    screen = app.screen
    focused = app.focused
    return len(app.screen_stack), id(screen), focused.id if focused else None, len(screen.walk_children())


async def settle(pilot: Pilot) -> None:
    """Wait until nothing reads or works any more (each read's rows shown), and still the
    inputs' cursors (a blinking cursor is not part of a view)."""
    app: Any = pilot.app
    quiet, seen = 0, None
    for _ in range(400):
        await pilot.pause()
        now = shape(app)
        quiet = 0 if busy(app) or now != seen else quiet + 1
        seen = now
        if quiet >= 3:
            break
    else:
        raise TimeoutError("the dashboard did not settle")
    for box in app.screen.query(Input):
        box.cursor_blink = False


@dataclass(frozen=True)
class Row:
    """A step of a shot: the cursor of a table moved to the row of ``key``."""

    table: str
    key: str


Shot = Callable[[Pilot], Awaitable[None]]


def steps(*steps: str | Row | Callable[[Any], None]) -> Shot:
    """A shot made of steps, each followed by :func:`settle`: a key to press, a :class:`Row`
    to select, or a function of the app (typing into the form in front)."""

    async def shot(pilot: Pilot) -> None:
        await settle(pilot)
        for step in steps:
            if isinstance(step, str):
                await pilot.press(step)
            elif isinstance(step, Row):
                table = pilot.app.screen.query_one(f"#{step.table}", DataTable)
                table.move_cursor(row=table.get_row_index(step.key), animate=False)
            else:
                step(pilot.app)
            await settle(pilot)

    return shot


def _execution(job_id: str, start: datetime) -> Callable[[Any], None]:
    """Open the screen of the run of ``job_id`` started at ``start``."""

    def open_it(app: Any) -> None:
        from .screens.execution import open_execution

        open_execution(app, run_id(job_id, start))

    return open_it


def _cron(text: str) -> Callable[[Any], None]:
    def type_it(app: Any) -> None:
        app.screen.query_one("#job-cron", Input).value = text

    return type_it


HOURLY = Row("jobs-table", "demo-hourly-report")

#: The vector store of the Vectors screen's shots: fixed documents, in the order added.
VECTOR_DOCS = {
    "runbooks": [
        ("restart", "Restart the scheduler after an upgrade: mimir-tui service restart.", "ops"),
        ("backup", "Back up the database and the vector store every night at 02:00.", "ops"),
        ("disk-full", "When the disk is full, clear old execution logs first.", "ops"),
        ("slow-queries", "Slow queries: look at the health pane's latency and the WAL size.", "db"),
    ],
    "faq": [
        ("cron", "Cron expressions have five fields, or six with seconds first.", "jobs"),
        ("zones", "Each job has its own time zone; the default is UTC.", "jobs"),
    ],
}


def seed_vectors(settings: Settings) -> None:
    """:data:`VECTOR_DOCS` in the stage's embedded store (offline embedder: no network)."""
    from ..vectors import open_store

    store = open_store(settings)
    try:
        for name, docs in VECTOR_DOCS.items():
            store.create(name, metadata={"owner": "ops-team"} if name == "runbooks" else None, exist_ok=True)
            store.add(name, [{"id": i, "text": t, "metadata": {"topic": topic}} for i, t, topic in docs])
    finally:
        store.close()


def seeded(seed: Callable[[Settings], None], key: str, *after: str) -> Shot:
    """``seed(settings)`` in a thread (it may import what the dashboard's start does not),
    then the key ``key`` that opens a screen, then the keys ``after``."""

    async def shot(pilot: Pilot) -> None:
        import asyncio

        await settle(pilot)
        await asyncio.to_thread(seed, pilot.app.settings)  # type: ignore[attr-defined]
        for pressed in (key, *after):
            await pilot.press(pressed)
            await settle(pilot)

    return shot


def vectors(*after: str) -> Shot:
    """The Vectors screen over :func:`seed_vectors`'s store, then the keys ``after``."""
    return seeded(seed_vectors, "v", *after)


def seed_backups(settings: Settings) -> None:
    """Two archives of the stage, made as if a day and two hours before :data:`AT`."""
    from ..ops.backup import create_backup

    for ago in (timedelta(days=1, hours=2), timedelta(hours=2)):
        create_backup(settings, now=AT - ago)


def backups(*after: str) -> Shot:
    """The Backup screen over :func:`seed_backups`'s archives, then the keys ``after``."""
    return seeded(seed_backups, "b", *after)


def seed_old_history(settings: Settings) -> None:
    """Runs of two demo jobs 31 to 60 days before :data:`AT`, with their log files: what the
    Retention screen's dry run finds (the demo's own history spans hours)."""
    folder = Path(settings.logging.executions_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open_backend(settings) as backend:
        for job_id, pipeline, count in (
            ("demo-hourly-report", "orders-report", 12),
            ("demo-nightly-report", "orders-by-region", 5),
        ):
            for i in range(count):
                start = AT - timedelta(days=31 + i * 29 // max(1, count - 1), hours=i)
                ident = run_id(job_id, start)
                backend.save_execution(
                    JobExecutionRecord(
                        id=ident,
                        job_id=job_id,
                        pipeline=pipeline,
                        start_time=start,
                        end_time=start + timedelta(seconds=4),
                        duration=4000,
                        status="failed" if i % 4 == 3 else "success",
                        triggered_by="scheduler",
                        context={},
                        steps=[],
                    )
                )
                (folder / f"{ident}.log").write_text("x" * (1000 + 10 * i))


def retention(*after: str) -> Shot:
    """The Retention screen over the demo and :func:`seed_old_history`, then the keys ``after``."""
    return seeded(seed_old_history, "k", *after)


#: Each view by name: what brings the dashboard, just started, to it.
SHOTS: dict[str, Shot] = {
    "dashboard": steps(),
    "jobs-zoomed": steps("1", "z"),
    "pipelines-zoomed": steps("2", "z"),
    "executions-zoomed": steps("3", "z"),
    "health-zoomed": steps("4", "z"),
    "execution": steps(_execution("demo-hourly-report", AT - timedelta(hours=1))),
    "execution-failed": steps(_execution("demo-hourly-report", AT - timedelta(hours=3))),
    "execution-running": steps(_execution(RUNNING_JOB, RUNNING_START)),
    "job-new": steps("n"),
    "job-edit-invalid-cron": steps(HOURLY, "e", _cron("0 25 * * *")),
    "pipeline": steps("2", Row("pipelines-table", "orders-report"), "enter"),
    "help": steps("question_mark"),
    "confirm-delete-job": steps(HOURLY, "d"),
    "vectors": vectors("down"),
    "vectors-query": vectors("down", "s", *"nightly backup", "enter"),
    "vacuum": steps("m"),
    "vacuum-checked": steps("m", "c"),
    "retention": retention(),
    "retention-keep-last": retention("e", "tab", "ctrl+u", "8", "enter"),
    "retention-confirm": retention("a"),
    "backup": backups(),
}
