"""Data_Processing.delay and its cancellation."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.delay import Delay
from mimir_tui.pipelines.registry import StepCancelled


async def test_waits(run_plugin):
    started = time.monotonic()
    result = await run_plugin(Delay, {"seconds": 0.15})
    elapsed = time.monotonic() - started
    assert 0.14 <= elapsed < 5  # waits at least its time; the upper bound only catches a hang
    assert result["seconds"] == 0.15 and result["waited"] >= 0.14


async def test_cancel_stops_it_early(run_plugin):
    event = threading.Event()
    threading.Timer(0.1, event.set).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled, match="delay cancelled"):
        await run_plugin(Delay, {"duration": 30}, cancel_event=event)
    assert time.monotonic() - started < 5, "it waited for the 30 s delay"


def test_config():
    assert Delay.Config.model_validate({"delay": "0.5"}).seconds == 0.5
    assert Delay.Config.model_validate({}).seconds == 1.0
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Delay.Config.model_validate({"seconds": -1})
