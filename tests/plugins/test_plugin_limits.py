"""Size caps where data comes in (issue 9, item 12): HTTP responses stop at
``plugins.max_response_bytes``, files at ``plugins.max_file_bytes``; FIFOs and devices are
refused, never read. Real loopback servers, real files."""

from __future__ import annotations

import gzip
import json
import subprocess
import textwrap
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from hostile import fifo, limited_memory
from loopback import serve

from mimir_tui.config import Settings
from mimir_tui.pipelines.plugins.ai_openai import OpenAIChat
from mimir_tui.pipelines.plugins.input_api import ApiInput
from mimir_tui.pipelines.plugins.input_file import FileInput
from mimir_tui.pipelines.plugins.input_rss import RssInput
from mimir_tui.pipelines.plugins.output_json import JsonOutput
from mimir_tui.pipelines.registry import PluginError

CAP = 64 * 1024
HUGE = 8 << 20  # what the hostile server sends at most: enough to pass any cap, not to hurt the test


def capped(**plugins: int) -> Settings:
    settings = Settings()
    for key, value in plugins.items():
        setattr(settings.plugins, key, value)
    return settings


class Hostile(BaseHTTPRequestHandler):
    """``/small`` answers a little JSON; ``/endless...`` streams HUGE bytes with no length (the
    body ends when the connection closes); ``/gzip-bomb`` sends 8 KB that decompress to HUGE;
    ``/redirect-with-body`` redirects to /small with HUGE bytes in the redirect itself."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/small":
            body = b'{"ok": true}'
            self._head(200, {"Content-Type": "application/json", "Content-Length": str(len(body))})
            self.wfile.write(body)
        elif self.path.startswith("/endless"):
            self._head(200, {"Content-Type": "application/json"})
            self._stream()
        elif self.path == "/gzip-bomb":
            body = gzip.compress(b" " * HUGE)
            headers = {"Content-Type": "text/plain", "Content-Encoding": "gzip", "Content-Length": str(len(body))}
            self._head(200, headers)
            self.wfile.write(body)
        elif self.path == "/redirect-with-body":
            self._head(302, {"Location": "/small"})
            self._stream()

    do_POST = do_GET

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _stream(self) -> None:
        chunk = b"[" + b"0," * (32 * 1024)
        try:
            for _ in range(HUGE // len(chunk)):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a cap does


@pytest.fixture
def hostile() -> Iterator[str]:
    with serve(Hostile) as base_url:
        yield base_url


FETCHERS = {
    "Input.api": (ApiInput, lambda base: {"url": base + "/endless"}),
    "Input.rss": (RssInput, lambda base: {"url": base + "/endless"}),
    "AIModels.openai": (OpenAIChat, lambda base: {"base_url": base + "/endless", "model": "m", "prompt": "hi"}),
}


@pytest.mark.parametrize("name", FETCHERS)
async def test_an_endless_response_stops_at_the_cap(run_plugin, hostile, name):
    """Attack: a server that never stops sending (Input.api read a 150 MB response into
    845 MB of memory): every HTTP plugin stops reading at plugins.max_response_bytes."""
    plugin, config = FETCHERS[name]
    expected = r"/endless(/chat/completions)?: the response is larger than plugins.max_response_bytes \(65,536 bytes\)$"
    with pytest.raises(PluginError, match=expected):
        await run_plugin(plugin, config(hostile), settings=capped(max_response_bytes=CAP))


async def test_a_gzip_bomb_stops_at_the_cap_of_decoded_bytes(run_plugin, hostile):
    """Attack: 8 KB on the wire that inflate to 8 MB: the cap counts what the plugin holds."""
    with pytest.raises(PluginError, match=r"^GET http://127\.0\.0\.1:\d+/gzip-bomb: the response is larger than"):
        await run_plugin(ApiInput, {"url": hostile + "/gzip-bomb"}, settings=capped(max_response_bytes=CAP))


async def test_a_redirects_own_body_counts_too(run_plugin, hostile):
    """Attack: the bytes hide in a 302's body, which httpx reads whole before following it."""
    with pytest.raises(PluginError, match="/redirect-with-body: the response is larger than"):
        await run_plugin(ApiInput, {"url": hostile + "/redirect-with-body"}, settings=capped(max_response_bytes=CAP))


