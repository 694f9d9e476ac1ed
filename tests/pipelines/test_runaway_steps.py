"""Steps that never yield (issue 9, item 1): a catastrophic regular expression over data nobody
vetted, a plugin that loops without looking at its cancel event (the CLI's side, SIGTERM
included, is in test_pipeline_cli.py). A timeout and a cancel stop
the step, and the rest of the process (heartbeats, fires: any other thread) keeps running
meanwhile."""

from __future__ import annotations

import threading
import time

import pytest
from test_pipeline_cli import REDOS
from test_pipeline_runner import _in_thread, _wait_for, spec_of

from mimir_tui.pipelines.registry import Plugin, PluginConfig

#: Backtracks for minutes over ``"a" * 39 + "!"`` with the standard library's ``re`` (which holds
#: the GIL throughout) and with ``regex`` too, which gives up at its timeout.
CATASTROPHIC = "^(a|aa)+$"
EVIL_TEXT = "a" * 39 + "!"


def _filter_pipeline(pattern: str, timeout: float) -> str:
    return REDOS.format(timeout=timeout, text=EVIL_TEXT, pattern=pattern)


class Ticker:
    """A thread that counts how often it gets to run: a heartbeat's stand-in."""

    def __init__(self) -> None:
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.ticks += 1

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.timeout(60)
def test_redos_attack_times_out_its_step_while_other_threads_keep_running(runner):
    started = time.monotonic()
    with Ticker() as ticker:
        record = runner.run(spec_of(_filter_pipeline(CATASTROPHIC, timeout=1)))
        elapsed = time.monotonic() - started
    assert record.status == "timed_out"
    # The GIL was free: the ticker ran most of the time (about 100 ticks a second), as a heartbeat would.
    assert ticker.ticks > 30 * elapsed


@pytest.mark.timeout(60)
def test_redos_attack_a_match_gives_up_at_the_time_it_is_given():
    """The match itself ends (it does not go on burning a core after its step was abandoned)."""
    from mimir_tui.pipelines.plugins.transform import Operation, apply_operations
    from mimir_tui.pipelines.registry import StepTimedOut

    op = Operation(operation="regex", pattern=CATASTROPHIC)
    with pytest.raises(StepTimedOut, match="did not finish matching"):
        apply_operations([op], [EVIL_TEXT], timeout=0.2)


@pytest.mark.timeout(60)
def test_redos_attack_is_stopped_by_a_cancel_request(runner):
    thread, box = _in_thread(lambda: runner.run(spec_of(_filter_pipeline(CATASTROPHIC, timeout=30)), execution_id="x"))
    _wait_for(lambda: runner.backend.get_execution("x").steps)
    runner.backend.request_cancel("x")
    thread.join(10)  # well before the step's 30 s
    assert box["result"].status == "cancelled"


class Spin(Plugin):
    """Loops for ever in Python and never looks at ``ctx.cancel_event``; swallows Exception."""

    type = "Test"
    name = "spin"

    class Config(PluginConfig):
        pass

    def execute(self, config, ctx):
        n = 0
        while True:
            try:
                n += 1
            except Exception:  # noqa: BLE001 - the point: a plugin that swallows errors
                pass


def _step_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mimir-step-Spin")]


@pytest.mark.timeout(60)
def test_a_plugin_looping_for_ever_is_stopped_not_just_abandoned(runner, registry):
    registry.register(Spin)
    record = runner.run(spec_of("name: p\nsteps:\n  - {name: loop, plugin: Test.spin, timeout: 0.3}\n"))
    assert record.status == "timed_out"
    # Its thread is stopped after the grace period (before, it spun at 100% CPU for good).
    _wait_for(lambda: not _step_threads(), timeout=10)
