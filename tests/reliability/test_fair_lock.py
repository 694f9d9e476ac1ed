"""FairLock survives a waiter that is interrupted while it waits (a signal handler raising)."""

from __future__ import annotations

import signal
import threading
import time
import types

import pytest

from mimir_tui.persistence import direct
from mimir_tui.persistence.direct import FairLock


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt (a BaseException, as that is) without stopping pytest."""


def _acquire_in_thread(lock: FairLock, timeout: float = 1.0) -> bool:
    """Whether another thread gets the lock within ``timeout`` seconds (and then frees it)."""
    got = threading.Event()

    def take() -> None:
        lock.acquire()
        got.set()
        lock.release()

    threading.Thread(target=take, daemon=True).start()
    return got.wait(timeout)


def _wait_for_waiters(lock: FairLock, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(lock._waiters) < count:
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)


def _holder(lock: FairLock) -> tuple[threading.Event, threading.Thread]:
    """A thread holding ``lock`` until the returned event is set."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(5)
    return done, thread


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_waiter_interrupted_by_a_signal_leaves_the_lock_usable() -> None:
    lock = FairLock()
    done, holder = _holder(lock)

    def on_alarm(_signum, _frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            lock.acquire()  # the main thread waits behind the holder until the alarm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(lock._waiters) == 0  # the dead entry left the queue

    done.set()
    holder.join(5)
    assert _acquire_in_thread(lock), "the lock went to the interrupted waiter: every later writer hangs"
    assert lock._owner is None


def test_waiter_interrupted_after_the_handover_passes_the_lock_on(monkeypatch) -> None:
    """The signal lands just as the lock is handed over: the waiter owns it, and must give it
    to the next in line (here a queued thread) instead of keeping it."""
    lock = FairLock()  # its mutex is a real lock: made before the patch below
    made: list[object] = []

    class TurnInterruptedOnceGiven:
        """The first waiter's turn: its second acquire waits for the handover, then raises."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._calls = 0

        def acquire(self) -> bool:
            self._calls += 1
            self._lock.acquire()
            if self._calls == 2:
                raise Interrupted
            return True

        def release(self) -> None:
            self._lock.release()

    def make_lock():
        if not made:
            made.append(TurnInterruptedOnceGiven())
            return made[0]
        made.append(threading.Lock())
        return made[-1]

    monkeypatch.setattr(direct, "threading", types.SimpleNamespace(Lock=make_lock, get_ident=threading.get_ident))

    done, holder = _holder(lock)
    errors: list[BaseException] = []
    second_got = threading.Event()

    def first() -> None:
        try:
            lock.acquire()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def second() -> None:
        lock.acquire()
        second_got.set()
        lock.release()

    t1 = threading.Thread(target=first, daemon=True)
    t1.start()
    _wait_for_waiters(lock, 1)
    t2 = threading.Thread(target=second, daemon=True)
    t2.start()
    _wait_for_waiters(lock, 2)

    done.set()  # the holder releases: the lock goes to the first waiter, which is interrupted
    holder.join(5)
    t1.join(5)
    assert [type(e) for e in errors] == [Interrupted]
    assert second_got.wait(1), "the interrupted waiter kept the lock"
    t2.join(5)
    assert _acquire_in_thread(lock)
    assert lock._owner is None and len(lock._waiters) == 0


def test_only_waiter_interrupted_after_the_handover_frees_the_lock(monkeypatch) -> None:
    lock = FairLock()
    calls = {"n": 0}

    class Turn:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def acquire(self) -> bool:
            calls["n"] += 1
            self._lock.acquire()
            if calls["n"] == 2:
                raise Interrupted
            return True

        def release(self) -> None:
            self._lock.release()

    monkeypatch.setattr(direct, "threading", types.SimpleNamespace(Lock=Turn, get_ident=threading.get_ident))
    done, holder = _holder(lock)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            lock.acquire()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t1 = threading.Thread(target=first, daemon=True)
    t1.start()
    _wait_for_waiters(lock, 1)
    done.set()
    holder.join(5)
    t1.join(5)
    assert [type(e) for e in errors] == [Interrupted]
    monkeypatch.undo()
    assert _acquire_in_thread(lock), "the interrupted waiter kept the lock"
    assert lock._owner is None
