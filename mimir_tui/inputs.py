"""Text that comes in (names, ids, time zones) checked once, and stored text made safe to print.

- :func:`check_text` refuses a name or id holding a control character (NUL, ESC, a newline,
  any C0 or C1 character, DEL) or a lone surrogate, or longer than its database column holds:
  the same limits on SQLite, PostgreSQL and MariaDB, taken from the column lengths.
- :func:`printable` escapes those characters visibly (``\\x1b``) wherever stored text is
  printed in a terminal, for rows saved before the check existed (a terminal injection).
- :func:`shown` quotes an input in an error message, shortened when it is long.
- :func:`zone_info` looks up an IANA time zone, whatever the name holds.

Only the standard library and :mod:`.errors`: the command line's parsers and the configuration
use it without loading the database stack.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import BadInput

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

#: C0 controls, DEL, C1 controls, and lone surrogates (undecodable bytes of a command line).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: What a multi-line text (a description) may hold of them.
_LINE_BREAKS = "\n\t"
#: Characters of an input quoted in full in an error message.
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` characters (``...`` marks the cut)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_printable(text: str) -> bool:
    """True if ``text`` holds none of the characters :func:`printable` escapes."""
    return _UNPRINTABLE.search(text) is None


def printable(text: object, *, multiline: bool = False) -> str:
    """``text`` with control characters escaped (ESC as ``\\x1b``); ``multiline`` keeps
    newlines and tabs."""
    value = str(text)
    if multiline:
        return _UNPRINTABLE.sub(lambda m: m.group() if m.group() in _LINE_BREAKS else _escape(m), value)
    return _UNPRINTABLE.sub(_escape, value)


def text_problem(value: str, *, limit: int | None = None, multiline: bool = False) -> str | None:
    """What is wrong with ``value`` as a name or id (None: nothing)."""
    for match in _UNPRINTABLE.finditer(value):
        char = match.group()
        if multiline and char in _LINE_BREAKS:
            continue
        kind = "an invalid character" if "\ud800" <= char <= "\udfff" else "a control character"
        return f"holds {kind} ({_escape(match)} at position {match.start() + 1}); use printable text"
    if limit is not None and len(value) > limit:
        return f"has {len(value)} characters; at most {limit} fit"
    return None


def check_text(value: str, what: str, *, limit: int | None = None, multiline: bool = False) -> str:
    """``value`` as given, or :class:`BadInput` naming ``what`` ("job name") and the problem."""
    if not isinstance(value, str):
        raise BadInput(f"{what} must be text, not {type(value).__name__}")
    problem = text_problem(value, limit=limit, multiline=multiline)
    if problem is not None:
        raise BadInput(f"{what} {shown(value)} {problem}")
    return value


def zone_info(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it (shortened) if there is none, whatever
    the name holds (a path, NUL, 5,000 characters: the file system's errors are not shown)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: --help need not load it

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError(f"unknown timezone {shown(name)} (use an IANA name such as Europe/Berlin)") from None
