"""What a run keeps of each value it sees (a step's input and output, the shared context):
plain JSON data, secrets masked, cut to ``pipelines.summary_max_chars``, so that a big API reply
neither bloats the record nor leaks a key into it."""

from __future__ import annotations

import json
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


__all__ = ["jsonable", "summarize"]
