"""What counts as a secret, and how it is masked, for every place that prints or stores values:
execution records and logs, plugin messages, ``config show``, error messages, database errors.

One home, so that a password hidden in one place is hidden in all of them. Three kinds of
secret are recognised:

* by **key**: the value under ``password``, ``api_key``, ``Authorization``, ``accessToken``...
  (:func:`is_secret_key`, :func:`mask_tree`);
* by **shape**, inside free text: a URL's password (``scheme://user:pw@host``), a secret in
  its query (``?password=pw``, ``&sslpassword=pw``, ``&api_key=k``) and a ``password=pw`` pair
  as in libpq DSNs (:func:`mask_text`); a whole connection string, whose password may hold
  characters a URL parser stops at (:func:`mask_url`, the one function for every URL shown);
* by **value**: strings seen under secret keys earlier (a step's config), masked wherever they
  turn up later, in an error, a log line, an API's echo (:func:`secret_values`, :class:`SecretMasker`).

Imports nothing beyond the standard library: the command line's error path uses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# -- the patterns -------------------------------------------------------------------------------

#: Keys whose values are secrets, matched at the end of the key after a separator (``_ - . ``
#: or a camelCase hump): ``client_secret``, ``X-Api-Key``, ``accessToken``; not ``max_tokens``.
SECRET_KEY = re.compile(
    r"(^|[_\-. ])(passwords?|passwd|pwd|passphrase|secrets?|token|api[_\-]?keys?|apikeys?|authorization|"
    r"auth|credentials?|private[_\-]?key|cookie|set[_\-]cookie|session[_\-]?id)$",
    re.IGNORECASE,
)
_CAMEL_HUMP = re.compile(r"([a-z0-9])([A-Z])")

#: A URL's password in free text: ``://user:pw@`` (the user may be empty: ``redis://:pw@``).
#: The password runs to the next ``@``, an unescaped ``/`` included (the drivers take it so);
#: but a port (digits, then ``/ ? #``) is not a password: in ``https://host:8080/?q=a@b.com``
#: nothing is masked.
URL_PASSWORD = re.compile(r"(://[^/\s:@\[]*:)(?!\d*[/?#])[^@\s]*@")
# The same, found in linear time (:func:`_mask_url_passwords`): that pattern, run over text with
# many ``://u:`` and no ``@``, rescans the rest of the text from each one (quadratic: 100 KB of
# hostile data in a step's output took 17 s).
_URL_USERINFO = re.compile(r"://[^/\s:@\[]*:(?!\d*[/?#])")
_URL_PASSWORD_END = re.compile(r"[@\s]")

#: A ``password=`` pair, as in libpq DSNs (``host=h password=pw``); the value bare or quoted.
#: (In a URL's query, ``?password=pw&...``, :data:`URL_QUERY_PARAM` masks the value alone.)
DSN_PASSWORD = re.compile(r"(?i)(?<![?&])\b(password|passwd|pwd)(\s*=\s*)('[^']*'|\S+)")

#: A parameter in a URL's query (``?name=value`` or ``&name=value``); masked when
#: :func:`is_secret_param` says so.
URL_QUERY_PARAM = re.compile(r"([?&])([^=&#?\s]+)=([^&#\s]*)")
# Query names that are secret without a separator before the word: libpq's ``sslpassword``,
# ``accesstoken``, ``clientsecret``; and the parts of a signed URL.
_SECRET_PARAM = re.compile(r"(?i)(password|passwd|passphrase|secret|token)$|^(key|sig|signature)$")

# A whole connection string, where the drivers take the password up to the last "@" (an
# unescaped / ? # or @ included): with a scheme, and without one (a typo such as "postgres:/").
_CONN_PASSWORD = re.compile(r"^([^:/]+://[^:/@]*):.*@")
_CONN_PASSWORD_NO_SCHEME = re.compile(r"([^:/@\s]*:)\S*@")


# -- by key -------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def is_secret_key(key: Any) -> bool:
    """``api_key``, ``X-Api-Key``, ``accessToken``, ``Authorization``, ``password`` are secret;
    ``max_tokens`` and ``token_count`` are not. (Cached: every key of every summarized value
    and config is asked, the same few names again and again.)"""
    if not isinstance(key, str):
        return False
    key = key.strip()
    return bool(SECRET_KEY.search(key) or SECRET_KEY.search(_CAMEL_HUMP.sub(r"\1_\2", key)))


def mask_tree(value: Any, masker: SecretMasker | None = None) -> Any:
    """A copy of plain data with the values under secret-looking keys replaced by ``***`` at any
    depth, and secrets in its strings masked: by shape (:func:`mask_text`), and by value when a
    ``masker`` is given. Tuples come back as lists (the data is headed for JSON)."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else mask_tree(v, masker)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_tree(v, masker) for v in value]
    if isinstance(value, str):
        return masker.mask(value) if masker is not None else mask_text(value)
    return value


