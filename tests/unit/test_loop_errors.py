"""LoopErrors: a bug's traceback once per distinct error, its repeats summed up at most once a
minute; a MimirError one line each time."""

from __future__ import annotations

import logging

import pytest

from mimir_tui.errors import DatabaseCorrupt, PersistenceError
from mimir_tui.loop_errors import LoopErrors, error_key

log = logging.getLogger("mimir.test.loop")


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def raising(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


def bug() -> None:
    1 / 0  # noqa: B018 - the bug itself: the tests look for this line in the stack


def other_bug() -> None:
    1 / 0  # noqa: B018 - the same bug, raised from another line


@pytest.fixture
def errors():
    return LoopErrors(log, "tick failed", clock=Ticks())


def lines(caplog):
    return [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == log.name]


def test_a_bug_logs_its_traceback_once_and_sums_up_its_repeats(errors, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=log.name)
    for _ in range(30):
        errors.report(raising(bug))
        errors.clock.now += 1
    assert lines(caplog) == [(logging.ERROR, "tick failed: ZeroDivisionError: division by zero", True)]
    assert "in bug" in caplog.text and "1 / 0" in caplog.text, "the stack, with the frame that raised"
    errors.clock.now += 31  # a minute after the first line: the next repeat brings the summary
    errors.report(raising(bug))
    assert lines(caplog)[1:] == [
        (
            logging.ERROR,
            "tick failed: ZeroDivisionError: division by zero repeated 30 times "
            "in the last 61 s (traceback logged at its first)",
            False,
        )
    ]
    errors.report(raising(bug))
    errors.ok()
    assert len(lines(caplog)) == 2, "at most one summary a minute"
    errors.clock.now += 60
    errors.ok()
    assert lines(caplog)[2][1].endswith("repeated 1 time in the last 60 s (traceback logged at its first)")
    errors.clock.now += 600
    errors.ok()
    errors.flush()
    assert len(lines(caplog)) == 3, "nothing pending: nothing more"


def test_distinct_errors_each_log_their_traceback(errors, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=log.name)
    errors.report(raising(bug))
    errors.report(raising(other_bug))  # same type and message, raised elsewhere
    errors.report(raising(lambda: int("x")), "could not fire job j1")
    errors.report(raising(lambda: int("y")), "could not fire job j2")
    errors.report(raising(bug), "could not fire job j3")  # a repeat: the label is not part of the key
    assert [(m, tb) for _, m, tb in lines(caplog)] == [
        ("tick failed: ZeroDivisionError: division by zero", True),
        ("tick failed: ZeroDivisionError: division by zero", True),
        ("could not fire job j1: ValueError: invalid literal for int() with base 10: 'x'", True),
        ("could not fire job j2: ValueError: invalid literal for int() with base 10: 'y'", True),
    ]
    errors.flush()
    assert lines(caplog)[-1][1].startswith("tick failed: ZeroDivisionError: division by zero repeated 1 time")


def test_a_mimir_error_is_one_line_each_time(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=log.name)
    errors = LoopErrors(log, "heartbeat failed", mimir_level=logging.WARNING, clock=Ticks())
    for _ in range(3):
        errors.report(PersistenceError("database is locked"))
    assert lines(caplog) == [(logging.WARNING, "heartbeat failed: database is locked", False)] * 3


def test_the_key_is_type_message_and_innermost_frame() -> None:
    first, again, elsewhere = raising(bug), raising(bug), raising(other_bug)
    assert error_key(first) == error_key(again)
    assert error_key(first) != error_key(elsewhere)
    kind, message, where = error_key(first)
    assert (kind, message) == ("builtins.ZeroDivisionError", "division by zero")
    assert where.endswith(f"test_loop_errors.py:{bug.__code__.co_firstlineno + 1}")
    assert error_key(ValueError("never raised")) == ("builtins.ValueError", "never raised", "")


def test_a_fatal_error_goes_to_on_fatal_and_is_not_logged_at_every_pass(caplog) -> None:
    """A damaged database fails every pass alike: the loop's owner stops on it (on_fatal); the
    line was logged once by the database that met it, not once a pass here (issue 9, item 8)."""
    caplog.set_level(logging.DEBUG, logger=log.name)
    seen: list[Exception] = []
    errors = LoopErrors(log, "tick failed", clock=Ticks(), on_fatal=seen.append)
    damaged = DatabaseCorrupt("the database file /x/mimir.db is damaged (database disk image is malformed)")
    for _ in range(5):
        errors.report(damaged)
    assert seen == [damaged] * 5 and lines(caplog) == []
    errors.report(PersistenceError("list_jobs failed: database is locked"))  # not fatal: one line
    assert len(lines(caplog)) == 1 and seen == [damaged] * 5
