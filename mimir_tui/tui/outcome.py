"""What a screen does with the end of a thread worker that ran a call for it: the result to
the screen's ``then``, else one line in its status line (an error Mimir does not know is a bug:
logged with its traceback, shown by its type)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from textual.worker import Worker, WorkerState

from ..errors import MimirError

log = logging.getLogger("mimir.tui")

#: The worker states that end a call.
FINISHED = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)


def deliver(
    worker: Worker[Any], state: WorkerState, what: str, then: Callable[[Any], None], say: Callable[..., None]
) -> None:
    """``then(result)`` for a call that succeeded; ``say(line, error=True)`` for one that
    failed or was cancelled. ``state`` is the event's (see the callers)."""
    if state == WorkerState.SUCCESS:
        then(worker.result)
    elif state == WorkerState.CANCELLED:
        say(f"{what}: cancelled", error=True)
    else:
        error = worker.error
        if not isinstance(error, MimirError):
            log.error("%s failed", what, exc_info=error)
        text = str(error) if isinstance(error, MimirError) else f"{what} failed: {error!r}"
        say(" ".join(text.split()), error=True)
