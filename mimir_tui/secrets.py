"""What counts as a secret, for every place that prints or stores values: execution records
and logs, ``config show``, error messages."""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(
    r"(^|[_\-. ])(passwords?|passwd|pwd|passphrase|secrets?|token|api[_\-]?keys?|apikeys?|authorization|"
    r"auth|credentials?|private[_\-]?key|cookie|set[_\-]cookie|session[_\-]?id)$",
    re.IGNORECASE,
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")
_KV_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)('[^']*'|\S+)")
MASK = "***"


def is_secret_key(key: Any) -> bool:
    """``api_key``, ``X-Api-Key``, ``accessToken``, ``Authorization``, ``password`` are secret;
    ``max_tokens`` and ``token_count`` are not."""
    if not isinstance(key, str):
        return False
    return bool(_SECRET_KEY.search(_CAMEL.sub(r"\1_\2", key.strip())))


def mask_text(text: str) -> str:
    """Passwords inside free text: ``scheme://user:pw@`` and ``password=pw``."""
    return _KV_PASSWORD.sub(rf"\1\2{MASK}", _URL_PASSWORD.sub(rf"\1{MASK}@", text))


def mask_tree(value: Any) -> Any:
    """A copy of plain data with the values under secret-looking keys masked, at any depth,
    and passwords in strings masked."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else mask_tree(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_tree(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value
