"""``System.command``: run a program from an argv list (a shell only with ``shell: true``).

With ``shell: true`` no value a template brings into the command string (``{{ step.output }}``,
``${NAME}``) is ever read by the shell as code: each one is handed to the program as an
environment variable, and the command refers to it as one quoted word (``echo {{ f.data }}``
runs as ``echo "${MIMIR_VALUE_1}"``), so a file that holds ``hello; touch owned`` is echoed, not
run (:class:`ShellValues`). ``raw_templates: true`` is the explicit opt-out for a pipeline that
builds shell code from values it trusts; ``pipelines validate`` warns about both.

The program runs in a process group of its own; on timeout or cancellation the whole group gets
SIGTERM, then SIGKILL after ``kill_grace`` seconds. Cancellation is checked every 0.1 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, Field, TypeAdapter, ValidationError, field_validator, model_validator

from .. import templates
from ..registry import Plugin, PluginConfig, PluginError, StepCancelled, StepContext, StepTimedOut
from .common import as_text, excerpt, resolve_path

POLL = 0.1
COMMAND_KEYS = ("command", "cmd", "argv", "args")


class CommandConfig(PluginConfig):
    command: list[str] | str = Field(
        validation_alias=AliasChoices("command", "cmd", "argv", "args"),
        description="the program and its arguments as a list; a string only with shell: true",
    )
    shell: bool = Field(False, description="run the command string through /bin/sh")
    raw_templates: bool = Field(
        False,
        description="with shell: true, put template values into the command string unquoted "
        "(they are shell code then: only for values the pipeline trusts)",
    )
    cwd: str | None = Field(
        None, description="working directory (relative: to the run's working folder, which is the default)"
    )
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


# A piece of sh syntax that closes what it opens: an escaped character, a quoted string, a run
# of plain text, a "#" inside a word.
_SH_CLOSED = re.compile(r"""\\.|'[^']*'|"(?:\\.|[^"\\])*"|[^\\'"#]+|#""", re.DOTALL)


def shell_context(text: str) -> str:
    """Where the end of the sh code ``text`` stands: ``""`` (outside quotes), ``"'"`` or ``'"'``
    (inside them). Knows quotes, backslashes and comments, not ``$(...)`` nesting, backquotes
    or here-documents: a value placed there is still never code (:class:`ShellValues`), only
    its quotes may show."""
    pos = 0
    while pos < len(text):
        if text[pos] == "#" and (pos == 0 or text[pos - 1] in " \t\n;&|()<>"):
            end = text.find("\n", pos)
            if end < 0:
                return ""
            pos = end
            continue
        match = _SH_CLOSED.match(text, pos)
        if match is None:  # a quote that is still open (or a backslash at the very end)
            return text[pos] if text[pos] in "'\"" else ""
        pos = match.end()
    return ""


class ShellValues:
    """How a shell command's templates are filled in: each value becomes an environment
    variable of the program (``MIMIR_VALUE_1``, ...) and the command refers to it as one word,
    quoted for where the template stands (``"${V}"``; inside double quotes ``${V}``; inside
    single quotes ``'"${V}"'``). The shell expands a variable once and never reads what it
    holds as code, so no value runs, whatever it holds and wherever the template stands."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def __call__(self, value: str, before: str) -> str:
        name = f"MIMIR_VALUE_{len(self.env) + 1}"
        self.env[name] = value
        context = shell_context(before)
        if context == '"':
            return f"${{{name}}}"
        if context == "'":
            return f"'\"${{{name}}}\"'"
        return f'"${{{name}}}"'


_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


def _flag(value: Any) -> bool:
    """``value`` as the config's boolean fields read it (``true``, ``"yes"``, 1); False if unset
    or not a boolean (validation says so later)."""
    try:
        return value is not None and _BOOL.validate_python(value)
    except ValidationError:
        return False


class Command(Plugin):
    type = "System"
    name = "command"
    description = (
        "Run a program (argv list; a shell only with shell: true). Result {stdout, stderr, exit_code, duration}."
    )
    Config = CommandConfig

    @classmethod
    def expand_config(cls, config: Any, scope: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Any:
        """With ``shell: true`` (and no ``raw_templates: true``) the values the command
        string's templates bring in go to ``env`` (:class:`ShellValues`); the other keys, and
        an argv list, expand as in every plugin."""
        if not isinstance(config, Mapping):
            return templates.expand(config, scope, environ)
        expanded = templates.expand({k: v for k, v in config.items() if k not in COMMAND_KEYS}, scope, environ)
        values = ShellValues() if _flag(expanded.get("shell")) and not _flag(expanded.get("raw_templates")) else None
        for key in COMMAND_KEYS:
            if key in config:
                command = config[key]
                expanded[key] = templates.expand(command, scope, environ, values if isinstance(command, str) else None)
        if values is not None and values.env and isinstance(expanded.get("env") or {}, Mapping):
            expanded["env"] = {**(expanded.get("env") or {}), **values.env}
        return expanded

    @classmethod
    def config_warnings(cls, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        if not _flag(config.get("shell")):
            return []
        found: list[tuple[str, str]] = []
        for key in COMMAND_KEYS:
            if not templates.has_template(config.get(key)):
                continue
            if _flag(config.get("raw_templates")):
                message = (
                    "shell: true with raw_templates: true: template values reach the shell unquoted, "
                    "as code (a value holding '; rm ...' or '$(...)' runs it); use an argv list, or drop raw_templates"
                )
            else:
                message = (
                    "shell: true with templates: each template value reaches the shell as one quoted word, "
                    "never as code; an argv list needs no shell"
                )
            found.append((key, message))
        return found

    def execute(self, config: CommandConfig, ctx: StepContext) -> dict[str, Any]:
        limits = [t for t in (config.timeout, ctx.timeout) if t]
        timeout = min(limits) if limits else None
        # A relative cwd, and none given, are the run's working folder (policy.working_folder).
        cwd = resolve_path(config.cwd or ".", ctx.base_dir)
        if not cwd.is_dir():
            what = f"cwd {cwd} is not a directory" if config.cwd else f"the working folder {cwd} does not exist"
            raise PluginError(what)
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
