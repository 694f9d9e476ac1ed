"""``Input.api``: one HTTP request with httpx; the response becomes the step's output."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator

from ..policy import Policy, Reply
from ..registry import Plugin, PluginConfig, PluginError, StepContext, StepTimedOut
from .common import cancellable, excerpt, http_url, redact_url

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class ApiConfig(PluginConfig):
    url: str = Field(description="the URL to call (http or https)")
    method: str = Field("GET", description="GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers")
    params: dict[str, Any] = Field(default_factory=dict, description="query string parameters")
    data: Any = Field(
        None, description="request body: a mapping or list is sent as JSON (the original's key), text as is"
    )
    json_body: Any = Field(
        None, validation_alias=AliasChoices("json", "json_body"), description="request body sent as JSON"
    )
    form: dict[str, Any] | None = Field(None, description="request body sent form-encoded")
    timeout: float = Field(30.0, gt=0, description="seconds for the whole request")
    expected_status: int | list[int] | None = Field(
        None, description="status code(s) that count as success; default any 2xx"
    )
    follow_redirects: bool = True
    verify: bool = Field(True, description="verify TLS certificates")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in METHODS:
                raise ValueError(f"unknown HTTP method {value!r}; use one of {', '.join(METHODS)}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_body(self) -> ApiConfig:
        given = [k for k, v in (("data", self.data), ("json", self.json_body), ("form", self.form)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give only one request body, not {' and '.join(given)}")
        return self


def decode_body(reply: Reply) -> Any:
    """JSON when the content type says so (falling back to text if it does not parse), else text."""
    ctype = reply.response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not reply.content:
        return None if ctype.endswith("json") else ""
    if ctype == "application/json" or ctype.endswith("+json") or ctype.endswith("/json"):
        try:
            return reply.json()
        except ValueError:
            pass
    return reply.text


def status_ok(status: int, expected: int | list[int] | None) -> bool:
    if expected is None:
        return 200 <= status < 300
    if isinstance(expected, int):
        return status == expected
    return status in expected


def expected_text(expected: int | list[int] | None) -> str:
    if expected is None:
        return "2xx"
    if isinstance(expected, int):
        return str(expected)
    return ", ".join(str(s) for s in expected)


class ApiInput(Plugin):
    type = "Input"
    name = "api"
    description = (
        "Call an HTTP API; the result holds url, status_code, headers, body (decoded JSON or text), timestamp."
    )
    Config = ApiConfig

    async def execute(self, config: ApiConfig, ctx: StepContext) -> dict[str, Any]:
        import httpx  # here: most instances never make a request (mimir_tui.pipelines.http)

        kwargs: dict[str, Any] = {}
        if config.json_body is not None:
            kwargs["json"] = config.json_body
        elif config.form is not None:
            kwargs["data"] = config.form
        elif config.data is not None:
            if isinstance(config.data, (str, bytes)):
                kwargs["content"] = config.data
            else:
                kwargs["json"] = config.data
        # httpx replaces a URL's query string with ``params``; merge them instead.
        params = {k: v for k, v in config.params.items() if v is not None}
        try:
            url = httpx.URL(config.url)
            if params:
                url = url.copy_merge_params(params)
        except (httpx.InvalidURL, TypeError) as exc:
            raise PluginError(f"invalid url {redact_url(config.url)!r}: {exc}") from None
        shown = redact_url(config.url)
        ctx.log("DEBUG", f"{config.method} {shown}")
        policy = Policy.of(ctx.settings)
        async with policy.http_client(
            timeout=config.timeout, follow_redirects=config.follow_redirects, verify=config.verify
        ) as client:
            try:
                reply = await cancellable(
                    policy.send(client, config.method, url, headers=config.headers, **kwargs),
                    ctx,
                    what=f"{config.method} {shown}",
                )
            except httpx.TimeoutException:
                raise StepTimedOut(f"{config.method} {shown} timed out after {config.timeout:g}s") from None
            except httpx.HTTPError as exc:
                raise PluginError(
                    f"{config.method} {shown} failed: {type(exc).__name__}: {excerpt(str(exc)) or 'no detail'}"
                ) from None
        response = reply.response
        final_url = redact_url(str(response.url))
        if not status_ok(response.status_code, config.expected_status):
            body = excerpt(reply.text, 200) if reply.content else "(empty body)"
            raise PluginError(
                f"{config.method} {final_url} returned HTTP {response.status_code} "
                f"(expected {expected_text(config.expected_status)}): {body}"
            )
        return {
            "url": final_url,
            "status_code": response.status_code,
            "headers": dict(response.headers.items()),
            "body": decode_body(reply),
            "timestamp": datetime.now(UTC).isoformat(),
        }
