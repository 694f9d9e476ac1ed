"""``System.command``: run a program from an argv list (a shell only with ``shell: true``).

The program runs in a process group of its own; on timeout or cancellation the whole group gets
SIGTERM, then SIGKILL after ``kill_grace`` seconds. Cancellation is checked every 0.1 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..registry import Plugin, PluginConfig, PluginError, StepCancelled, StepContext, StepTimedOut
from .common import as_text, excerpt, resolve_path

POLL = 0.1


class CommandConfig(PluginConfig):
    command: list[str] | str = Field(
        validation_alias=AliasChoices("command", "cmd", "argv", "args"),
        description="the program and its arguments as a list; a string only with shell: true",
    )
    shell: bool = Field(False, description="run the command string through /bin/sh")
    cwd: str | None = Field(None, description="working directory")
    env: dict[str, str | None] = Field(
        default_factory=dict, description="variables set over the inherited environment (null removes one)"
    )
    timeout: float | None = Field(None, gt=0, description="seconds before the program is killed")
    allow_failure: bool = Field(False, description="a non-zero exit does not fail the step")
    ok_exit_codes: list[int] = Field(
        default_factory=lambda: [0],
        validation_alias=AliasChoices("ok_exit_codes", "ok_codes"),
        description="exit codes that count as success",
    )
    input: str | None = Field(
        None, validation_alias=AliasChoices("input", "stdin"), description="text sent to the program's standard input"
    )
    encoding: str = "utf-8"
    max_output: int = Field(1_000_000, ge=0, description="characters of stdout/stderr kept in the result, each")
    kill_grace: float = Field(2.0, ge=0, description="seconds between SIGTERM and SIGKILL")

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            out = []
            for item in value:
                if isinstance(item, (dict, list, tuple)) or item is None:
                    raise ValueError(f"every argument must be text or a number, got {item!r}")
                out.append(str(item).lower() if isinstance(item, bool) else str(item))
            return out
        return value

    @field_validator("input", mode="before")
    @classmethod
    def _stdin(cls, value: Any) -> Any:
        return as_text(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): (None if v is None else str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _shell_rules(self) -> CommandConfig:
        if isinstance(self.command, str):
            if not self.shell:
                raise ValueError(
                    'command is a string: give it as an argv list (e.g. ["ls", "-l"]), '
                    "or set shell: true to run it through the shell"
                )
            if not self.command.strip():
                raise ValueError("command is empty")
        else:
            if self.shell:
                raise ValueError("with shell: true, give the command as one string")
            if not self.command or not self.command[0]:
                raise ValueError("command is empty")
        return self

    def display(self) -> str:
        if isinstance(self.command, str):
            return excerpt(self.command, 60)
        return os.path.basename(self.command[0])


def kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, then SIGKILL it if the leader is still there after ``grace``."""

    def send(sig: int) -> None:
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, sig)
            else:  # pragma: no cover - not POSIX
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    send(signal.SIGKILL)  # also reaps children that ignored SIGTERM
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - uninterruptible sleep
        pass


def _decode(data: bytes | None, encoding: str, limit: int) -> str:
    text = (data or b"").decode(encoding, errors="replace")
    if len(text) > limit:
        return text[:limit] + f"\n... [{len(text) - limit} more characters cut]"
    return text


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


class Command(Plugin):
    type = "System"
    name = "command"
    description = (
        "Run a program (argv list; a shell only with shell: true). Result {stdout, stderr, exit_code, duration}."
    )
    Config = CommandConfig

    def execute(self, config: CommandConfig, ctx: StepContext) -> dict[str, Any]:
        limits = [t for t in (config.timeout, ctx.timeout) if t]
        timeout = min(limits) if limits else None
        cwd = None
        if config.cwd:
            cwd = resolve_path(config.cwd)
            if not cwd.is_dir():
                raise PluginError(f"cwd {cwd} is not a directory")
        env = dict(os.environ)
        for key, value in config.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        name = config.display()
        if ctx.cancel_event.is_set():
            raise StepCancelled(f"command {name} cancelled before it started")
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                config.command,
                shell=config.shell,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if config.input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=os.name == "posix",
            )
        except FileNotFoundError:
            raise PluginError(
                f"program {config.command[0] if isinstance(config.command, list) else 'sh'!r} not found"
            ) from None
        except PermissionError:
            raise PluginError(f"cannot run {name!r}: permission denied") from None
        except OSError as exc:
            raise PluginError(f"cannot run {name!r}: {exc.strerror or exc}") from None
        ctx.log("DEBUG", f"started {name} (pid {proc.pid})")
        stdin = config.input.encode(config.encoding) if config.input is not None else None
        stopped: str | None = None
        while True:
            try:
                out, err = proc.communicate(stdin, timeout=POLL)
                break
            except subprocess.TimeoutExpired:
                stdin = None  # sent (or being sent) by the first call; a retry must not pass it again
                if ctx.cancel_event.is_set():
                    stopped = "cancelled"
                elif timeout is not None and time.monotonic() - started >= timeout:
                    stopped = "timeout"
                if stopped:
                    kill_group(proc, config.kill_grace)
                    try:
                        out, err = proc.communicate(timeout=1)
                    except subprocess.TimeoutExpired:  # a grandchild left its own group and holds the pipes
                        out, err = b"", b""
                        for pipe in (proc.stdin, proc.stdout, proc.stderr):
                            if pipe:
                                pipe.close()
                    break
            except BaseException:
                kill_group(proc, 0)
                raise
        duration = round(time.monotonic() - started, 3)
        stdout = _decode(out, config.encoding, config.max_output)
        stderr = _decode(err, config.encoding, config.max_output)
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        if stopped == "cancelled":
            raise StepCancelled(f"command {name} cancelled after {duration:g}s (process group killed)")
        if stopped == "timeout":
            raise StepTimedOut(f"command {name} timed out after {timeout:g}s (process group killed)")
        ok = code in config.ok_exit_codes
        if not ok and not config.allow_failure:
            detail = excerpt(stderr.strip().splitlines()[-1] if stderr.strip() else stdout.strip()[-300:], 300)
            raise PluginError(f"command {name} {exit_text(code)}" + (f": {detail}" if detail else ""))
        ctx.log("DEBUG", f"{name} {exit_text(code)} in {duration:g}s")
        return {
            "command": config.command,
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": code,
            "ok": ok,
            "duration": duration,
        }
