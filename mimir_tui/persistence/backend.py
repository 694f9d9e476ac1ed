"""The seed's ``PersistenceBackend`` on SQLModel: one implementation for SQLite, PostgreSQL and
MySQL/MariaDB, composed of a store per concern over one shared :class:`~.db.Database`:

- ``backend.jobs`` and ``backend.pipelines``: the definitions (:mod:`.jobs`);
- ``backend.executions``: history, cancel, interrupts, retention (:mod:`.executions`);
- ``backend.runs``: claiming fires exactly once, and the run queue (:mod:`.runs`);
- ``backend.workers``: instances and heartbeats (:mod:`.workers`).

The seed's operations (``save_job`` ... ``delete_old_executions``, ``health``, ``close``) are
methods of the backend itself, each handing over to its store. Every method is a plain
synchronous call, safe from several threads; async code calls them in a thread. Every call is
counted and timed in :attr:`PersistenceBackend.metrics`; a failed call is logged with its
operation name and raised as a one-line :class:`~mimir_tui.errors.PersistenceError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..config import PersistenceSettings
from ..errors import DatabaseCorrupt, MimirError, PersistenceError
from .db import Database, damaged_message, is_damaged, operation
from .engine import display_url, restrict_file_modes, scrub
from .executions import UNFINISHED, ExecutionStore
from .jobs import JobDeletion, JobStore, PipelineStore
from .metrics import OperationMetrics
from .models import EXECUTIONS, JOBS, PIPELINES, JobExecutionRecord, PipelineConfig, ScheduledJob
from .runs import RunStore
from .workers import WorkerStore

#: Seconds the health check's quick check of a SQLite file may take (it reads the whole file;
#: ``mimir-tui health`` runs as a container's health check, with a timeout of 10 s).
QUICK_CHECK_SECONDS = 2.0
#: Seconds between two quick checks in one process (the dashboard polls health every 2 s).
INTEGRITY_EVERY = 300.0


class Store(Protocol):
    """What the scheduler, the pipelines, the service and the fronts use of the persistence
    layer: the stores, the seed's operations, and the database's clock. ``PersistenceBackend``
    is the one implementation; a test or another store can stand in for it."""

    jobs: JobStore
    pipelines: PipelineStore
    executions: ExecutionStore
    runs: RunStore
    workers: WorkerStore
    settings: PersistenceSettings

    @property
    def dialect(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def metrics(self) -> OperationMetrics: ...
    def database_now(self) -> datetime: ...
    def save_job(self, job: ScheduledJob) -> ScheduledJob: ...
    def get_job(self, job_id: str) -> ScheduledJob: ...
    def list_jobs(self, *, enabled: bool | None = None) -> list[ScheduledJob]: ...
    def delete_job(self, job_id: str) -> JobDeletion: ...
    def update_job(
        self, job: ScheduledJob, *, fields: Iterable[str] | None = None, if_updated_at: datetime | None = None
    ) -> ScheduledJob: ...
    def save_pipeline(self, pipeline: PipelineConfig) -> PipelineConfig: ...
    def get_pipeline(self, name: str) -> PipelineConfig: ...
    def list_pipelines(self) -> list[PipelineConfig]: ...
    def delete_pipeline(self, name: str) -> None: ...
    def update_pipeline(self, pipeline: PipelineConfig) -> PipelineConfig: ...
    def save_execution(
        self, execution: JobExecutionRecord, *, only_unfinished: bool = False, job_result: bool = False
    ) -> Any: ...
    def get_execution(self, execution_id: str) -> JobExecutionRecord: ...
    def list_executions(
        self,
        job_id: str | None = None,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[JobExecutionRecord]: ...
    def delete_old_executions(self, older_than: datetime, *, batch_size: int = 2000, keep_last: int = 0) -> int: ...
    def request_cancel(self, execution_id: str) -> JobExecutionRecord: ...
    def health(self, timer: Callable[[], float] = ...) -> float: ...
    def integrity(self) -> str | None: ...
    @property
    def corruption(self) -> str | None: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class PersistenceBackend:
    """Jobs, pipelines and execution history in one relational database (a :class:`Store`)."""

    def __init__(self, engine: Any, settings: PersistenceSettings) -> None:
        self.db = Database(engine, settings)
        self.settings = settings
        self.jobs = JobStore(self.db)
        self.pipelines = PipelineStore(self.db)
        self.executions = ExecutionStore(self.db)
        self.runs = RunStore(self.db)
        self.workers = WorkerStore(self.db, self.executions)
        self._closed = False
        self._integrity: tuple[float, str | None] = (0.0, None)  # (time.monotonic(), verdict)

    @property
    def engine(self) -> Any:
        return self.db.engine

    @property
    def dialect(self) -> str:
        return self.db.dialect.name

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def metrics(self) -> OperationMetrics:
        return self.db.metrics

    def change_marker(self) -> tuple[int, ...] | None:
        """Changes whenever anyone commits (SQLite; None on a server): see ``Database.marker``."""
        return self.db.marker()

    @operation("database_now")
    def database_now(self) -> datetime:
        """The database server's clock, in UTC (SQLite: this machine's): schedules fall due,
        and heartbeats are judged, on it."""
        return self.db.now()

    # -- the seed's interface ------------------------------------------------------------

    def save_job(self, job: ScheduledJob) -> ScheduledJob:
        return self.jobs.save(job)

    def get_job(self, job_id: str) -> ScheduledJob:
        return self.jobs.get(job_id)

    def list_jobs(self, *, enabled: bool | None = None) -> list[ScheduledJob]:
        return self.jobs.all(enabled=enabled)

    def delete_job(self, job_id: str) -> JobDeletion:
        return self.jobs.delete(job_id)

    def update_job(
        self, job: ScheduledJob, *, fields: Iterable[str] | None = None, if_updated_at: datetime | None = None
    ) -> ScheduledJob:
        return self.jobs.update(job, fields=fields, if_updated_at=if_updated_at)

    def save_pipeline(self, pipeline: PipelineConfig) -> PipelineConfig:
        return self.pipelines.save(pipeline)

    def get_pipeline(self, name: str) -> PipelineConfig:
        return self.pipelines.get(name)

    def list_pipelines(self) -> list[PipelineConfig]:
        return self.pipelines.all()

    def delete_pipeline(self, name: str) -> None:
        self.pipelines.delete(name)

    def update_pipeline(self, pipeline: PipelineConfig) -> PipelineConfig:
        return self.pipelines.update(pipeline)

    def save_execution(
        self, execution: JobExecutionRecord, *, only_unfinished: bool = False, job_result: bool = False
    ) -> Any:
        return self.executions.save(execution, only_unfinished=only_unfinished, job_result=job_result)

    def get_execution(self, execution_id: str) -> JobExecutionRecord:
        return self.executions.get(execution_id)

    def list_executions(
        self,
        job_id: str | None = None,
        limit: int = 50,
        *,
        status: str | Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[JobExecutionRecord]:
        return self.executions.history(job_id, limit, status=status, before=before)

    def delete_old_executions(self, older_than: datetime, *, batch_size: int = 2000, keep_last: int = 0) -> int:
        return self.executions.delete_old(older_than, batch_size=batch_size, keep_last=keep_last)

    def request_cancel(self, execution_id: str) -> JobExecutionRecord:
        return self.executions.request_cancel(execution_id)

    # -- health and lifecycle ------------------------------------------------------------

    @operation("health")
    def health(self, timer: Callable[[], float] = time.perf_counter) -> float:
        """One round trip to the database; returns its latency in seconds, as ``timer`` (a
        monotonic clock in seconds; a fixed one in the dashboard's snapshots) measures it."""
        start = timer()
        with self.db.read() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
        return timer() - start

    @property
    def corruption(self) -> str | None:
        """The first error that said the database file is damaged, if any operation met one."""
        return self.db.corruption

    @operation("integrity")
    def integrity(self) -> str | None:
        """SQLite: ``"ok"``, or ``"not finished in N s"`` when the quick check of the file ran out
        of time (a large database); a damaged file raises :class:`DatabaseCorrupt`. At most one
        check each :data:`INTEGRITY_EVERY` seconds (the dashboard asks every few seconds).
        None on a server backend (its server checks its own files)."""
        if self.dialect != "sqlite":
            return None
        checked_at, verdict = self._integrity
        if verdict is None or time.monotonic() - checked_at >= INTEGRITY_EVERY:
            done = self.db.quick_check(QUICK_CHECK_SECONDS)
            verdict = "ok" if done else f"not finished in {QUICK_CHECK_SECONDS:g} s (checked up to there)"
            self._integrity = (time.monotonic(), verdict)
        return verdict

    @operation("stats")
    def stats(self) -> dict[str, Any]:
        """Size on disk and row counts, for the health command and the DB health pane."""
        with self.db.read() as conn:
            counts = {
                table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (JOBS, PIPELINES, EXECUTIONS)
            }
            size = self._database_size(conn)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        report = {"row_counts": counts, "size_bytes": size, "schema_version": version}
        if self.dialect == "sqlite":  # the WAL apart: a large one means checkpoints lag
            path = Path(self.settings.database_path)
            report["wal_bytes"] = file_size(Path(f"{path}-wal"))
            report["database_bytes"] = file_size(path)
        return report

    @operation("size_bytes")
    def size_bytes(self) -> int:
        """The database's size: SQLite's file and its WAL; a server's own figure for it."""
        with self.db.read() as conn:
            return int(self._database_size(conn) or 0)

    def _database_size(self, conn: Any) -> int | None:
        if self.dialect == "sqlite":
            path = Path(self.settings.database_path)
            return file_size(path) + file_size(Path(f"{path}-wal"))
        if self.dialect == "postgresql":
            return conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        size = conn.execute(
            text(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            )
        ).scalar()
        return int(size or 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.db.close()
        if self.dialect == "sqlite":
            restrict_file_modes(Path(self.settings.database_path))

    def __enter__(self) -> PersistenceBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(settings: Any) -> PersistenceBackend:
    """Open the configured database and bring its schema up to date.

    ``settings`` is a :class:`~mimir_tui.config.Settings` or its ``persistence`` section.
    Raises :class:`PersistenceError` with one line (no password) when the database cannot be
    reached or is not ours.
    """
    from .engine import make_engine
    from .migrate import upgrade

    persistence: PersistenceSettings = getattr(settings, "persistence", settings)
    engine = make_engine(persistence)
    try:
        upgrade(engine)
    except MimirError:
        engine.dispose()
        raise
    except (SQLAlchemyError, DBAPIError, OSError) as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if is_damaged(exc):
            raise DatabaseCorrupt(damaged_message(persistence, first)) from None
        raise PersistenceError(f"cannot open {display_url(persistence)}: {scrub(first, persistence)}") from None
    if persistence.backend == "sqlite":
        restrict_file_modes(Path(persistence.database_path))
    return PersistenceBackend(engine, persistence)


__all__ = ["PersistenceBackend", "Store", "open_backend", "UNFINISHED"]


def _conforms(backend: PersistenceBackend) -> Store:
    return backend  # mypy checks that the backend is a Store


def file_size(path: Path) -> int:
    """The file's size in bytes; 0 if there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
