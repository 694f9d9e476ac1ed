"""System.command: real programs, argv without a shell, timeouts and cancellation."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.system_command import Command
from mimir_tui.pipelines.registry import PluginError, StepCancelled, StepTimedOut

PY = sys.executable


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_argv_runs_without_a_shell(run_plugin):
    result = await run_plugin(Command, {"command": ["echo", "$HOME", "a;b", "*"]})
    assert result["stdout"] == "$HOME a;b *\n"  # no expansion, no globbing, no command separators
    assert result["exit_code"] == 0 and result["stderr"] == "" and result["ok"] is True
    assert 0 <= result["duration"] < 5
    assert result["command"] == ["echo", "$HOME", "a;b", "*"]


async def test_numbers_in_argv_stdin_cwd_and_env(run_plugin, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMIR_TEST_INHERITED", "kept")
    monkeypatch.setenv("MIMIR_TEST_REMOVED", "gone")
    code = (
        "import os, sys; print(os.getcwd()); print(os.environ['GREETING']); "
        "print(os.environ['MIMIR_TEST_INHERITED']); print(os.environ.get('MIMIR_TEST_REMOVED', '-')); "
        "print(sys.stdin.read().upper()); print(sys.argv[1])"
    )
    result = await run_plugin(
        Command,
        {
            "command": [PY, "-c", code, 42],
            "cwd": str(tmp_path),
            "env": {"GREETING": "hej", "MIMIR_TEST_REMOVED": None},
            "stdin": "piped text",
        },
    )
    assert result["stdout"].splitlines() == [str(tmp_path), "hej", "kept", "-", "PIPED TEXT", "42"]


async def test_non_zero_exit_fails_with_the_last_stderr_line(run_plugin):
    code = (
        "import sys; print('out'); print('warming up', file=sys.stderr);"
        " print('fatal: no disk', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(PluginError, match=r"command python\S* exited with 3: fatal: no disk"):
        await run_plugin(Command, {"command": [PY, "-c", code]})


async def test_allow_failure_and_ok_exit_codes(run_plugin):
    code = "import sys; print('partial'); sys.exit(3)"
    result = await run_plugin(Command, {"command": [PY, "-c", code], "allow_failure": True})
    assert result["exit_code"] == 3 and result["ok"] is False and result["stdout"] == "partial\n"
    result = await run_plugin(Command, {"command": [PY, "-c", code], "ok_exit_codes": [0, 3]})
    assert result["exit_code"] == 3 and result["ok"] is True
    result = await run_plugin(Command, {"command": ["grep", "x"], "stdin": "abc", "ok_codes": [0, 1]})
    assert result["exit_code"] == 1


async def test_shell_only_when_asked(run_plugin, tmp_path):
    result = await run_plugin(
        Command, {"command": "echo one && echo $((2+3)) | sed s/5/five/", "shell": True, "cwd": str(tmp_path)}
    )
    assert result["stdout"] == "one\nfive\n"
    with pytest.raises(ValidationError, match=r"command is a string: give it as an argv list .* or set shell: true"):
        Command.Config.model_validate({"command": "echo hi"})
    with pytest.raises(ValidationError, match="with shell: true, give the command as one string"):
        Command.Config.model_validate({"command": ["echo", "hi"], "shell": True})
    with pytest.raises(ValidationError, match="command is empty"):
        Command.Config.model_validate({"command": []})


async def test_timeout_kills_the_process_group(run_plugin, tmp_path):
    pid_file = tmp_path / "child.pid"
    # The shell starts a grandchild in the same process group; both must die.
    script = f"sleep 30 & echo $! > {pid_file}; wait"
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match=r"timed out after 0.5s \(process group killed\)"):
        await run_plugin(Command, {"command": ["sh", "-c", script], "timeout": 0.5})
    assert time.monotonic() - started < 10, "it waited for the 30 s sleep"
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


async def test_step_timeout_from_the_context_applies(run_plugin):
    started = time.monotonic()
    with pytest.raises(StepTimedOut):
        await run_plugin(Command, {"command": ["sleep", "30"]}, timeout=0.3)
    assert time.monotonic() - started < 10, "it waited for the 30 s sleep"


async def test_cancel_kills_sleep_within_a_second(run_plugin):
    event = threading.Event()
    threading.Timer(0.2, event.set).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled, match="cancelled"):
        await run_plugin(Command, {"command": ["sleep", "30"]}, cancel_event=event)
    assert time.monotonic() - started < 1.0


async def test_sigterm_ignored_then_sigkill(run_plugin):
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    )
    started = time.monotonic()
    with pytest.raises(StepTimedOut):
        await run_plugin(Command, {"command": [PY, "-c", code], "timeout": 0.5, "kill_grace": 0.3})
    assert time.monotonic() - started < 10, "it waited for the 30 s sleep"


async def test_missing_program_and_bad_cwd(run_plugin, tmp_path):
    with pytest.raises(PluginError, match="program 'no-such-program-xyz' not found"):
        await run_plugin(Command, {"command": ["no-such-program-xyz"]})
    with pytest.raises(PluginError, match="is not a directory"):
        await run_plugin(Command, {"command": ["true"], "cwd": str(tmp_path / "nope")})


async def test_output_is_capped(run_plugin):
    result = await run_plugin(Command, {"command": [PY, "-c", "print('x' * 5000)"], "max_output": 100})
    assert result["stdout"].startswith("x" * 100) and "more characters cut" in result["stdout"]


async def test_killed_by_a_signal_is_reported(run_plugin):
    with pytest.raises(PluginError, match="was killed by SIGKILL"):
        await run_plugin(Command, {"command": ["sh", "-c", "kill -9 $$"]})


async def test_stdin_from_data_is_json(run_plugin):
    result = await run_plugin(Command, {"command": ["cat"], "input": {"rows": [1, 2]}})
    assert result["stdout"] == '{"rows": [1, 2]}'
