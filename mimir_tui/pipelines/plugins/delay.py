"""``Data_Processing.delay``: wait, stopping at once when the run is cancelled.

An ``async`` plugin: the wait is a timer on the run's event loop, not a thread held asleep
(a sync plugin's step gets a thread of its own, and a hand-off to it and back)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import AliasChoices, Field

from ..cancel import pause
from ..registry import Plugin, PluginConfig, StepCancelled, StepContext


class DelayConfig(PluginConfig):
    seconds: float = Field(
        1.0, ge=0, validation_alias=AliasChoices("seconds", "duration", "delay"), description="how long to wait"
    )


class Delay(Plugin):
    type = "Data_Processing"
    name = "delay"
    description = "Wait a number of seconds (cancellable). Result {seconds, waited}."
    Config = DelayConfig

    async def execute(self, config: DelayConfig, ctx: StepContext) -> dict[str, Any]:
        # ctx.cancel_event is looked at as it sleeps (the runner also cancels the step's task
        # outright; the event is what a plugin's other callers set).
        started = time.monotonic()
        if await pause(config.seconds, ctx.cancel_event):
            raise StepCancelled(f"delay cancelled after {time.monotonic() - started:.2f}s of {config.seconds:g}s")
        return {"seconds": config.seconds, "waited": round(time.monotonic() - started, 3)}
