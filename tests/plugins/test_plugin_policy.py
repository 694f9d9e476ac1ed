"""Where pipelines may reach (issue 9, item 14): the ``security`` section confines file plugins
to folders and keeps HTTP plugins away from loopback, private and link-local addresses. Each
attack of the issue is refused when the switch is on, with one step error naming the path or
host, and works as before when it is off (the default). Real files, real loopback servers."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from loopback import serve

from mimir_tui.config import Settings
from mimir_tui.pipelines.plugins.ai_openai import OpenAIChat
from mimir_tui.pipelines.plugins.input_api import ApiInput
from mimir_tui.pipelines.plugins.input_file import FileInput
from mimir_tui.pipelines.plugins.input_rss import RssInput
from mimir_tui.pipelines.plugins.output_html import HtmlOutput
from mimir_tui.pipelines.plugins.output_json import JsonOutput
from mimir_tui.pipelines.policy import PolicyError
from mimir_tui.pipelines.registry import PluginError, StepTimedOut


def secured(**security) -> Settings:
    settings = Settings()
    for key, value in security.items():
        setattr(settings.security, key, value)
    return settings


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """``in/`` (readable, with data.json) and ``out/`` (writable), side by side."""
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    (inbox / "data.json").write_text('{"ok": true}')
    (tmp_path / "secret.txt").write_text("s3cret")
    return inbox, outbox


# -- files ---------------------------------------------------------------------------------------


async def test_input_file_reads_only_inside_read_paths(run_plugin, folders, tmp_path):
    """Attacks: Input.file read /etc/shadow and /proc/self/environ (with the API key) into a
    record; ``..`` and a symlink lead out of the folder too."""
    inbox, _ = folders
    settings = secured(read_paths=[str(inbox)])
    (inbox / "link.txt").symlink_to(tmp_path / "secret.txt")
    refused = {
        "/etc/shadow": "/etc/shadow",
        "/proc/self/environ": f"/proc/self/environ (that is /proc/{os.getpid()}/environ)",
        str(inbox / ".." / "secret.txt"): f"{inbox}/../secret.txt (that is {tmp_path}/secret.txt)",
        str(inbox / "link.txt"): f"{inbox}/link.txt (that is {tmp_path}/secret.txt)",
        "relative.txt": f"{Path.cwd()}/relative.txt",
    }
    for path, shown in refused.items():
        with pytest.raises(PolicyError) as info:
            await run_plugin(FileInput, {"path": path}, settings=settings)
        assert str(info.value) == f"may not read {shown}: it is outside security.read_paths ({inbox})"
    result = await run_plugin(FileInput, {"path": str(inbox / "data.json")}, settings=settings)
    assert result["data"] == {"ok": True}


async def test_input_file_reads_anywhere_when_the_switch_is_off(run_plugin, folders, tmp_path):
    inbox, _ = folders
    (inbox / "link.txt").symlink_to(tmp_path / "secret.txt")
    for path in ("/proc/self/environ", "/etc/passwd", str(inbox / ".." / "secret.txt"), str(inbox / "link.txt")):
        result = await run_plugin(FileInput, {"path": path, "format": "text"})
        assert result["bytes"] > 0


WRITERS = {
    "Output.json": (JsonOutput, {"data": {"a": 1}}),
    "Output.html": (HtmlOutput, {"data": {"a": 1}}),
}


@pytest.mark.parametrize("name", WRITERS)
async def test_output_plugins_write_only_inside_write_paths(run_plugin, folders, tmp_path, monkeypatch, name):
    """Attacks: Output.json and Output.html wrote through ``../..`` and absolute paths."""
    plugin, config = WRITERS[name]
    _, outbox = folders
    settings = secured(write_paths=[str(outbox)])
    (outbox / "escape").symlink_to(tmp_path)
    monkeypatch.chdir(outbox)
    refused = {
        "../../owned.txt": f"{outbox}/../../owned.txt (that is {tmp_path.parent}/owned.txt)",
        str(tmp_path / "owned.txt"): f"{tmp_path}/owned.txt",
        "escape/owned.txt": f"{outbox}/escape/owned.txt (that is {tmp_path}/owned.txt)",
    }
    for path, shown in refused.items():
        with pytest.raises(PolicyError) as info:
            await run_plugin(plugin, {**config, "file": path}, settings=settings)
        assert str(info.value) == f"may not write {shown}: it is outside security.write_paths ({outbox})"
    assert not (tmp_path / "owned.txt").exists() and not (tmp_path.parent / "owned.txt").exists()
    result = await run_plugin(plugin, {**config, "file": "reports/ok.out"}, settings=settings)
    assert result["file"] == str(outbox / "reports" / "ok.out") and Path(result["file"]).is_file()


@pytest.mark.parametrize("name", WRITERS)
async def test_output_plugins_write_anywhere_when_the_switch_is_off(run_plugin, folders, tmp_path, monkeypatch, name):
    plugin, config = WRITERS[name]
    _, outbox = folders
    monkeypatch.chdir(outbox)
    result = await run_plugin(plugin, {**config, "file": "../elsewhere.out"})
    assert (tmp_path / "elsewhere.out").is_file() and result["file"] == f"{outbox}/../elsewhere.out"


# -- networks ------------------------------------------------------------------------------------

FETCHERS = {
    "Input.api": (ApiInput, lambda base: {"url": base + "/data"}),
    "Input.rss": (RssInput, lambda base: {"url": base + "/data"}),
    "AIModels.openai": (OpenAIChat, lambda base: {"base_url": base, "model": "m", "prompt": "hi"}),
}


@pytest.fixture
def served(http_server):
    feed = "<rss><channel><title>t</title><item><title>x</title></item></channel></rss>"
    http_server.route("GET", "/data", lambda r: (200, {"Content-Type": "application/rss+xml"}, feed))
    reply = {"choices": [{"message": {"role": "assistant", "content": "hello"}}]}
    http_server.route("POST", "/chat/completions", lambda r: (200, {}, reply))
    return http_server


@pytest.mark.parametrize("name", FETCHERS)
async def test_http_plugins_refuse_loopback_when_the_block_is_on(run_plugin, served, name):
    """Attack: Input.api fetched loopback addresses (an internal service, a cloud metadata
    endpoint): with security.block_private_networks, 127.0.0.1 and localhost are refused
    before any connection."""
    plugin, config = FETCHERS[name]
    settings = secured(block_private_networks=True)
    port = served.base_url.rsplit(":", 1)[1]
    for host, shown in (("127.0.0.1", "127.0.0.1"), ("localhost", "localhost (127.0.0.1)")):
        with pytest.raises(PolicyError) as info:
            await run_plugin(plugin, config(f"http://{host}:{port}"), settings=settings)
        assert str(info.value) == (
            f"may not connect to {shown}: a loopback address, and security.block_private_networks is on"
            " (security.allowed_hosts can let it through)"
        )
    assert served.requests == []


@pytest.mark.parametrize("name", FETCHERS)
async def test_http_plugins_reach_loopback_when_the_block_is_off_or_the_host_is_allowed(run_plugin, served, name):
    plugin, config = FETCHERS[name]
    for settings in (None, secured(block_private_networks=True, allowed_hosts=["127.0.0.0/8"])):
        await run_plugin(plugin, config(served.base_url), settings=settings)
    assert len(served.requests) == 2


async def test_a_redirect_to_a_blocked_address_is_refused(run_plugin, http_server):
    """Attack: an allowed host answers with a redirect to another internal address; each hop
    is checked when it connects."""
    http_server.route("GET", "/hop", lambda r: (302, {"Location": "http://127.0.0.2:9/internal"}, b""))
    settings = secured(block_private_networks=True, allowed_hosts=["127.0.0.1"])
    with pytest.raises(PolicyError, match=r"^may not connect to 127\.0\.0\.2: a loopback address"):
        await run_plugin(ApiInput, {"url": http_server.url("/hop")}, settings=settings)
    assert [r.path for r in http_server.requests] == ["/hop"]


async def test_a_proxy_from_the_environment_is_not_used_while_the_block_is_on(run_plugin, monkeypatch):
    """A proxy connects wherever it is asked: with the block on, requests go direct, so the
    address checked is the address reached."""
    proxied = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):
            proxied.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    with serve(Proxy) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        result = await run_plugin(ApiInput, {"url": "http://example.invalid/x"})  # off: through the proxy
        assert result["status_code"] == 200 and proxied == ["http://example.invalid/x"]
        settings = secured(block_private_networks=True, allowed_hosts=["127.0.0.1"])
        with pytest.raises(Exception, match="example.invalid"):
            await run_plugin(ApiInput, {"url": "http://example.invalid/x"}, settings=settings)
    assert len(proxied) == 1


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names ``localhost`` only:
    yields its port and the certificate's file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder(subject_name=name, issuer_name=name, public_key=key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "13")
            self.end_headers()
            self.wfile.write(b'{"tls": true}')

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert_file
    finally:
        server.shutdown()
        server.server_close()


async def test_the_checked_connection_still_verifies_the_certificate_against_the_host_name(
    run_plugin, tls_server, monkeypatch
):
    """With the block on, Mimir connects to the address it checked, not to the name: the TLS
    certificate must still be verified against the URL's host name (``localhost`` passes, the
    same server as ``127.0.0.1`` does not, nor an untrusted certificate), and ``verify: false``
    still turns the check off."""
    port, cert_file = tls_server
    settings = secured(block_private_networks=True, allowed_hosts=["127.0.0.1", "localhost"])
    with pytest.raises(PluginError, match="CERTIFICATE_VERIFY_FAILED"):
        await run_plugin(ApiInput, {"url": f"https://localhost:{port}/"}, settings=settings)
    result = await run_plugin(ApiInput, {"url": f"https://localhost:{port}/", "verify": False}, settings=settings)
    assert result["body"] == {"tls": True}
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # httpx trusts it, as without the block
    result = await run_plugin(ApiInput, {"url": f"https://localhost:{port}/"}, settings=settings)
    assert result["body"] == {"tls": True}
    with pytest.raises(PluginError, match="CERTIFICATE_VERIFY_FAILED.*IP address mismatch"):
        await run_plugin(ApiInput, {"url": f"https://127.0.0.1:{port}/"}, settings=settings)


async def test_the_checked_connection_keeps_timeouts_and_httpx_errors(run_plugin, http_server):
    """With the block on, a slow server is still a step timeout, and a server that breaks off
    mid-body an httpx error naming the request, not an error of the library underneath."""

    def slow(request):
        time.sleep(2)
        return 200, {}, {"late": True}

    http_server.route("GET", "/slow", slow)
    settings = secured(block_private_networks=True, allowed_hosts=["127.0.0.1"])
    with pytest.raises(StepTimedOut, match="timed out after 0.3s"):
        await run_plugin(ApiInput, {"url": http_server.url("/slow"), "timeout": 0.3}, settings=settings)

    class Truncated(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"short")

        def log_message(self, *args):
            pass

    with serve(Truncated) as base:
        with pytest.raises(PluginError, match=r"^GET http://127\.0\.0\.1:\d+/x failed: RemoteProtocolError: "):
            await run_plugin(ApiInput, {"url": base + "/x"}, settings=settings)


# -- a run ---------------------------------------------------------------------------------------


def test_a_refused_step_fails_its_run_with_one_line_naming_the_path(capsys, tmp_path):
    """End to end: config.yaml's security section, ``mimir-tui pipelines run``: the step fails
    with one line naming the path, and nothing is written."""
    from mimir_tui.cli import main

    inbox = tmp_path / "in"
    inbox.mkdir()
    Path("config.yaml").write_text(f"security:\n  read_paths: [{inbox}]\n  write_paths: [./out]\n")
    Path("steal.yaml").write_text(
        "name: steal\nsteps:\n"
        "  - {name: read, plugin: Input.file, config: {path: /etc/shadow, format: text}, output: stolen}\n"
        "  - {name: leak, plugin: Output.json, config: {file: /tmp/leak.json, input: stolen}}\n"
    )
    capsys.readouterr()
    code = main(["pipelines", "run", "steal.yaml", "--json"])
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert code == 1 and record["status"] == "failed"
    assert record["error"] == (
        f"step 1 (read) failed: may not read /etc/shadow: it is outside security.read_paths ({inbox})"
    )
