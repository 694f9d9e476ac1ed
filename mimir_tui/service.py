"""The headless runtime (scheduler, queue, retention, watchers, signals) arrives with the
scheduler issue; until then ``--headless`` says so instead of pretending to run."""

from __future__ import annotations

from .config import Settings
from .errors import MimirError


def run_headless(settings: Settings) -> int:
    raise MimirError("the headless service is not built yet (scheduler issue)")
