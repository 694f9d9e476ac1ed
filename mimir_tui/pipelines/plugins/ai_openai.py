"""``AIModels.openai``: a chat completion against any OpenAI-compatible endpoint.

OpenAI itself, or a local Ollama (``base_url: http://127.0.0.1:11434/v1``), vLLM, llama.cpp's
server, LM Studio, OpenRouter... The request is ``POST {base_url}/chat/completions`` with
``Authorization: Bearer <key>`` (no header when there is no key, as local servers expect).
The result's ``content`` is the reply text, as the original's templates
(``{{.initial_content.content}}``) expect. The API key never appears in a result, log or error.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..policy import Policy, Reply
from ..registry import Plugin, PluginConfig, PluginError, StepContext, StepTimedOut
from .common import as_text, cancellable, excerpt, redact_url

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class Message(BaseModel):
    """``{role, content}``; other keys a server understands (name, tool_call_id...) pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[Any] | None = ""

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        # A list of parts ([{type: text, text: ...}]) is the protocol's own; other data becomes JSON text.
        if isinstance(value, list) and all(isinstance(p, dict) and "type" in p for p in value):
            return value
        return as_text(value)


class ChatConfig(PluginConfig):
    operation: Literal["chat"] = Field("chat", description="only chat (the original's name)")
    model: str | None = Field(None, description="model name (else env OPENAI_MODEL)")
    messages: list[Message] | None = Field(None, description="the conversation: [{role, content}]")
    prompt: str | None = Field(None, description="a user message (after messages, if both)")
    system: str | None = Field(None, description="a system message put first")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    api_key: SecretStr | None = Field(None, description="bearer token (else env OPENAI_API_KEY); never shown")

    @field_validator("operation", mode="before")
    @classmethod
    def _operation(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {"chat_completion": "chat", "chat-completion": "chat", "completion": "chat"}.get(value, value)
        return value

    @field_validator("prompt", "system", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return as_text(value)

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key(cls, value: Any) -> Any:
        # "${OPENAI_API_KEY}" with the variable unset renders as "": fall back to the environment.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _something_to_say(self) -> ChatConfig:
        if not self.messages and not self.prompt:
            raise ValueError("give 'messages' (a list of {role, content}) or 'prompt'")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        for message in self.messages or []:
            out.append(message.model_dump(exclude_none=False))
        if self.prompt:
            out.append({"role": "user", "content": self.prompt})
        return out


class OpenAIConfig(ChatConfig):
    base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("base_url", "api_base", "endpoint"),
        description=f"the API root (else env OPENAI_BASE_URL, else {DEFAULT_BASE_URL})",
    )
    timeout: float = Field(120.0, gt=0, description="seconds for the request")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="more request-body fields (top_p, stop, seed, response_format...)"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="more request headers")
    retries: int = Field(0, ge=0, le=10, description="retries on 429, 5xx and connection errors, with backoff")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if not value:
                return None
            if not value.lower().startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https:// (got {redact_url(value)!r})")
        return value


def reply_text(content: Any) -> str:
    """The text of a message's content (a string, or a list of parts with ``text``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def server_error(reply: Reply) -> str:
    """The message an OpenAI-style server put in its error body, or an excerpt of the body."""
    try:
        body = reply.json()
    except ValueError:
        return excerpt(reply.text, 300) or reply.response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg") or ""
            code = error.get("code") or error.get("type")
            text = f"{message} ({code})" if code and message else str(message or code or "")
            if text:
                return excerpt(text, 300)
        elif error:
            return excerpt(str(error), 300)
    return excerpt(str(body), 300)


def _retry_after(reply: Reply | None, attempt: int) -> float:
    delay = min(30.0, 2.0**attempt)
    if reply is not None:
        raw = reply.response.headers.get("retry-after", "").strip()
        if raw:
            try:
                delay = float(raw)
            except ValueError:
                try:
                    delay = (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds()
                except (TypeError, ValueError):
                    pass
    return max(0.0, min(delay, 60.0))


class OpenAIChat(Plugin):
    type = "AIModels"
    name = "openai"
    description = (
        "Chat completion against any OpenAI-compatible endpoint. Result {content, model, usage, finish_reason, raw}."
    )
    Config = OpenAIConfig

    async def execute(self, config: OpenAIConfig, ctx: StepContext) -> dict[str, Any]:
        import httpx  # here: most instances never make a request (mimir_tui.pipelines.http)

        key = config.api_key.get_secret_value() if config.api_key else (os.environ.get("OPENAI_API_KEY") or "").strip()
        base = (config.base_url or os.environ.get("OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
        model = config.model or os.environ.get("OPENAI_MODEL", "").strip()
        if not model:
            raise PluginError("no model: set 'model' in the step config (or OPENAI_MODEL)")

        def scrub(text: str) -> str:
            return text.replace(key, "***") if key else text

        url = f"{base}/chat/completions"
        shown = redact_url(url)
        body: dict[str, Any] = {"model": model, "messages": config.chat_messages()}
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if config.max_tokens is not None:
            body["max_tokens"] = config.max_tokens
        body.update(config.extra)
        headers = {"Accept": "application/json", **config.headers}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        ctx.log("DEBUG", f"POST {shown} model={model} messages={len(body['messages'])}")

        reply: Reply | None = None
        policy = Policy.of(ctx.settings)
        async with policy.http_client(timeout=config.timeout) as client:
            for attempt in range(config.retries + 1):
                last = attempt == config.retries
                try:
                    reply = await cancellable(
                        policy.send(client, "POST", url, json=body, headers=headers), ctx, what=f"POST {shown}"
                    )
                except httpx.TimeoutException:
                    if last:
                        raise StepTimedOut(f"POST {shown} timed out after {config.timeout:g}s") from None
                    reply = None
                except httpx.HTTPError as exc:
                    if last:
                        raise PluginError(
                            scrub(f"POST {shown} failed: {type(exc).__name__}: {excerpt(str(exc)) or 'no detail'}")
                        ) from None
                    reply = None
                else:
                    if reply.response.status_code not in RETRY_STATUS or last:
                        break
                wait = _retry_after(reply, attempt)
                what = f"HTTP {reply.response.status_code}" if reply is not None else "no response"
                ctx.log("WARNING", f"POST {shown}: {what}; retry {attempt + 1} of {config.retries} in {wait:g}s")
                await cancellable(asyncio.sleep(wait), ctx, what="retry wait")
        assert reply is not None
        status = reply.response.status_code
        if status >= 400:
            hint = " (set api_key or OPENAI_API_KEY)" if status == 401 and not key else ""
            raise PluginError(scrub(f"POST {shown}: HTTP {status}: {server_error(reply)}{hint}"))
        try:
            data = reply.json()
        except ValueError:
            raise PluginError(scrub(f"POST {shown}: the reply is not JSON: {excerpt(reply.text)}")) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            detail = data.get("error") if isinstance(data, dict) else None
            raise PluginError(scrub(f"POST {shown}: the reply has no choices: {excerpt(str(detail or data))}"))
        choice = choices[0]
        message = choice.get("message") or {}
        return {
            "content": reply_text(message.get("content")),
            "role": message.get("role", "assistant"),
            "model": data.get("model", model),
            "usage": data.get("usage") or {},
            "finish_reason": choice.get("finish_reason"),
            "raw": data,
        }
