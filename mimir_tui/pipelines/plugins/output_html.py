"""``Output.html``: a self-contained, readable HTML report of context values.

No template engine: mappings become two-column tables, lists of mappings become tables with a
column per key, lists of scalars become lists, long or multi-line text goes in ``<pre>``. Every
piece of data passes through :func:`html.escape`; values under secret-looking keys (password,
token, api_key, ...) are shown as ``***``.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, Field, field_validator

from ..policy import Policy
from ..registry import Plugin, PluginConfig, StepContext
from .common import FILE_ALIASES, atomic_write, is_secret_key, lookup_input

CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #656d76; --line: #d0d7de;
  --head: #f6f8fa; --accent: #0969da; --code: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #8d96a0;
  --line: #30363d; --head: #161b22; --accent: #4493f8; --code: #161b22; } }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; padding: 2rem 1.5rem 4rem; max-width: 72rem; }
h1 { font-size: 1.8rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
.meta, .summary, .more, .empty, .null { color: var(--muted); }
.meta { margin: 0 0 1.5rem; font-size: .9rem; }
.summary { font-size: .85rem; margin: -.3rem 0 .6rem; }
nav ul { padding-left: 1.2rem; } nav a, a { color: var(--accent); }
table { border-collapse: collapse; margin: .2rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
thead th, table.kv th { background: var(--head); font-weight: 600; }
table.kv th { white-space: nowrap; }
.scroll { overflow-x: auto; }
pre { background: var(--code); border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem;
  margin: .2rem 0; white-space: pre-wrap; word-break: break-word; font-size: .85rem; }
.num { font-variant-numeric: tabular-nums; }
.secret { letter-spacing: .1em; color: var(--muted); }
ul.items, ol.items { margin: .2rem 0; padding-left: 1.4rem; }
footer { margin-top: 3rem; font-size: .8rem; color: var(--muted); }
""".strip()

_URL = re.compile(r"^https?://[^\s<>\"']+$", re.IGNORECASE)


class HtmlConfig(PluginConfig):
    title: str = Field("Mimir report", description="the report's title")
    description: str | None = Field(None, description="a paragraph under the title")
    inputs: list[str] | None = Field(
        None,
        validation_alias=AliasChoices("inputs", "input"),
        description="context keys to show (dotted paths allowed); default the whole context",
    )
    data: Any = Field(None, description="a value to show inline, as a section named 'data'")
    file: str | None = Field(None, validation_alias=FILE_ALIASES, description="write the report here (optional)")
    mkdir: bool = Field(True, description="create missing parent folders")
    max_rows: int = Field(500, ge=1, description="rows shown per table or list")
    max_depth: int = Field(6, ge=1, description="nesting shown as tables; deeper levels as JSON")
    result_chars: int = Field(20000, ge=0, description="with a file, keep this much of the HTML in the result")

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class Renderer:
    def __init__(self, max_rows: int = 500, max_depth: int = 6) -> None:
        self.max_rows = max_rows
        self.max_depth = max_depth

    def render(self, value: Any, depth: int = 0) -> str:
        if value is None:
            return '<span class="null">null</span>'
        if isinstance(value, bool):
            return f'<span class="bool">{"true" if value else "false"}</span>'
        if isinstance(value, (int, float)):
            return f'<span class="num">{esc(value)}</span>'
        if isinstance(value, str):
            return self.text(value)
        if hasattr(value, "get_secret_value"):
            return '<span class="secret">***</span>'
        if depth >= self.max_depth and isinstance(value, (dict, list, tuple)):
            return f"<pre>{esc(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"
        if isinstance(value, dict):
            return self.mapping(value, depth)
        if isinstance(value, (list, tuple)):
            return self.sequence(list(value), depth)
        if hasattr(value, "model_dump"):
            return self.render(value.model_dump(mode="json"), depth)
        return self.text(str(value))

    def text(self, value: str) -> str:
        if value == "":
            return '<span class="empty">(empty)</span>'
        if "\n" in value or len(value) > 160:
            return f"<pre>{esc(value)}</pre>"
        if _URL.match(value):
            return f'<a href="{esc(value)}" rel="noopener noreferrer">{esc(value)}</a>'
        return esc(value)

    def cell(self, key: Any, value: Any, depth: int) -> str:
        if is_secret_key(key) and value not in (None, ""):
            return '<span class="secret">***</span>'
        return self.render(value, depth)

    def mapping(self, value: dict[Any, Any], depth: int) -> str:
        if not value:
            return '<span class="empty">(empty object)</span>'
        rows = "".join(
            f'<tr><th scope="row">{esc(k)}</th><td>{self.cell(k, v, depth + 1)}</td></tr>' for k, v in value.items()
        )
        return f'<table class="kv"><tbody>{rows}</tbody></table>'

    def sequence(self, items: list[Any], depth: int) -> str:
        if not items:
            return '<span class="empty">(empty list)</span>'
        shown, rest = items[: self.max_rows], len(items) - self.max_rows
        more = f'<p class="more">… {rest} more not shown</p>' if rest > 0 else ""
        if all(isinstance(item, dict) for item in shown):
            columns: list[Any] = []
            seen: set[Any] = set()
            for item in shown:
                for key in item:
                    if key not in seen:
                        seen.add(key)
                        columns.append(key)
            head = "".join(f'<th scope="col">{esc(c)}</th>' for c in columns)
            body = "".join(
                "<tr>"
                + "".join(f"<td>{self.cell(c, item[c], depth + 1) if c in item else ''}</td>" for c in columns)
                + "</tr>"
                for item in shown
            )
            return (
                f'<div class="scroll"><table class="records"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>{more}"
            )
        lis = "".join(f"<li>{self.render(item, depth + 1)}</li>" for item in shown)
        return f'<ol class="items">{lis}</ol>{more}'


