"""Templates in step configs, expanded at run time.

Two kinds of reference, recursively through dicts, lists and strings:

- ``{{ api_result.body.items }}`` (also the original's ``{{.initial_content.content}}``): a dotted
  path into the pipeline context. Segments are keys, attribute names or list indexes
  (``items.0`` or ``items[0]``; ``a["key with spaces"]``). The first segment names the output of
  an earlier step (or ``run``, facts of the current run: id, pipeline, job_id, triggered_by,
  started_at, date, source_dir: the pipeline file's folder, working_dir: the folder relative
  paths resolve against).
- ``${NAME}``, ``${NAME:-default}`` (default when unset or empty), ``${NAME-default}`` (default
  when unset): an environment variable. ``$${`` is a literal ``${``.

A string that is exactly one template yields the raw value (a list stays a list); templates
embedded in longer text are stringified (dicts and lists as JSON, None as an empty string).
Substituted text is never scanned again, so a value cannot inject a template.

Text bound for an interpreter is expanded with a ``quote`` function: every value a template
brings in, ``{{ }}`` and ``${}``, goes through it, so that data never arrives as code (a shell
command's values become environment variables it refers to: ``System.command``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..secrets import is_secret_key, secret_values

#: The one top-level name a template may use besides earlier outputs.
RUN_KEY = "run"

_TOKEN = re.compile(
    r"(?P<escape>\$\$\{)"
    r"|\$\{(?P<env>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|\$\{(?P<badenv>[^}]*)\}"
    r"|\{\{(?P<expr>.*?)\}\}",
    re.DOTALL,
)
_SEGMENT = re.compile(
    r"""\s*(?:
        \.?(?P<name>[A-Za-z_][A-Za-z0-9_\-]*|-?\d+)   # .key or key or .0 or .-1
      | \[\s*(?P<index>-?\d+)\s*\]                   # [0]
      | \[\s*(?P<quote>["'])(?P<quoted>.*?)(?P=quote)\s*\]  # ["key with spaces"]
    )""",
    re.VERBOSE,
)


class TemplateError(ValueError):
    """A template that cannot be parsed or resolved; the message names the template."""


def parse_path(expr: str) -> list[str | int]:
    """``.a.b[0]["c d"]`` -> ``["a", "b", 0, "c d"]``. Raises :class:`TemplateError`."""
    text = expr.strip()
    if not text:
        raise TemplateError("empty template {{ }}")
    parts: list[str | int] = []
    pos = 0
    first = True
    while pos < len(text):
        match = _SEGMENT.match(text, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"cannot parse template {{{{ {text} }}}} at {text[pos:]!r}")
        # A bare name must be separated by a dot, except the first (``.key`` or ``key``).
        raw = match.group(0).lstrip()
        if match.group("name") is not None and not first and not raw.startswith("."):
            raise TemplateError(f"cannot parse template {{{{ {text} }}}} at {text[pos:]!r}")
        if match.group("name") is not None:
            name = match.group("name")
            parts.append(int(name) if name.lstrip("-").isdigit() and not first else name)
        elif match.group("index") is not None:
            if first:
                raise TemplateError(f"template {{{{ {text} }}}} must start with an output name")
            parts.append(int(match.group("index")))
        else:
            parts.append(match.group("quoted"))
        pos = match.end()
        first = False
    return parts


def _tokens(text: str) -> Iterator[re.Match[str]]:
    return _TOKEN.finditer(text)


def has_template(value: Any) -> bool:
    """True if ``value`` (or anything inside it) holds a ``{{ }}`` or ``${}`` reference."""
    if isinstance(value, str):
        return any(m.group("escape") is None for m in _tokens(value))
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_template(v) for v in value)
    return False


def iter_templates(value: Any) -> Iterator[str]:
    """Every ``{{ expr }}`` expression (the text inside the braces) in ``value``."""
    if isinstance(value, str):
        for m in _tokens(value):
            if m.group("expr") is not None:
                yield m.group("expr")
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from iter_templates(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_templates(v)


def referenced_outputs(value: Any) -> set[str]:
    """The first path segment of every template in ``value``: the outputs it needs.
    Raises :class:`TemplateError` on a template that does not parse."""
    found: set[str] = set()
    for expr in iter_templates(value):
        found.add(str(parse_path(expr)[0]))
    return found


def referenced_env(value: Any) -> set[str]:
    """Names of the environment variables ``value`` refers to."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(m.group("env") for m in _tokens(value) if m.group("env"))
    elif isinstance(value, Mapping):
        for v in value.values():
            found |= referenced_env(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= referenced_env(v)
    return found


def check_syntax(value: Any) -> list[str]:
    """Problems with the templates in ``value`` (unparsable paths, bad ``${...}``)."""
    problems: list[str] = []
    if isinstance(value, str):
        for m in _tokens(value):
            if m.group("badenv") is not None:
                problems.append(
                    f"bad environment reference ${{{m.group('badenv')}}} (use ${{NAME}} or ${{NAME:-default}})"
                )
            elif m.group("expr") is not None:
                try:
                    parse_path(m.group("expr"))
                except TemplateError as exc:
                    problems.append(str(exc))
    elif isinstance(value, Mapping):
        for v in value.values():
            problems += check_syntax(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            problems += check_syntax(v)
    return problems


def resolve_path(scope: Mapping[str, Any], expr: str) -> Any:
    """The value at ``expr`` (a template's inner text) in ``scope``."""
    path = parse_path(expr)
    shown = expr.strip()
    head = str(path[0])
    if head not in scope:
        known = ", ".join(sorted(k for k in scope if k != RUN_KEY)) or "none yet"
        raise TemplateError(f"template {{{{ {shown} }}}}: no output named {head!r} (outputs: {known})")
    value = scope[head]
    walked = head
    for part in path[1:]:
        value = _step_into(value, part, shown, walked)
        walked = f"{walked}.{part}"
    return value


def _step_into(value: Any, part: str | int, shown: str, walked: str) -> Any:
    if isinstance(value, Mapping):
        if part in value:
            return value[part]
        if str(part) in value:
            return value[str(part)]
        keys = ", ".join(map(str, list(value)[:20]))
        raise TemplateError(f"template {{{{ {shown} }}}}: {walked} has no key {str(part)!r} (keys: {keys})")
    if isinstance(value, (list, tuple)):
        try:
            index = int(part)
        except (TypeError, ValueError):
            raise TemplateError(f"template {{{{ {shown} }}}}: {walked} is a list; {part!r} is not an index") from None
        try:
            return value[index]
        except IndexError:
            raise TemplateError(
                f"template {{{{ {shown} }}}}: index {index} out of range ({walked} has {len(value)} items)"
            ) from None
    if isinstance(part, str) and not part.startswith("_") and hasattr(value, part):
        return getattr(value, part)
    kind = "null" if value is None else type(value).__name__
    raise TemplateError(f"template {{{{ {shown} }}}}: {walked} is {kind}, it has no {str(part)!r}")


def stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


class MissingVariable(TemplateError):
    """An environment variable a config refers to is not set (and has no default)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        self.name = name


def _env_value(match: re.Match[str], environ: Mapping[str, str]) -> str:
    name = match.group("env")
    op = match.group("op")
    value = environ.get(name)
    if op == ":-" and not value:
        return match.group("default")
    if op == "-" and value is None:
        return match.group("default")
    if value is None:
        raise MissingVariable(name)
    return value


#: ``quote(value, before)``: the text that stands for ``value`` in the string; ``before`` is the
#: string's own text up to the template (earlier templates left out), to tell where it stands.
Quote = Callable[[str, str], str]


def expand_string(
    text: str, scope: Mapping[str, Any], environ: Mapping[str, str] | None = None, quote: Quote | None = None
) -> Any:
    """``text`` with its templates replaced. With ``quote``, every value brought in goes
    through it as text (a string that is one template too)."""
    env = os.environ if environ is None else environ
    matches = list(_tokens(text))
    if not matches:
        return text
    whole = len(matches) == 1 and matches[0].group("expr") is not None and matches[0].span() == (0, len(text))
    if whole and quote is None:
        return resolve_path(scope, matches[0].group("expr"))
    out: list[str] = []
    literal: list[str] = []  # the text around the templates, as written

    def value(text: str) -> str:
        return quote(text, "".join(literal)) if quote is not None else text

    pos = 0
    for m in matches:
        out.append(text[pos : m.start()])
        literal.append(text[pos : m.start()])
        if m.group("escape") is not None:
            out.append("${")
            literal.append("${")
        elif m.group("env") is not None:
            out.append(value(_env_value(m, env)))
        elif m.group("badenv") is not None:
            raise TemplateError(f"bad environment reference ${{{m.group('badenv')}}}")
        else:
            out.append(value(stringify(resolve_path(scope, m.group("expr")))))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def expand(
    value: Any, scope: Mapping[str, Any], environ: Mapping[str, str] | None = None, quote: Quote | None = None
) -> Any:
    """``value`` with every template replaced, recursively; a new structure (input untouched).
    ``quote``: see :func:`expand_string`."""
    if isinstance(value, str):
        return expand_string(value, scope, environ, quote)
    if isinstance(value, Mapping):
        return {k: expand(v, scope, environ, quote) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, scope, environ, quote) for v in value]
    if isinstance(value, tuple):
        return tuple(expand(v, scope, environ, quote) for v in value)
    return value


def referenced_secrets(value: Any, environ: Mapping[str, str] | None = None) -> set[str]:
    """The secrets step configs refer to that are known before the run: the values under
    secret-looking keys (``api_key: ${TOKEN}``, ``Authorization: "Bearer ${TOKEN}"``), with
    their environment references filled in, and every ``${NAME}`` whose name looks secret
    (``${API_TOKEN}``), wherever it stands. Gathered before the first step, so that a secret
    a later step uses is masked in what the earlier ones print. (A value a ``{{ }}`` brings
    in is known only when its step's config is expanded.)"""
    env = os.environ if environ is None else environ
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, is_secret_key(k))
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, secret)
        elif isinstance(node, str):
            tokens = list(_tokens(node))
            found.update(
                env[m.group("env")]
                for m in tokens
                if m.group("env") and env.get(m.group("env")) and (secret or is_secret_key(m.group("env")))
            )
            if secret and not any(m.group("expr") is not None for m in tokens):
                try:
                    found.update(secret_values({"secret": expand_string(node, {}, env)}))
                except TemplateError:  # an unset variable: the step will say so
                    pass
        elif secret:
            found.update(secret_values({"secret": node}))

    walk(value, False)
    return found


__all__ = [
    "MissingVariable",
    "RUN_KEY",
    "TemplateError",
    "check_syntax",
    "expand",
    "expand_string",
    "has_template",
    "iter_templates",
    "parse_path",
    "referenced_env",
    "referenced_outputs",
    "referenced_secrets",
    "resolve_path",
    "stringify",
]
