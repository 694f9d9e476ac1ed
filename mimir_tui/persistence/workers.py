"""Instances and their heartbeats (``workers``): who is alive, who died, and what they left."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update

from .db import Database, one_of, operation
from .executions import LIVE_WORKER, ExecutionStore
from .models import WORKERS, JobExecutionRecord, Worker, WorkerStatus, values_of
from .rows import WorkerRow
from .types import as_utc


class WorkerStore:
    """``workers``. Heartbeats are written and judged on the database's clock, so instances on
    machines whose clocks disagree do not take each other for dead."""

    def __init__(self, db: Database, executions: ExecutionStore) -> None:
        self.db = db
        self.executions = executions

    @operation("register_worker")
    def register_worker(self, worker: Worker) -> Worker:
        now = None if worker.started_at and worker.heartbeat_at else self.db.now()
        worker.started_at = as_utc(worker.started_at) or now
        worker.heartbeat_at = as_utc(worker.heartbeat_at) or now
        with self.db.write() as conn:
            conn.execute(insert(WORKERS), values_of(worker, WORKERS))
        return worker

    @operation("heartbeat")
    def heartbeat(
        self,
        worker_id: str,
        *,
        now: datetime | None = None,
        status: str | None = None,
        revive: bool = False,
        load: tuple[int, int] | None = None,
    ) -> bool:
        """Refresh the heartbeat. False if the row is gone or was declared dead by a peer.

        ``revive``: also bring back a row a peer declared dead (its runs stay interrupted).
        ``load``: (run slots, slots taken), for peers deciding who takes a fire."""
        values: dict[str, Any] = {"heartbeat_at": as_utc(now) or self.db.now()}
        if status is not None:
            values["status"] = status
        if load is not None:
            values["capacity"], values["running"] = load
        shape = tuple(sorted(values))

        def build() -> Any:
            condition = WORKERS.c.id == bindparam("worker_id")
            if not revive:
                condition = and_(condition, one_of(WORKERS.c.status, LIVE_WORKER))
            sets = {name: bindparam(name, type_=WORKERS.c[name].type) for name in shape}
            return update(WORKERS).where(condition).values(**sets)

        prepared = self.db.prepare(("heartbeat", shape, revive), build)  # every few seconds
        with self.db.raw_write() as tx:
            return tx.execute(prepared, {**values, "worker_id": worker_id}) == 1

    @operation("list_workers")
    def list_workers(self) -> list[WorkerRow]:
        """Every instance the table remembers, oldest first, as lean rows."""
        prepared = self.db.prepare(
            "list_workers", lambda: select(*(WORKERS.c[n] for n in WorkerRow.COLUMNS)).order_by(WORKERS.c.started_at)
        )
        return [WorkerRow(r) for r in self.db.fetch(prepared, convert=False)]

    @operation("live_workers")
    def live_workers(self, *, stale_after: float, now: datetime | None = None) -> list[WorkerRow]:
        """Instances running or stopping whose last heartbeat is at most ``stale_after`` old."""
        cutoff = (as_utc(now) or self.db.now()) - timedelta(seconds=stale_after)
        return [w for w in self.list_workers() if w.status in LIVE_WORKER and w.heartbeat_at >= cutoff]

    def serving(self, queue: str, *, stale_after: float, now: datetime | None = None) -> list[WorkerRow]:
        """The live instances that claim runs of ``queue``: running (a stopping one takes no
        more work) and serving it."""
        return [
            w
            for w in self.live_workers(stale_after=stale_after, now=now)
            if w.status == WorkerStatus.running.value and queue in w.serves()
        ]

    @operation("reap_stale_workers")
    def reap_stale_workers(
        self, *, stale_after: float, now: datetime | None = None, also: list[str] | None = None
    ) -> tuple[list[str], list[JobExecutionRecord]]:
        """Declare workers whose heartbeat is older than ``stale_after`` seconds dead (plus the
        ids in ``also``, e.g. this host's crashed predecessors) and interrupt their runs.

        A live worker's runs are never touched: the status change is a compare-and-set on the
        stale heartbeat, so a worker that heartbeats meanwhile keeps its runs.

        Two transactions (mark dead, then interrupt): if the reaper dies in between, the dead
        worker's runs are picked up by ``ExecutionStore.sweep_orphaned_runs``."""
        when = as_utc(now) or self.db.now()
        cutoff = when - timedelta(seconds=stale_after)
        forced = set(also or ())
        dead: list[str] = []
        if not forced:
            # A read first: at every heartbeat of every instance, the common case (nobody is
            # stale) takes no write lock.
            anyone = self.db.prepare(
                "any_stale_worker",
                lambda: (
                    select(WORKERS.c.id)
                    .where(
                        one_of(WORKERS.c.status, LIVE_WORKER),
                        WORKERS.c.heartbeat_at < bindparam("cutoff", type_=WORKERS.c.heartbeat_at.type),
                    )
                    .limit(1)
                ),
            )
            if not self.db.fetch(anyone, {"cutoff": cutoff}):
                return [], []
        with self.db.write() as conn:
            candidates = conn.execute(
                select(WORKERS.c.id, WORKERS.c.heartbeat_at).where(WORKERS.c.status.in_(LIVE_WORKER))
            ).all()
            for worker_id, beat in candidates:
                if worker_id not in forced and as_utc(beat) >= cutoff:
                    continue
                condition = and_(WORKERS.c.id == worker_id, WORKERS.c.status.in_(LIVE_WORKER))
                if worker_id not in forced:
                    condition = and_(condition, WORKERS.c.heartbeat_at < cutoff)
                if conn.execute(update(WORKERS).where(condition).values(status=WorkerStatus.dead.value)).rowcount:
                    dead.append(worker_id)
        interrupted = (
            self.executions.interrupt_runs(dead, "interrupted: the instance running it stopped heartbeating", now=when)
            if dead
            else []
        )
        return dead, interrupted

    @operation("prune_workers")
    def prune_workers(self, *, older_than: datetime) -> int:
        """Forget stopped and dead workers last seen before ``older_than``."""
        with self.db.write() as conn:
            return conn.execute(
                delete(WORKERS).where(
                    and_(WORKERS.c.status.notin_(LIVE_WORKER), WORKERS.c.heartbeat_at < as_utc(older_than))
                )
            ).rowcount
