"""The execution engine: records, failure propagation, timeouts, cancellation, logs, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from itertools import pairwise

import pytest

from mimir_tui.errors import NotFound
from mimir_tui.persistence import ScheduledJob, open_backend
from mimir_tui.pipelines.cancel import CancelToken
from mimir_tui.pipelines.runner import PipelineRunner
from mimir_tui.pipelines.summaries import summarize
from mimir_tui.secrets import is_secret_key, mask_tree


def spec_of(text: str, source: str = "test.yaml"):
    from mimir_tui.pipelines.spec import parse_text

    specs, issues = parse_text(textwrap.dedent(text).lstrip("\n"), source)
    assert not issues, [str(i) for i in issues]
    return specs[0]


THREE_STEPS = """
name: three
steps:
  - name: one
    plugin: Test.echo
    config: {value: [1, 2, 3]}
    output: first
  - name: two
    plugin: Test.echo
    config: {value: "{{ first.value }}", count: "{{ first.value.2 }}"}
    output: second
  - name: three
    plugin: Test.echo
    config: {value: "saw {{ second.count }} and {{ first.value }}"}
    output: third
"""


@pytest.fixture
def any_runner(backend, backend_settings, registry):
    """A runner on each database backend (SQLite, PostgreSQL, MariaDB)."""
    return PipelineRunner(backend, backend_settings, registry)


# -- success ------------------------------------------------------------------------------------


def test_steps_share_one_context_and_the_record_is_complete(any_runner):
    record = any_runner.run(spec_of(THREE_STEPS))
    assert record.status == "success" and record.error is None
    assert record.end_time is not None and record.duration is not None and record.duration >= 0
    assert record.triggered_by == "manual" and record.job_id is None
    assert record.context["first"]["value"] == [1, 2, 3]
    assert record.context["second"] == {"value": [1, 2, 3], "count": 3, "seen": ["first"]}
    assert record.context["third"]["value"] == "saw 3 and [1, 2, 3]"
    steps = record.step_records()
    assert [s.step_name for s in steps] == ["one", "two", "three"]
    assert all(s.status == "success" and s.duration is not None and s.start_time and s.end_time for s in steps)
    assert steps[1].input == {"value": [1, 2, 3], "count": 3}
    assert steps[1].output["count"] == 3

    stored = any_runner.backend.get_execution(record.id)
    assert stored.status == "success"
    assert stored.steps == record.steps
    assert stored.context == record.context


async def test_run_async_and_run_from_inside_a_loop(runner):
    record = await runner.run_async(spec_of(THREE_STEPS), triggered_by="api")
    assert record.status == "success" and record.triggered_by == "api"
    # The blocking API from inside a running loop runs on a loop of its own.
    again = runner.run(spec_of(THREE_STEPS))
    assert again.status == "success" and again.id != record.id


def test_on_step_sees_each_step_start_and_end(runner):
    seen = []
    runner.run(spec_of(THREE_STEPS), on_step=lambda step, rec: seen.append((step.step_name, step.status)))
    assert seen == [
        ("one", "running"),
        ("one", "success"),
        ("two", "running"),
        ("two", "success"),
        ("three", "running"),
        ("three", "success"),
    ]


def test_run_by_name_from_the_database_and_by_yaml_path(runner, store, registry, write_yaml):
    from mimir_tui.pipelines.store import import_path

    path = write_yaml("three.yaml", THREE_STEPS)
    import_path(store, path, registry)
    by_name = runner.run("three", job_id=None)
    assert by_name.status == "success" and by_name.pipeline == "three"
    by_path = runner.run(str(path))
    assert by_path.status == "success"


def test_job_fields_are_recorded(runner, store):
    job = store.save_job(ScheduledJob(name="j", pipeline="three", cron_expr="* * * * *"))
    record = runner.run(
        spec_of(THREE_STEPS),
        job_id=job.id,
        triggered_by="scheduler",
        execution_id="exec-fixed-id",
        attempt=2,
        worker_id="worker-1",
    )
    stored = store.get_execution("exec-fixed-id")
    assert (stored.job_id, stored.triggered_by, stored.attempt, stored.worker_id) == (
        job.id,
        "scheduler",
        2,
        "worker-1",
    )
    assert record.id == "exec-fixed-id"
    # A finished record is returned untouched if asked to run again under the same id.
    again = runner.run(spec_of(THREE_STEPS), job_id=job.id, execution_id="exec-fixed-id")
    assert again.end_time == stored.end_time and again.status == "success"


# -- failures -----------------------------------------------------------------------------------


def test_a_failing_step_stops_the_run(any_runner):
    spec = spec_of("""
        name: failing
        steps:
          - {name: one, plugin: Test.echo, config: {value: 1}, output: first}
          - {name: two, plugin: Test.boom, config: {message: "the disk is on fire"}, output: second}
          - {name: three, plugin: Test.echo, output: third}
    """)
    record = any_runner.run(spec)
    assert record.status == "failed"
    assert record.error == "step 2 (two) failed: ValueError: the disk is on fire"
    steps = record.step_records()
    assert [(s.step_name, s.status) for s in steps] == [("one", "success"), ("two", "failed")]
    assert steps[1].error == "ValueError: the disk is on fire"
    assert list(record.context) == ["first"]
    assert any_runner.backend.get_execution(record.id).status == "failed"


@pytest.mark.parametrize(
    "step",
    [
        "{name: bad, plugin: Test.boom, config: {exit: true}}",
        "{name: bad, plugin: Test.aboom}",
    ],
)
def test_a_plugin_that_raises_anything_fails_its_step_not_the_process(runner, step):
    spec = spec_of(f"name: p\nsteps:\n  - {step}\n  - {{name: after, plugin: Test.echo}}\n")
    record = runner.run(spec)
    assert record.status == "failed"
    assert record.error.startswith("step 1 (bad) failed: ")
    assert ("SystemExit" in record.error) or ("async kaboom" in record.error)


def test_an_unset_env_var_is_a_step_error_naming_it(runner, monkeypatch):
    monkeypatch.delenv("MIMIR_TEST_UNSET_VAR", raising=False)
    monkeypatch.setenv("MIMIR_TEST_SET_VAR", "hello")
    spec = spec_of("""
        name: env
        steps:
          - name: ok
            plugin: Test.echo
            config: {value: "${MIMIR_TEST_SET_VAR} ${MIMIR_TEST_DEFAULTED:-dflt}"}
            output: a
          - {name: needs, plugin: Test.echo, config: {value: "${MIMIR_TEST_UNSET_VAR}"}}
    """)
    record = runner.run(spec)
    assert record.context["a"]["value"] == "hello dflt"
    assert record.status == "failed"
    assert "step 2 (needs) failed: environment variable MIMIR_TEST_UNSET_VAR is not set" in record.error


def test_a_config_wrong_at_run_time_names_the_key(runner):
    spec = spec_of("""
        name: types
        steps:
          - {name: one, plugin: Test.echo, config: {value: "not a number"}, output: a}
          - {name: two, plugin: Test.echo, config: {count: "{{ a.value }}"}}
    """)
    record = runner.run(spec)
    assert record.status == "failed"
    assert record.error.startswith("step 2 (two) failed: config key 'count':")


def test_continue_on_error_keeps_going(runner):
    spec = spec_of("""
        name: tolerant
        steps:
          - {name: one, plugin: Test.boom, continue_on_error: true}
          - {name: two, plugin: Test.echo, config: {value: 2}, output: b}
    """)
    record = runner.run(spec)
    assert record.status == "success"
    assert [s.status for s in record.step_records()] == ["failed", "success"]


def test_an_unknown_pipeline_raises_for_an_ad_hoc_run_and_is_recorded_for_a_job(runner, store):
    with pytest.raises(NotFound):
        runner.run("no-such-pipeline")
    job = store.save_job(ScheduledJob(name="j", pipeline="no-such-pipeline", cron_expr="* * * * *"))
    record = runner.run("no-such-pipeline", job_id=job.id, triggered_by="scheduler")
    assert record.status == "failed"
    assert "no-such-pipeline" in record.error and "not found" in record.error
    assert store.get_execution(record.id).status == "failed"


# -- timeouts -----------------------------------------------------------------------------------


def test_a_step_timeout_ends_the_run_timed_out(runner):
    spec = spec_of("""
        name: slow
        steps:
          - {name: quick, plugin: Test.echo, output: a}
          - {name: slow, plugin: Test.sleep, config: {seconds: 5}, timeout: 0.3}
          - {name: never, plugin: Test.echo}
    """)
    started = time.monotonic()
    record = runner.run(spec)
    assert time.monotonic() - started < 4, "it waited for the 5 s step"  # generous: a busy machine
    assert record.status == "timed_out"
    assert record.error == "step 2 (slow) timed out after 0.3s"
    assert [(s.step_name, s.status) for s in record.step_records()] == [("quick", "success"), ("slow", "timed_out")]


def test_the_default_step_timeout_comes_from_settings(runner, settings):
    settings.plugins.timeout = 0.3
    record = runner.run(spec_of("name: p\nsteps:\n  - {name: slow, plugin: Test.sleep, config: {seconds: 5}}\n"))
    assert record.status == "timed_out" and "timed out after 0.3s" in record.error


def test_a_pipeline_timeout_ends_the_run_timed_out(runner):
    spec = spec_of("""
        name: slow
        timeout: 0.5
        steps:
          - {name: a, plugin: Test.sleep, config: {seconds: 0.3}}
          - {name: b, plugin: Test.sleep, config: {seconds: 0.3}}
          - {name: c, plugin: Test.sleep, config: {seconds: 0.3}}
    """)
    record = runner.run(spec)
    assert record.status == "timed_out"
    assert record.error == "pipeline timed out after 0.5s (in step 2 (b))"
    # A job's timeout passed in applies too (the smaller one wins).
    record = runner.run(spec, timeout=0.2)
    assert record.status == "timed_out" and record.error.startswith("pipeline timed out after 0.2s (in step 1 (a))")


def test_a_stuck_sync_plugin_does_not_hold_up_a_timed_out_run(runner):
    spec = spec_of("name: p\nsteps:\n  - {name: stuck, plugin: Test.block, config: {seconds: 5}, timeout: 0.3}\n")
    started = time.monotonic()
    record = runner.run(spec)
    assert time.monotonic() - started < 2
    assert record.status == "timed_out"


# -- cancellation -------------------------------------------------------------------------------


def _in_thread(fn):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", fn()), daemon=True)
    thread.start()
    return thread, box


def _wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except NotFound:  # not saved yet
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


SLOW = """
name: slow
steps:
  - {name: first, plugin: Test.echo, config: {value: 1}, output: a}
  - {name: wait, plugin: Test.sleep, config: {seconds: 20}}
  - {name: never, plugin: Test.echo}
