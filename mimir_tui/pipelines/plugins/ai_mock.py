"""``AIModels.mock``: a deterministic stand-in for a chat model, for demos and tests.

It takes the same keys as ``AIModels.openai`` (so a pipeline switches by changing the plugin
name) and answers ``Mock response from <model>: <the last user message>``, or ``reply`` when
given. ``max_tokens`` cuts the reply to that many words. Nothing leaves the machine."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import AliasChoices, Field

from ..registry import Plugin, StepCancelled, StepContext
from .ai_openai import ChatConfig, reply_text


class MockConfig(ChatConfig):
    model: str | None = Field("mock", description="shown in the reply")
    reply: str | None = Field(None, description="a fixed reply instead of the echo")
    delay: float = Field(0.0, ge=0, description="seconds to wait before answering (cancellable)")
    # Accepted and ignored, so an AIModels.openai step works unchanged with this plugin.
    base_url: str | None = Field(None, validation_alias=AliasChoices("base_url", "api_base", "endpoint"))
    timeout: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    retries: int = 0


def _words(text: str) -> int:
    return len(text.split())


class MockChat(Plugin):
    type = "AIModels"
    name = "mock"
    description = "A deterministic fake chat model that echoes the prompt. Result as AIModels.openai."
    Config = MockConfig

    def execute(self, config: MockConfig, ctx: StepContext) -> dict[str, Any]:
        if config.delay and ctx.cancel_event.wait(config.delay):
            raise StepCancelled("mock model cancelled")
        messages = config.chat_messages()
        model = config.model or "mock"
        last_user = next((reply_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        content = config.reply if config.reply is not None else f"Mock response from {model}: {last_user}"
        finish = "stop"
        if config.max_tokens is not None and _words(content) > config.max_tokens:
            content = " ".join(content.split()[: config.max_tokens])
            finish = "length"
        prompt_tokens = sum(_words(reply_text(m.get("content"))) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _words(content),
            "total_tokens": prompt_tokens + _words(content),
        }
        digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True, default=str).encode()).hexdigest()[:16]
        raw = {
            "id": f"chatcmpl-mock-{digest}",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": usage,
        }
        return {
            "content": content,
            "role": "assistant",
            "model": model,
            "usage": usage,
            "finish_reason": finish,
            "raw": raw,
        }
