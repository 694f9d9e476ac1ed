"""An event loop kept by a thread for the runs it executes one after another (the scheduler's run
slots), instead of a new loop per run; and the turns those threads take.

``asyncio.run`` per run makes a loop, and with it a thread pool whose threads are started for
the run's database calls and joined at its end: some 1.5 ms of CPU per run, more than the rest
of a one-step run. A thread inside :func:`thread_loop` keeps one loop (and its pool) for every
run it executes; :func:`run` uses it when there is one, ``asyncio.run`` otherwise.

Turns. Only one thread runs Python at a time anyway (the GIL), but when several run slots are
busy at once, each release of the GIL (every SQLite call, every write of a log) hands it to
another slot and back: two thread switches a call, some 0.4 ms of CPU per short run with four
slots busy (measured: 1.20 against 0.75 ms per one-step run; ``bench/scheduler.py``, phase h).
So the runs on kept loops made with ``turns`` take turns: a run holds the turn while its loop
works, through its database calls, and gives it up while the loop waits (a step's network call,
a timer, a sync step in its thread, a save handed to a worker thread) and when the run ends. A
run that keeps the turn too long (a step blocking its loop, a database lock held elsewhere)
holds up the others by :data:`TURN_WAIT` at most: they then go on without a turn, as they did
before turns. The threads that run sync steps and saves take no turn.

Turns are for SQLite, where a run's database calls are work of this process (and its writes
wait for each other at the write gate anyway). On a server each call is a wait for another
process, which the other slots should use: with turns, one PostgreSQL instance spent a quarter
less CPU on 1,000 fires but started them a sixth slower (the machine 41% busy instead of 62%).
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: The longest a run waits for its turn before it goes on without one.
TURN_WAIT = 0.05

_local = threading.local()
_turn = threading.Lock()


def _take_turn() -> None:
    _local.turn = _turn.acquire(timeout=TURN_WAIT)


def holds_turn() -> bool:
    """Whether the run on this thread holds the turn (for tests and diagnostics)."""
    return bool(getattr(_local, "turn", False))


def _give_turn() -> None:
    if getattr(_local, "turn", False):
        _local.turn = False
        _turn.release()


class _TurnSelector(selectors.DefaultSelector):
    """The kept loop's selector: a wait of the loop inside :func:`run` gives the turn up."""

    def select(self, timeout: float | None = None) -> Any:
        if (timeout is not None and timeout <= 0) or not getattr(_local, "running", False):
            return super().select(timeout)
        _give_turn()
        try:
            return super().select(timeout)
        finally:
            _take_turn()


@contextmanager
def thread_loop(*, turns: bool = False) -> Iterator[asyncio.AbstractEventLoop]:
    """While in the block, :func:`run` in this thread runs on one loop, taking turns with the
    other such threads if ``turns``; closed at the end."""
    loop = asyncio.SelectorEventLoop(_TurnSelector()) if turns else asyncio.new_event_loop()
    _local.loop, _local.turns = loop, turns
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
    """``coro`` to its end: on this thread's kept loop (taking turns if it does: see the
    module's docstring), else on a new one (``asyncio.run``). Tasks it leaves behind are
    cancelled, as ``asyncio.run`` does."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed() or loop.is_running():
        return asyncio.run(coro)
    if _local.turns:
        _take_turn()
    _local.running = True
    try:
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        finally:
            _cancel_leftovers(loop)
    finally:
        _local.running = False
        _give_turn()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