async def test_responses_under_the_cap_are_read_as_before(run_plugin, hostile):
    result = await run_plugin(ApiInput, {"url": hostile + "/redirect-with-body"}, settings=capped())
    assert result["body"] == {"ok": True} and result["url"].endswith("/small")
    result = await run_plugin(ApiInput, {"url": hostile + "/gzip-bomb"}, settings=capped())
    assert len(result["body"]) == HUGE


async def test_input_file_refuses_a_fifo_without_waiting_for_a_writer(run_plugin, tmp_path):
    """Attack: ``Input.file`` on a FIFO: the step hung, waiting for a writer."""
    with fifo(tmp_path / "pipe.csv") as path:
        with pytest.raises(PluginError) as info:
            await run_plugin(FileInput, {"path": str(path)})
    assert str(info.value) == f"{path} is a FIFO, not a regular file"


async def test_input_file_refuses_devices_and_caps_what_it_reads(run_plugin, tmp_path):
    """Attacks: a device; a file larger than plugins.max_file_bytes; a /proc file, whose size
    says 0 but which holds more."""
    with pytest.raises(PluginError, match=r"^/dev/null is a character device, not a regular file$"):
        await run_plugin(FileInput, {"path": "/dev/null"})
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000)
    settings = capped(max_file_bytes=4096)
    with pytest.raises(PluginError, match=r"big.txt is 5,000 bytes, more than plugins.max_file_bytes \(4,096\)$"):
        await run_plugin(FileInput, {"path": str(big)}, settings=settings)
    with pytest.raises(PluginError, match=r"big.txt is 5,000 bytes, more than max_bytes \(100\)$"):
        await run_plugin(FileInput, {"path": str(big), "max_bytes": 100}, settings=settings)
    with pytest.raises(PluginError, match=r"^/proc/self/environ is larger than plugins.max_file_bytes \(4 bytes\)$"):
        await run_plugin(FileInput, {"path": "/proc/self/environ"}, settings=capped(max_file_bytes=4))
    with pytest.raises(PluginError, match=r"more than plugins.max_file_bytes \(4,096\)$"):
        await run_plugin(FileInput, {"path": str(big), "max_bytes": 10_000}, settings=settings)  # lowers, never raises
    result = await run_plugin(FileInput, {"path": str(big)}, settings=capped(max_file_bytes=5000))
    assert result["bytes"] == 5000


@pytest.mark.parametrize("lines", [False, True], ids=["array", "lines"])
async def test_output_json_append_refuses_a_fifo(run_plugin, tmp_path, lines):
    """Attack: a FIFO where Output.json appends: reading it (array) or opening it to write
    (lines) waited forever for the other end."""
    with fifo(tmp_path / "out.json") as path:
        with pytest.raises(PluginError, match="not a regular file"):
            await run_plugin(JsonOutput, {"file": str(path), "data": [1], "append": True, "lines": lines})
        assert path.is_fifo()


@pytest.mark.slow
def test_input_file_on_dev_zero_fails_its_step_as_a_real_process(cli_argv, tmp_path):
    """Attack: ``Input.file`` on /dev/zero read until memory ran out. The process's memory is
    capped, so that a regression fails here instead of taking the machine."""
    pipeline = tmp_path / "zero.yaml"
    pipeline.write_text(
        textwrap.dedent(
            """
            name: zero
            steps:
              - {name: read, plugin: Input.file, config: {path: /dev/zero, format: text}, output: data}
            """
        )
    )
    result = subprocess.run(
        [*cli_argv, "pipelines", "run", str(pipeline), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited_memory(),
    )
    assert result.returncode == 1, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "failed"
    assert "/dev/zero is a character device, not a regular file" in record["error"]
    assert Path(record["log_path"]).is_file()
