"""Input.api against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from mimir_tui.pipelines.plugins.input_api import ApiInput
from mimir_tui.pipelines.registry import PluginError, StepCancelled, StepTimedOut


@pytest.fixture
def api(http_server):
    http_server.route(
        "GET", "/items", lambda r: (200, {"X-Total": "2"}, {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
    )
    http_server.route("POST", "/echo", lambda r: (201, {"Content-Type": "application/json"}, r.body))
    http_server.route("PUT", "/echo", lambda r: (200, {"Content-Type": "application/json"}, r.body))
    http_server.route(
        "GET", "/boom", lambda r: (500, {"Content-Type": "text/plain"}, "internal failure: database gone\n" * 30)
    )
    http_server.route(
        "GET", "/text", lambda r: (200, {"Content-Type": "text/plain; charset=utf-8"}, "hello, plain world")
    )
    http_server.route("GET", "/badjson", lambda r: (200, {"Content-Type": "application/json"}, "{not json"))
    http_server.route("GET", "/vnd", lambda r: (200, {"Content-Type": "application/vnd.api+json"}, '{"data": []}'))
    http_server.route("GET", "/inspect", lambda r: (200, {}, {"headers": r.headers, "query": r.query}))
    http_server.route("GET", "/missing", lambda r: (404, {"Content-Type": "application/json"}, '{"error": "no"}'))
    http_server.route("GET", "/empty", lambda r: (204, {}, b""))

    def slow(r):
        time.sleep(3)
        return 200, {}, {"late": True}

    http_server.route("GET", "/slow", slow)
    return http_server


async def test_get_json(run_plugin, api):
    result = await run_plugin(ApiInput, {"url": api.url("/items")})
    assert result["status_code"] == 200
    assert result["url"] == api.url("/items")
    assert result["body"] == {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    assert result["headers"]["x-total"] == "2"
    assert result["headers"]["content-type"] == "application/json"
    assert result["timestamp"].endswith("+00:00")
    assert set(result) == {"url", "status_code", "headers", "body", "timestamp"}


async def test_post_data_is_sent_as_json_like_the_original(run_plugin, api):
    result = await run_plugin(
        ApiInput, {"url": api.url("/echo"), "method": "post", "data": {"q": "mimir", "n": [1, 2]}}
    )
    assert result["status_code"] == 201
    assert result["body"] == {"q": "mimir", "n": [1, 2]}
    assert api.requests[-1].method == "POST"
    assert api.requests[-1].headers["Content-Type"] == "application/json"


async def test_put_with_json_key_and_string_data(run_plugin, api):
    result = await run_plugin(ApiInput, {"url": api.url("/echo"), "method": "PUT", "json": [1, "two"]})
    assert result["body"] == [1, "two"]
    result = await run_plugin(
        ApiInput, {"url": api.url("/echo"), "method": "POST", "data": '{"raw": true}', "expected_status": 201}
    )
    assert result["body"] == {"raw": True}
    assert api.requests[-1].body == b'{"raw": true}'


async def test_headers_and_params_are_sent(run_plugin, api):
    result = await run_plugin(
        ApiInput,
        {
            "url": api.url("/inspect"),
            "headers": {"X-Token": "abc", "X-Number": 7},
            "params": {"page": 2, "q": "a b", "skip": None},
        },
    )
    body = result["body"]
    assert body["headers"]["X-Token"] == "abc"
    assert body["headers"]["X-Number"] == "7"
    assert body["query"] == {"page": ["2"], "q": ["a b"]}
    # A query string in the url is kept and params are added to it.
    result = await run_plugin(ApiInput, {"url": api.url("/inspect") + "?lang=en", "params": {"page": 3}})
    assert result["body"]["query"] == {"lang": ["en"], "page": ["3"]}


async def test_server_error_fails_with_status_and_excerpt(run_plugin, api):
    with pytest.raises(PluginError) as info:
        await run_plugin(ApiInput, {"url": api.url("/boom")})
    message = str(info.value)
    assert "HTTP 500" in message and "expected 2xx" in message
    assert "internal failure: database gone" in message
    assert len(message) < 400  # an excerpt, not the whole body
    assert "\n" not in message


async def test_expected_status_int_and_list(run_plugin, api):
    result = await run_plugin(ApiInput, {"url": api.url("/missing"), "expected_status": [200, 404]})
    assert result["status_code"] == 404 and result["body"] == {"error": "no"}
    result = await run_plugin(ApiInput, {"url": api.url("/boom"), "expected_status": 500})
    assert result["status_code"] == 500
    with pytest.raises(PluginError, match=r"HTTP 200 \(expected 201\)"):
        await run_plugin(ApiInput, {"url": api.url("/items"), "expected_status": 201})


async def test_non_json_bodies_are_text(run_plugin, api):
    assert (await run_plugin(ApiInput, {"url": api.url("/text")}))["body"] == "hello, plain world"
    assert (await run_plugin(ApiInput, {"url": api.url("/badjson")}))["body"] == "{not json"
    assert (await run_plugin(ApiInput, {"url": api.url("/vnd")}))["body"] == {"data": []}
    assert (await run_plugin(ApiInput, {"url": api.url("/empty")}))["body"] == ""


async def test_timeout(run_plugin, api):
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="timed out after 0.3s"):
        await run_plugin(ApiInput, {"url": api.url("/slow"), "timeout": 0.3})
    assert time.monotonic() - started < 2


async def test_cancel_stops_the_request(run_plugin, api):
    event = threading.Event()
    threading.Timer(0.2, event.set).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        await run_plugin(ApiInput, {"url": api.url("/slow")}, cancel_event=event)
    assert time.monotonic() - started < 1


async def test_connection_refused_is_a_clear_error(run_plugin, api):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PluginError, match=f"GET http://127.0.0.1:{port}/x failed: ConnectError"):
        await run_plugin(ApiInput, {"url": f"http://127.0.0.1:{port}/x", "timeout": 2})


async def test_credentials_in_url_are_not_shown(run_plugin, api):
    url = api.url("/boom").replace("http://", "http://user:hunter2@") + "?api_key=sekrit&page=1"
    with pytest.raises(PluginError) as info:
        await run_plugin(ApiInput, {"url": url})
    assert "hunter2" not in str(info.value) and "sekrit" not in str(info.value)
    assert "page=1" in str(info.value)


def test_config_validation():
    with pytest.raises(ValidationError, match="url"):
        ApiInput.Config.model_validate({})
    with pytest.raises(ValidationError, match="unknown HTTP method 'FETCH'"):
        ApiInput.Config.model_validate({"url": "http://x", "method": "fetch"})
    with pytest.raises(ValidationError, match="http:// or https://"):
        ApiInput.Config.model_validate({"url": "ftp://x"})
    with pytest.raises(ValidationError, match="only one request body"):
        ApiInput.Config.model_validate({"url": "http://x", "data": {}, "json": {}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ApiInput.Config.model_validate({"url": "http://x", "bogus": 1})
