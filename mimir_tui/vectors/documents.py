"""Documents as the command line and the dashboard read and show them: files read as documents
(text and Markdown one each, JSON lines one a line), a metadata filter typed as JSON, and the
short forms of a text and of metadata for a table. No chromadb here (cheap to import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import BadInput

JSON_LINES = (".jsonl", ".ndjson")


def parse_where(text: str | None, what: str = "--where") -> dict[str, Any] | None:
    """A metadata filter (chromadb's ``where``) typed as a JSON object; None when blank."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise BadInput(f'{what}: a JSON object, e.g. \'{{"subject": "physics"}}\'')
    return value


def excerpt(text: str | None, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters (``...`` when cut)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def meta_text(metadata: dict[str, Any], width: int = 50) -> str:
    """``key=value, ...`` cut to ``width``; ``-`` for none."""
    text = ", ".join(f"{k}={v}" for k, v in metadata.items())
    return excerpt(text, width) if text else "-"


def read_documents(path: Path) -> list[dict[str, Any]]:
    """A file as documents: JSON lines give one each (``{"id", "text"|"content", "metadata"}``
    or a string; the id defaults to ``NAME:LINE``), any other file is one document whose id
    is its name."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    source = str(path.resolve())
    if path.suffix.lower() not in JSON_LINES:
        kind = "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
        return [{"id": path.name, "text": text, "metadata": {"source": source, "kind": kind}}]
    docs: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: not JSON ({exc.msg})") from None
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise BadInput(f"{path}:{number}: a JSON object or string, not {type(item).__name__}")
        given = item.get("metadata")
        meta: dict[str, Any] = given if isinstance(given, dict) else {}
        docs.append(
            {
                "id": str(item.get("id") or f"{path.name}:{number}"),
                "text": next((item[k] for k in ("text", "content", "document") if k in item), None),
                "metadata": {"source": source, "line": number, **meta},
            }
        )
    return docs
