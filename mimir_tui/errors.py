"""Errors that carry the exit code the command line contract gives them.

Exit codes (DESIGN.md): 0 done, 1 the operation failed or the system is unhealthy,
2 bad input (a bad cron expression, an invalid pipeline, an unknown id).
"""

from __future__ import annotations


class MimirError(Exception):
    """An error with a one-line message meant for an operator."""

    exit_code = 1
    #: No retry can mend it: a long-running loop that meets it stops (see loop_errors).
    fatal = False


class BadInput(MimirError):
    """The caller gave something invalid; nothing was changed."""

    exit_code = 2


class ConfigError(BadInput):
    """The configuration is invalid: the message names the key and the file."""


class NotFound(BadInput):
    """An id or name that does not exist."""


class PersistenceError(MimirError):
    """The database could not be opened or an operation on it failed."""


class DatabaseCorrupt(PersistenceError):
    """The database file is damaged (SQLite: "database disk image is malformed"): nothing more
    should run on it until it is restored or recovered."""

    fatal = True


class Conflict(MimirError):
    """The row exists already, or was changed under us."""


class OutcomeNotSaved(PersistenceError):
    """A run ended, but its end could not be saved: the database stayed away. ``record`` is the
    end as the run knew it (never to be replaced by a guess such as ``failed``)."""

    def __init__(self, message: str, record: object) -> None:
        super().__init__(message)
        self.record = record
