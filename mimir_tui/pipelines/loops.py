"""An event loop kept by a thread for the runs it executes one after another (the scheduler's run
slots), instead of a new loop per run.

``asyncio.run`` per run makes a loop, and with it a thread pool whose threads are started for
the run's database calls and joined at its end: some 1.5 ms of CPU per run, more than the rest
of a one-step run. A thread inside :func:`thread_loop` keeps one loop (and its pool) for every
run it executes; :func:`run` uses it when there is one, ``asyncio.run`` otherwise.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


@contextmanager
def thread_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """While in the block, :func:`run` in this thread runs on one loop; closed at the end."""
    loop = asyncio.new_event_loop()
    _local.loop = loop
    try:
        yield loop
    finally:
        _local.loop = None
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` to its end: on this thread's kept loop, else on a new one (``asyncio.run``).
    Tasks it leaves behind are cancelled, as ``asyncio.run`` does."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed() or loop.is_running():
        return asyncio.run(coro)
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    finally:
        _cancel_leftovers(loop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
