"""AIModels.openai against a loopback server speaking the chat-completions protocol; AIModels.mock."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.ai_mock import MockChat
from mimir_tui.pipelines.plugins.ai_openai import OpenAIChat
from mimir_tui.pipelines.registry import PluginError, StepTimedOut

KEY = "sk-test-0123456789abcdef"


def completion(request):
    """A minimal OpenAI-compatible /v1/chat/completions."""
    auth = request.headers.get("Authorization")
    if auth != f"Bearer {KEY}":
        presented = (auth or "").removeprefix("Bearer ")
        return (
            401,
            {},
            {
                "error": {
                    "message": f"Incorrect API key provided: {presented}.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    body = request.json()
    last = body["messages"][-1]["content"]
    return (
        200,
        {},
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"] + "-0613",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": f"echo: {last}"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        },
    )


@pytest.fixture
def llm(http_server):
    http_server.route("POST", "/v1/chat/completions", completion)
    return http_server


def base(server) -> str:
    return server.url("/v1")


async def test_chat_completion(run_plugin, llm):
    result = await run_plugin(
        OpenAIChat,
        {
            "operation": "chat",
            "model": "gpt-3.5-turbo",
            "messages": [{"role": "user", "content": "Write a brief explanation of quantum computing for beginners."}],
            "max_tokens": 200,
            "temperature": 0.8,
            "api_key": KEY,
            "base_url": base(llm),
        },
    )
    assert result["content"] == "echo: Write a brief explanation of quantum computing for beginners."
    assert result["model"] == "gpt-3.5-turbo-0613"
    assert result["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    assert result["raw"]["object"] == "chat.completion"
    sent = llm.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "Write a brief explanation of quantum computing for beginners."}],
        "temperature": 0.8,
        "max_tokens": 200,
    }
    assert KEY not in repr(result)


async def test_chain_reads_the_previous_content(run_plugin, llm):
    # What the runner does with {{.initial_content.content}} in llm_chain_example.yaml.
    first = await run_plugin(OpenAIChat, {"model": "m", "prompt": "generate", "api_key": KEY, "base_url": base(llm)})
    second = await run_plugin(
        OpenAIChat,
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "You are a summarizer."},
                {"role": "user", "content": f"Please summarize: {first['content']}"},
            ],
            "api_key": KEY,
            "base_url": base(llm),
        },
        {"initial_content": first},
    )
    assert second["content"] == "echo: Please summarize: echo: generate"
    assert llm.requests[-1].json()["messages"][0] == {"role": "system", "content": "You are a summarizer."}


async def test_prompt_system_extra_and_headers(run_plugin, llm):
    await run_plugin(
        OpenAIChat,
        {
            "model": "llama3",
            "system": "Be terse.",
            "prompt": "hi",
            "api_key": KEY,
            "base_url": base(llm) + "/",
            "extra": {"top_p": 0.5, "seed": 7},
            "headers": {"X-Title": "mimir"},
        },
    )
    sent = llm.requests[-1]
    assert sent.json() == {
        "model": "llama3",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        "top_p": 0.5,
        "seed": 7,
    }
    assert sent.headers["X-Title"] == "mimir"


async def test_key_and_base_url_from_the_environment(run_plugin, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", base(llm))
    # "${OPENAI_API_KEY}" rendered with the variable unset would be "": that means "use the environment".
    result = await run_plugin(OpenAIChat, {"model": "m", "prompt": "from env", "api_key": ""})
    assert result["content"] == "echo: from env"
    assert llm.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_no_key_sends_no_authorization_header(run_plugin, http_server):
    http_server.route(
        "POST",
        "/v1/chat/completions",
        lambda r: (
            200,
            {},
            {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": str("Authorization" in r.headers)},
                        "finish_reason": "stop",
                    }
                ]
            },
        ),
    )
    result = await run_plugin(OpenAIChat, {"model": "local", "prompt": "x", "base_url": base(http_server)})
    assert result["content"] == "False"
    assert result["model"] == "local" and result["usage"] == {}


async def test_401_names_status_and_message_but_never_the_key(run_plugin, llm, monkeypatch):
    wrong = "sk-wrong-key-abcdef123456"
    with pytest.raises(PluginError) as info:
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "api_key": wrong, "base_url": base(llm)})
    message = str(info.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message and "invalid_api_key" in message
    assert wrong not in message and "***" in message
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(PluginError) as info:
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": base(llm)})
    assert wrong not in str(info.value) and wrong not in repr(info.value)


async def test_401_without_a_key_hints_at_it(run_plugin, llm):
    with pytest.raises(PluginError, match=r"HTTP 401.*set api_key or OPENAI_API_KEY"):
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": base(llm)})


async def test_server_errors_and_bad_replies(run_plugin, http_server):
    http_server.route(
        "POST", "/a/chat/completions", lambda r: (500, {"Content-Type": "text/html"}, "<h1>Bad gateway</h1>")
    )
    http_server.route("POST", "/b/chat/completions", lambda r: (200, {}, {"object": "chat.completion", "choices": []}))
    http_server.route("POST", "/c/chat/completions", lambda r: (400, {}, {"detail": "model 'nope' not found"}))
    with pytest.raises(PluginError, match="HTTP 500: <h1>Bad gateway</h1>"):
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": http_server.url("/a")})
    with pytest.raises(PluginError, match="no choices"):
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": http_server.url("/b")})
    with pytest.raises(PluginError, match="HTTP 400: model 'nope' not found"):
        await run_plugin(OpenAIChat, {"model": "nope", "prompt": "x", "base_url": http_server.url("/c")})


async def test_retries_on_429(run_plugin, http_server):
    calls = []

    def flaky(request):
        calls.append(1)
        if len(calls) == 1:
            return 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
        return 200, {}, {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}

    http_server.route("POST", "/v1/chat/completions", flaky)
    result = await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": base(http_server), "retries": 2})
    assert result["content"] == "ok" and len(calls) == 2
    calls.clear()
    with pytest.raises(PluginError, match="HTTP 429: slow down"):
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": base(http_server)})


async def test_timeout(run_plugin, http_server):
    def slow(request):
        time.sleep(2)
        return 200, {}, {}

    http_server.route("POST", "/v1/chat/completions", slow)
    with pytest.raises(StepTimedOut):
        await run_plugin(OpenAIChat, {"model": "m", "prompt": "x", "base_url": base(http_server), "timeout": 0.3})


async def test_model_is_needed(run_plugin, monkeypatch):
    with pytest.raises(PluginError, match="no model"):
        await run_plugin(OpenAIChat, {"prompt": "x", "base_url": "http://127.0.0.1:9/v1"})


def test_config_validation_and_secret():
    cfg = OpenAIChat.Config.model_validate({"model": "m", "prompt": "x", "api_key": KEY})
    assert KEY not in repr(cfg) and KEY not in cfg.model_dump_json()
    with pytest.raises(ValidationError, match="give 'messages'"):
        OpenAIChat.Config.model_validate({"model": "m"})
    with pytest.raises(ValidationError, match="operation"):
        OpenAIChat.Config.model_validate({"model": "m", "prompt": "x", "operation": "embed"})
    with pytest.raises(ValidationError, match="role"):
        OpenAIChat.Config.model_validate({"model": "m", "messages": [{"role": "robot", "content": "x"}]})
    with pytest.raises(ValidationError, match="temperature"):
        OpenAIChat.Config.model_validate({"model": "m", "prompt": "x", "temperature": 5})


# -- AIModels.mock -------------------------------------------------------------------------------


async def test_mock_is_deterministic_and_shaped_like_openai(run_plugin):
    config = {
        "operation": "chat",
        "model": "gpt-3.5-turbo",
        "api_key": "${OPENAI_API_KEY}",
        "temperature": 0.3,
        "max_tokens": 80,
        "messages": [
            {"role": "system", "content": "You are a summarizer."},
            {"role": "user", "content": "Please summarize: qubits"},
        ],
    }
    one = await run_plugin(MockChat, config)
    two = await run_plugin(MockChat, config)
    assert one == two
    assert one["content"] == "Mock response from gpt-3.5-turbo: Please summarize: qubits"
    assert set(one) >= {"content", "model", "usage", "finish_reason", "raw"}
    assert one["raw"]["choices"][0]["message"]["content"] == one["content"]
    assert one["usage"]["prompt_tokens"] == 7


async def test_mock_reply_and_max_tokens(run_plugin):
    assert (await run_plugin(MockChat, {"prompt": "x", "reply": "fixed"}))["content"] == "fixed"
    cut = await run_plugin(MockChat, {"prompt": "one two three four five", "max_tokens": 3})
    assert cut["content"] == "Mock response from" and cut["finish_reason"] == "length"


async def test_data_rendered_into_text_fields_becomes_json(run_plugin):
    # prompt: "{{ records }}" renders to a list when the template is the whole value.
    result = await run_plugin(MockChat, {"prompt": [{"a": 1}], "messages": [{"role": "user", "content": {"k": "v"}}]})
    assert result["content"] == 'Mock response from mock: [{"a": 1}]'
    cfg = OpenAIChat.Config.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    )
    assert cfg.chat_messages()[0]["content"] == [{"type": "text", "text": "hi"}]
    assert (
        MockChat.Config.model_validate({"messages": [{"role": "user", "content": {"k": "v"}}]}).chat_messages()[0][
            "content"
        ]
        == '{"k": "v"}'
    )