"""


def test_an_in_process_cancel_token_cancels_within_a_second(runner):
    stop = CancelToken()
    thread, box = _in_thread(lambda: runner.run(spec_of(SLOW), cancel=stop, execution_id="exec-stop"))
    _wait_for(lambda: len(runner.backend.get_execution("exec-stop").steps or []) == 2)
    asked = time.monotonic()
    stop.cancel("cancelled: the service is shutting down")
    thread.join(5)
    assert time.monotonic() - asked < 1.0
    record = box["result"]
    assert record.status == "cancelled"
    assert record.error == "cancelled: the service is shutting down"
    assert [s.status for s in record.step_records()] == ["success", "cancelled"]
    assert runner.backend.get_execution("exec-stop").status == "cancelled"


def test_a_cancel_request_in_the_database_cancels_within_a_second(backend, backend_settings, registry):
    runner = PipelineRunner(backend, backend_settings, registry)
    thread, box = _in_thread(lambda: runner.run(spec_of(SLOW), execution_id="exec-db-cancel"))
    other = open_backend(backend_settings)
    try:
        _wait_for(lambda: len(other.get_execution("exec-db-cancel").steps or []) == 2)
        asked = time.monotonic()
        other.request_cancel("exec-db-cancel")
        _wait_for(lambda: other.get_execution("exec-db-cancel").status == "cancelled", timeout=5)
        assert time.monotonic() - asked < 1.0
    finally:
        other.close()
    thread.join(5)
    assert box["result"].status == "cancelled"
    assert box["result"].error == "cancelled by request"


class _AsksTheBackend:
    """A backend whose execution store answers ``cancel_requested`` itself, and that has no
    engine to reach into."""

    def __init__(self, backend, cancel_after: int):
        self._backend = backend
        self._cancel_after = cancel_after
        self.asked: list[str] = []
        self.executions = self  # the runner asks backend.executions.cancel_requested(...)

    def cancel_requested(self, execution_id: str) -> bool:
        self.asked.append(execution_id)
        return len(self._backend.get_execution(execution_id).steps or []) >= self._cancel_after

    def __getattr__(self, name):
        if name == "engine":
            raise AttributeError("the runner must not reach into the engine")
        return getattr(self._backend, name)


def test_the_runner_asks_the_backend_whether_a_run_is_cancelled(store, settings, registry):
    backend = _AsksTheBackend(store, cancel_after=2)
    record = PipelineRunner(backend, settings, registry).run(spec_of(SLOW), execution_id="exec-asked")
    assert record.status == "cancelled" and record.error == "cancelled by request"
    assert [s.status for s in record.step_records()] == ["success", "cancelled"]
    assert backend.asked and set(backend.asked) == {"exec-asked"}


def test_a_cancel_token_keeps_its_first_reason():
    token = CancelToken()
    assert not token.cancelled and not token.is_set() and token.reason is None
    assert token.wait(0.01) is False
    token.cancel("cancelled: interrupted (SIGINT)")
    token.cancel("cancelled: interrupted (SIGTERM)")
    assert token.cancelled and token.is_set() and token.wait(0) is True
    assert token.reason == "cancelled: interrupted (SIGINT)"


def test_a_cancel_token_wakes_a_wait_made_before_the_cancel():
    """A token makes its event at the first wait (most runs never wait): a cancel from another
    thread while a step waits wakes it, and a cancel before any wait is seen by the first."""
    token = CancelToken()
    threading.Timer(0.1, token.cancel, args=("cancelled by request",)).start()
    started = time.monotonic()
    assert token.wait(10) is True and time.monotonic() - started < 5
    assert token.reason == "cancelled by request"
    early = CancelToken()
    early.cancel("early")
    assert early.wait(10) is True and early.reason == "early"


def test_a_signal_handler_cancels_while_the_main_thread_holds_the_tokens_lock():
    """Tokens share one lock; a signal handler (``pipelines run`` on Ctrl-C) cancels on the main
    thread, between two of its bytecodes, which may be inside that lock (a second signal while
    the first one's cancel runs). It must not wait for itself: run in a process of its own, with
    a time limit, so that a deadlock fails the test instead of hanging the suite."""
    probe = textwrap.dedent("""
        import os, signal, time
        from mimir_tui.pipelines.cancel import _LOCK, CancelToken

        token = CancelToken()
        signal.signal(signal.SIGUSR1, lambda *_: token.cancel("cancelled: interrupted (SIGUSR1)"))
        with _LOCK:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
        print(token.cancelled, token.reason)
    """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True cancelled: interrupted (SIGUSR1)"


def test_the_live_record_is_visible_from_a_second_connection(backend, backend_settings, registry):
    runner = PipelineRunner(backend, backend_settings, registry)
    spec = spec_of("""
        name: live
        steps:
          - {name: first, plugin: Test.echo, config: {value: 1}, output: a}
          - {name: wait, plugin: Test.sleep, config: {seconds: 3.0}, output: b}
    """)
    # Progress after the first step's start is saved at most once per progress_interval (1 s):
    # the second step shows running by then.
    thread, box = _in_thread(lambda: runner.run(spec, execution_id="exec-live"))
    other = open_backend(backend_settings)
    try:

        def midway():
            record = other.get_execution("exec-live")
            steps = record.step_records()
            if len(steps) == 2 and steps[1].status == "running":
                return record
            return None

        record = _wait_for(midway, timeout=5)
        assert record.status == "running"
        steps = record.step_records()
        assert steps[0].status == "success" and steps[0].end_time is not None
        assert record.context == {"a": {"value": 1, "count": 0, "seen": []}}
        assert record.end_time is None
        thread.join(10)
        assert other.get_execution("exec-live").status == "success"
    finally:
        other.close()


# -- logs and secrets ---------------------------------------------------------------------------


def test_the_execution_log_tags_lines_and_masks_secrets(runner, settings, monkeypatch):
    monkeypatch.setenv("MIMIR_TEST_TOKEN", "tok-0123456789")
    spec = spec_of("""
        name: secretive
        steps:
          - name: call
            plugin: Test.echo
            config:
              value: "public"
              api_key: "${MIMIR_TEST_TOKEN}"
              headers: {Authorization: "Bearer ${MIMIR_TEST_TOKEN}", Accept: "text/plain"}
            output: a
          - name: leak
            plugin: Test.boom
            config: {message: "server said: bad key tok-0123456789"}
    """)
    record = runner.run(spec)
    text = runner.log_path(record.id).read_text()
    assert str(runner.log_path(record.id)).startswith(settings.logging.executions_dir)
    assert "tok-0123456789" not in text
    assert "api_key=***" in text
    lines = text.splitlines()
    assert any(" INFO    [call] (Test.echo) step 1/2 started" in line for line in lines)
    assert any(" ERROR   [leak] (Test.boom) step 2/2 failed" in line for line in lines)
    assert lines[0].split(" ")[0].endswith("Z")  # an ISO-8601 UTC timestamp first

    steps = record.step_records()
    assert steps[0].input["api_key"] == "***"
    assert steps[0].input["headers"] == {"Authorization": "***", "Accept": "text/plain"}
    assert "tok-0123456789" not in json.dumps(record.steps)
    assert "tok-0123456789" not in record.error
    stored = runner.backend.get_execution(record.id)
    assert "tok-0123456789" not in json.dumps(stored.steps) + json.dumps(stored.context) + (stored.error or "")


def test_json_log_format(runner, settings):
    settings.logging.format = "json"
    record = runner.run(spec_of(THREE_STEPS))
    entries = [json.loads(line) for line in runner.log_path(record.id).read_text().splitlines()]
    assert {"timestamp", "level", "message", "step_name", "plugin"} <= set(entries[1])
    assert entries[1]["step_name"] == "one" and entries[1]["plugin"] == "Test.echo"


def test_summaries_are_cut_to_the_configured_size(runner, settings):
    settings.pipelines.summary_max_chars = 40
    spec = spec_of(
        "name: big\nsteps:\n  - {name: one, plugin: Test.echo, config: {value: '" + "x" * 500 + "'}, output: a}\n"
    )
    record = runner.run(spec)
    step = record.step_records()[0]
    assert isinstance(step.output, str) and "[cut:" in step.output and len(step.output) < 80
    assert isinstance(record.context["a"], str) and "[cut:" in record.context["a"]


def test_secret_key_detection():
    for key in (
        "password",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "access_token",
        "client_secret",
        "TOKEN",
    ):
        assert is_secret_key(key), key
    for key in ("max_tokens", "token_count", "tokens", "title", "keyword"):
        assert not is_secret_key(key), key
    masked = mask_tree({"a": {"password": "p", "list": [{"secret": "s", "n": 1}]}, "max_tokens": 5})
    assert masked == {"a": {"password": "***", "list": [{"secret": "***", "n": 1}]}, "max_tokens": 5}
    assert summarize({"token": "t" * 10}, 100) == {"token": "***"}


# -- plugins.max_concurrency ----------------------------------------------------------------------

ONE_SLEEP = """
name: nap
steps:
  - {name: nap, plugin: Test.sleep, config: {seconds: 0.4}}
"""


def test_plugin_steps_at_once_are_limited_by_plugins_max_concurrency(store, settings, registry):
    """Three runs at once with one plugin slot: their plugins run one after another, never side
    by side; the runs that waited say so in their logs."""
    import asyncio

    from mimir_tui.pipelines.registry import Plugin, PluginConfig

    spans: list[tuple[float, float]] = []

    class Gauge(Plugin):
        type, name = "Test", "gauge"

        class Config(PluginConfig):
            seconds: float

        async def execute(self, config, ctx):
            entered = time.monotonic()
            await asyncio.sleep(config.seconds)
            spans.append((entered, time.monotonic()))

    registry.register(Gauge)
    settings.plugins.max_concurrency = 1
    runner = PipelineRunner(store, settings, registry)
    spec = spec_of("name: gauge\nsteps:\n  - {name: g, plugin: Test.gauge, config: {seconds: 0.3}}\n")
    runs = [_in_thread(lambda i=i: runner.run(spec, execution_id=f"gauge-{i}")) for i in range(3)]
    for thread, _ in runs:
        thread.join(15)
    records = [box["result"] for _, box in runs]
    assert [r.status for r in records] == ["success"] * 3
    spans.sort()
    assert len(spans) == 3 and all(earlier[1] <= later[0] for earlier, later in pairwise(spans)), spans
    waited = [r.id for r in records if "waiting for a plugin slot" in runner.log_path(r.id).read_text()]
    assert len(waited) == 2


def test_a_run_waiting_for_a_plugin_slot_can_be_cancelled(store, settings, registry):
    settings.plugins.max_concurrency = 1
    runner = PipelineRunner(store, settings, registry)
    hold = CancelToken()
    holder, _ = _in_thread(lambda: runner.run(spec_of(SLOW), execution_id="holder", cancel=hold))
    _wait_for(lambda: len(store.get_execution("holder").steps or []) == 2)  # in its 20 s sleep
    stop = CancelToken()
    waiter, box = _in_thread(lambda: runner.run(spec_of(ONE_SLEEP), execution_id="waiter", cancel=stop))
    _wait_for(
        lambda: (
            "waiting for a plugin slot" in runner.log_path("waiter").read_text()
            if runner.log_path("waiter").exists()
            else False
        )
    )
    stop.cancel("cancelled: asked while it waited")
    waiter.join(5)
    assert box["result"].status == "cancelled" and box["result"].error == "cancelled: asked while it waited"
    hold.cancel()
    holder.join(5)