def summary(value: Any) -> str:
    if isinstance(value, dict):
        return f"object, {len(value)} key(s)"
    if isinstance(value, (list, tuple)):
        return f"list, {len(value)} item(s)"
    if isinstance(value, str):
        return f"text, {len(value)} character(s)"
    if value is None:
        return "null"
    return type(value).__name__


def render_report(
    title: str,
    sections: list[tuple[str, Any]],
    *,
    description: str | None = None,
    pipeline: str = "",
    execution_id: str = "",
    max_rows: int = 500,
    max_depth: int = 6,
    now: datetime | None = None,
) -> str:
    renderer = Renderer(max_rows=max_rows, max_depth=max_depth)
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    meta = [f"Generated {esc(stamp)}"]
    if pipeline:
        meta.append(f"pipeline <strong>{esc(pipeline)}</strong>")
    if execution_id:
        meta.append(f"execution <code>{esc(execution_id)}</code>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="Mimir">',
        f"<title>{esc(title)}</title>",
        f"<style>\n{CSS}\n</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{" · ".join(meta)}</p>',
    ]
    if description:
        parts.append(f"<p>{esc(description)}</p>")
    parts.append("</header>")
    if len(sections) > 1:
        links = "".join(f'<li><a href="#s{i}">{esc(name)}</a></li>' for i, (name, _) in enumerate(sections))
        parts.append(f'<nav aria-label="Contents"><ul>{links}</ul></nav>')
    if not sections:
        parts.append('<p class="empty">Nothing to show: the context is empty.</p>')
    for i, (name, value) in enumerate(sections):
        body = '<span class="secret">***</span>' if is_secret_key(name) else renderer.render(value)
        parts.append(
            f'<section id="s{i}"><h2>{esc(name)}</h2><p class="summary">{esc(summary(value))}</p>{body}</section>'
        )
    parts += ["<footer>Report generated by Mimir.</footer>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _is_report(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("html"), str) and "sections" in value


class HtmlOutput(Plugin):
    type = "Output"
    name = "html"
    description = (
        "Render chosen context values (default: all) as a self-contained HTML report;"
        " optionally write it to a file. Result {html, file, bytes}."
    )
    Config = HtmlConfig

    def execute(self, config: HtmlConfig, ctx: StepContext) -> dict[str, Any]:
        sections: list[tuple[str, Any]] = []
        if config.inputs is not None:
            sections += [(key, lookup_input(ctx, key)) for key in config.inputs]
        if config.data is not None:
            sections.append(("data", config.data))
        if config.inputs is None and config.data is None:
            # Everything, but an earlier report's own HTML is not worth repeating as text.
            sections = [
                (k, {kk: vv for kk, vv in v.items() if kk != "html"} if _is_report(v) else v)
                for k, v in ctx.context.items()
            ]
        text = render_report(
            config.title,
            sections,
            description=config.description,
            pipeline=ctx.pipeline,
            execution_id=ctx.execution_id,
            max_rows=config.max_rows,
            max_depth=config.max_depth,
        )
        encoded = text.encode("utf-8")
        result: dict[str, Any] = {
            "title": config.title,
            "file": None,
            "bytes": len(encoded),
            "sections": [n for n, _ in sections],
        }
        if config.file:
            path = Policy.of(ctx.settings, ctx.base_dir).writable(config.file)
            atomic_write(path, encoded, mkdir=config.mkdir)
            result["file"] = str(path)
            ctx.log("INFO", f"wrote report {path} ({len(encoded)} bytes)")
            truncated = len(text) > config.result_chars
            result["html"] = text[: config.result_chars] if truncated else text
            result["truncated"] = truncated
        else:
            result["html"] = text
            result["truncated"] = False
        return result