def is_secret_param(name: str) -> bool:
    """A URL query parameter whose value is a secret: any secret key (``password``, ``api_key``,
    ``access_token``), and ``sslpassword``, ``key``, ``sig``; not ``sslmode`` or ``max_tokens``."""
    return is_secret_key(name) or bool(_SECRET_PARAM.search(name))


# -- by shape -----------------------------------------------------------------------------------


def _mask_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={MASK}" if value and is_secret_param(name) else match.group(0)


def _mask_url_passwords(text: str) -> str:
    """What ``URL_PASSWORD.sub`` does, in one pass: each ``://user:`` is masked up to the next
    ``@``, unless whitespace (or the end) comes first; the next stop found is reused by every
    ``://user:`` before it."""
    parts: list[str] = []
    done = 0  # text[:done] is in parts; the last "@" masked up to is text[done]
    stop = -1  # where the last search for "@" or whitespace ended (len(text): none left)
    for match in _URL_USERINFO.finditer(text):
        start = match.end()
        if parts and match.start() <= done:  # inside the password just masked
            continue
        if stop < start:
            found = _URL_PASSWORD_END.search(text, start)
            stop = found.start() if found else len(text)
        if stop < len(text) and text[stop] == "@":
            parts += [text[done:start], MASK]
            done = stop
    return "".join(parts) + text[done:] if parts else text


def mask_text(text: str) -> str:
    """Passwords inside free text: ``scheme://user:pw@``, ``?password=pw`` (and the other
    secret query parameters) and ``password=pw``."""
    if "://" in text:
        text = _mask_url_passwords(text)
    if "=" not in text:
        return text
    text = URL_QUERY_PARAM.sub(_mask_param, text)
    return DSN_PASSWORD.sub(rf"\1\2{MASK}", text)


def mask_url(url: str) -> str:
    """A URL or connection string with its secrets masked: ``scheme://user:secret@host/db`` ->
    ``scheme://user:***@host/db``, ``...?password=pw&sslmode=require`` -> ``...?password=***&
    sslmode=require`` (every secret query parameter, :func:`is_secret_param`); a string without
    one unchanged. The one function for every URL Mimir shows: ``health``, the service log,
    ``config show``, errors, plugin messages.

    A malformed string (no ``scheme://``, or a libpq ``password=...`` DSN) still has anything
    that looks like a password masked: it ends up in error messages and ``config show``. For
    a password inside a longer message, use :func:`mask_text`.
    """
    if not url:
        return url
    return URL_QUERY_PARAM.sub(_mask_param, _mask_userinfo(url))


def _mask_userinfo(url: str) -> str:
    if "://" not in url:
        return _CONN_PASSWORD_NO_SCHEME.sub(rf"\1{MASK}@", DSN_PASSWORD.sub(rf"\1\2{MASK}", url))
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.password is None:
        # Unparsable, or a password with an unescaped / ? # that urlsplit cuts short (the
        # drivers take it whole): mask from the user's colon to the last "@".
        return _CONN_PASSWORD.sub(rf"\1:{MASK}@", url)
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    host = netloc[1] if len(netloc) == 2 else ""
    return urlunsplit((parts.scheme, f"{user}:{MASK}@{host}", parts.path, parts.query, parts.fragment))


# -- by value -----------------------------------------------------------------------------------


def secret_values(value: Any) -> set[str]:
    """The strings found under secret-looking keys in ``value`` (to mask them wherever they
    turn up later: in errors, in logs, echoed back by an API)."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_secret_key(k) and isinstance(v, (str, int)) and not isinstance(v, bool):
                text = str(v)
                found.add(text)
                words = text.split()
                if len(words) > 1:  # "Bearer abc123": the credential alone too
                    found.add(words[-1])
            else:
                found |= secret_values(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= secret_values(v)
    return found


class SecretMasker:
    """Masks text by value and by shape: the secret strings it was given (at least 4
    characters: shorter ones would mask ordinary words), then :func:`mask_text`'s patterns.
    One per run; values are added as steps reveal them."""

    #: Shorter values are not masked by value (``"1"`` would mask every digit).
    MIN_LENGTH = 4

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if isinstance(v, str) and len(v) >= self.MIN_LENGTH and v != MASK} - self._values
        if new:
            self._values |= new
            longest_first = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in longest_first))

    def mask(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return mask_text(text)


__all__ = [
    "DSN_PASSWORD",
    "MASK",
    "SECRET_KEY",
    "URL_PASSWORD",
    "SecretMasker",
    "is_secret_key",
    "is_secret_param",
    "mask_text",
    "mask_tree",
    "mask_url",
    "secret_values",
]
