"""The turns of the runs on kept loops (the scheduler's run slots; see mimir_tui.pipelines.loops):
a run gives its turn up while its loop waits, a run that blocks its loop holds the others up by
``TURN_WAIT`` at most, and no run keeps the turn once it has ended, however it ended."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from mimir_tui.pipelines import loops


def _on_kept_loop(
    make: Callable[[], Coroutine[Any, Any, Any]], turns: bool = True
) -> tuple[threading.Thread, dict[str, Any]]:
    """A thread running ``make()`` with :func:`loops.run` on a kept loop, as a run slot on
    SQLite does (``turns``)."""
    box: dict[str, Any] = {}

    def target() -> None:
        with loops.thread_loop(turns=turns):
            try:
                box["result"] = loops.run(make())
            except Exception as exc:  # noqa: BLE001 - looked at by the test
                box["error"] = exc
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


async def _turn_held() -> bool:
    return loops.holds_turn()


@pytest.mark.timeout(30)
def test_a_run_waiting_on_its_step_gives_the_turn_to_another() -> None:
    waiting = threading.Event()

    async def waits() -> bool:
        held = loops.holds_turn()
        waiting.set()
        await asyncio.sleep(1.0)  # a step's network call: the loop waits
        return held

    first, first_box = _on_kept_loop(waits)
    assert waiting.wait(10)
    time.sleep(0.1)
    second, second_box = _on_kept_loop(_turn_held)
    second.join(10)
    assert second_box == {"result": True, "ended": second_box["ended"]}  # it had the turn
    assert first.is_alive()  # while the first still waited
    first.join(10)
    assert first_box["result"] is True


@pytest.mark.timeout(30)
def test_a_run_blocking_its_loop_holds_the_others_up_by_the_turn_wait_at_most() -> None:
    blocking = threading.Event()

    async def blocks() -> None:
        blocking.set()
        time.sleep(1.5)  # a step that blocks its loop, keeping the turn

    first, _ = _on_kept_loop(blocks)
    assert blocking.wait(10)
    started = time.monotonic()
    second, second_box = _on_kept_loop(_turn_held)
    second.join(10)
    assert second_box["result"] is False  # it went on without the turn ...
    assert second_box["ended"] - started < 1.0  # ... after TURN_WAIT, not the first's 1.5 s
    assert first.is_alive()
    first.join(10)


@pytest.mark.timeout(30)
def test_no_run_keeps_the_turn_after_it_ends_even_by_an_error() -> None:
    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("a step's bug")

    first, first_box = _on_kept_loop(fails)
    first.join(10)
    assert isinstance(first_box["error"], ValueError)
    second, second_box = _on_kept_loop(_turn_held)
    second.join(10)
    assert second_box["result"] is True  # the turn was free: taken at once, not after TURN_WAIT
    assert loops.run(_turn_held()) is False  # no kept loop here: asyncio.run, and no turn
    third, third_box = _on_kept_loop(_turn_held, turns=False)  # a run slot on a server
    third.join(10)
    assert third_box["result"] is False
