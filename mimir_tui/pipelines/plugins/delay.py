"""``Data_Processing.delay``: wait, stopping at once when the run is cancelled."""

from __future__ import annotations

import time
from typing import Any

from pydantic import AliasChoices, Field

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

    def execute(self, config: DelayConfig, ctx: StepContext) -> dict[str, Any]:
        started = time.monotonic()
        if ctx.cancel_event.wait(config.seconds):
            raise StepCancelled(f"delay cancelled after {time.monotonic() - started:.2f}s of {config.seconds:g}s")
        return {"seconds": config.seconds, "waited": round(time.monotonic() - started, 3)}
