"""What a run keeps of each value it sees (a step's input and output, the shared context):
plain JSON data, secrets masked, cut to ``pipelines.summary_max_chars``, so that a big API reply
neither bloats the record nor leaks a key into it."""

from __future__ import annotations

import json
import re
from typing import Any

from ..persistence.types import _json_default  # one conversion for records and logs
from ..secrets import SecretMasker, mask_tree


def jsonable(value: Any) -> Any:
    """Plain JSON data (models dumped, datetimes as ISO-8601 UTC, the rest as repr)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_json_default))


def summarize(value: Any, max_chars: int, secrets: SecretMasker | None = None) -> Any:
    """``value`` masked and as JSON data if its JSON text fits in ``max_chars``; otherwise the
    start of that text, cut, with the full length noted."""
    data = mask_tree(jsonable(value), secrets)
    text = json.dumps(data, ensure_ascii=False)
    if len(text) <= max_chars:
        return data
    return text[: max(0, max_chars)] + f"... [cut: {len(text)} chars]"


#: The note :func:`summarize` ends a cut value with.
_CUT = re.compile(r"\.\.\. \[cut: (\d+) chars\]\Z")


def one_line(value: Any, width: int = 120) -> str:
    """A kept value (a step's output, as :func:`summarize` left it) in one line of at most
    ``width`` characters: a mapping's keys with short values (a text's start and length, a
    list's length), a list's length and first items, a text's start. Not escaped for a
    terminal: print it through :func:`~mimir_tui.inputs.printable`."""
    if isinstance(value, dict):
        text = ", ".join(f"{key}={_short(item)}" for key, item in value.items())
    elif isinstance(value, list):
        text = f"{len(value)} item(s): " + ", ".join(_short(item) for item in value[:5])
    else:
        text = _short(value, width - 30)
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(value: Any, room: int = 32) -> str:
    if isinstance(value, str):
        cut = _CUT.search(value)
        if cut is not None:  # the start of the JSON text of a value too large to keep whole
            return f"{value[: min(room, cut.start())]}... ({cut[1]} chars of JSON)"
        if len(value) <= room:
            return json.dumps(value, ensure_ascii=False)
        return f"{json.dumps(value[:room], ensure_ascii=False)}... ({len(value)} chars)"
    if isinstance(value, list):
        return f"[{len(value)} item(s)]"
    if isinstance(value, dict):
        return f"{{{len(value)} key(s)}}"
    return json.dumps(value, ensure_ascii=False)


__all__ = ["jsonable", "one_line", "summarize"]
