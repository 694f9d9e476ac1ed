"""Who runs runs: a process's worker identity, its registration and heartbeat, and how a
crashed predecessor on this host is recognised.

A run carries the id of the worker executing it. While the worker heartbeats, the run is its;
once the heartbeat goes stale (or the process is seen gone on this host), a peer interrupts
the run and queues its retry. So every process that executes runs registers as a worker: the
service's :class:`~mimir_tui.scheduler.core.Scheduler`, and a one-off command through
:func:`worker_session`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..loop_errors import LoopErrors
from ..persistence import Worker, new_id
from ..persistence.models import queues_text
from ..persistence.rows import WorkerRow

log = logging.getLogger("mimir.scheduler")

#: Worker ids registered by this process. A live-looking row with this process's pid and an id
#: not in here was left by an earlier process that had the same pid: a container restarted
#: with the same hostname runs its service under the same pid again.
_LOCAL_WORKERS: set[str] = set()


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"


def instance_key() -> str | None:
    """This process's kernel boot and pid namespace: where its pid means something."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{namespace}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _crashed_here(worker: WorkerRow, host: str) -> bool:
    """True if ``worker`` ran on this host, in this boot and pid namespace, and its process is
    gone. (Elsewhere its pid says nothing here: its stale heartbeat will tell.)"""
    if worker.host != host or worker.status not in ("running", "stopping"):
        return False
    key, ours = worker.instance_key, instance_key()
    if key and ours and key != ours:
        return False
    pid = int(worker.pid)
    if pid == os.getpid():
        return worker.id not in _LOCAL_WORKERS
    return not _pid_alive(pid)


def crashed_peers(backend: Any, worker_id: str) -> list[str]:
    """The registered workers of this host, other than ``worker_id``, whose process is gone:
    their runs need not wait for their heartbeat to go stale."""
    host = socket.gethostname()
    return [w.id for w in backend.workers.list_workers() if w.id != worker_id and _crashed_here(w, host)]


def register_worker(
    backend: Any,
    worker_id: str,
    now: datetime | None = None,
    load: tuple[int, int] | None = None,
    queues: Iterable[str] = (),
) -> None:
    """Register ``worker_id`` as this process's worker (status running). ``now`` None: the
    database's clock (see ``database_now``). ``load``: (run slots, slots taken); ``queues``:
    those it serves (none for a command that runs one execution itself)."""
    _LOCAL_WORKERS.add(worker_id)
    capacity, running = load or (None, None)
    backend.workers.register_worker(
        Worker(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            started_at=now,
            heartbeat_at=now,
            instance_key=instance_key(),
            capacity=capacity,
            running=running,
            queues=queues_text(queues),
        )
    )


@contextmanager
def worker_session(
    backend: Any, settings: Any, *, worker_id: str | None = None, register: Callable[[], None] | None = None
) -> Iterator[str]:
    """Own runs as a registered worker for the length of the block: register (through
    ``register()`` when given, e.g. an executor's, which also recovers this host's crashed
    predecessors; else :func:`register_worker`), heartbeat every
    ``scheduler.heartbeat_interval`` seconds in a daemon thread, and mark the worker
    ``stopped`` at the end. Yields the worker id, which every run executed in the block must
    carry: if this process dies, its heartbeat goes stale and a peer interrupts (and retries)
    those runs, instead of leaving them ``running`` for good."""
    worker_id = worker_id or make_worker_id()
    if register is not None:
        register()
    else:
        register_worker(backend, worker_id)
    stop = threading.Event()
    interval = settings.scheduler.heartbeat_interval
    # A database hiccup is tried again next beat (and logged at debug level only: the command
    # running the block says what matters); a bug is logged once with its stack.
    errors = LoopErrors(log, f"heartbeat of {worker_id} failed", mimir_level=logging.DEBUG)

    def beat() -> None:
        while not stop.wait(interval):
            try:
                if not backend.workers.heartbeat(worker_id):
                    # Declared dead by a peer (we stalled): come back; the runs it
                    # interrupted stay interrupted (their saves are refused).
                    backend.workers.heartbeat(worker_id, status="running", revive=True)
                errors.ok()
            except Exception as exc:  # noqa: BLE001 - never end the heartbeat
                errors.report(exc)

    beater = threading.Thread(target=beat, name="mimir-heartbeat", daemon=True)
    beater.start()
    try:
        yield worker_id
    finally:
        stop.set()
        beater.join(timeout=10)  # a beat in flight must not revive the row after "stopped"
        try:
            backend.workers.heartbeat(worker_id, status="stopped")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not mark worker %s stopped: %s", worker_id, exc)
