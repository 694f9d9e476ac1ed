"""``mimir-tui --serve``: the dashboard in a real headless Chromium, served by a real
``mimir-tui --serve`` process on a real SQLite file (tests/browser.py)."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import free_port, serving, wait_for_text

from mimir_tui.config import load_settings
from mimir_tui.persistence import open_backend
from mimir_tui.pipelines.spec import PipelineSpec
from mimir_tui.pipelines.store import save_spec
from mimir_tui.scheduler import jobs

pytestmark = pytest.mark.slow

JOB_NAME = "ledger-sync-42"


def _store(tmp_path: Path) -> Path:
    """A config file whose database (a relative path) holds a pipeline and the job JOB_NAME."""
    conf = tmp_path / "conf"
    conf.mkdir()
    config = conf / "config.yaml"
    config.write_text("persistence:\n  database_path: ./data/mimir.db\npipelines:\n  watch: false\n")
    with open_backend(load_settings(config)) as backend:
        spec = PipelineSpec(name="noop", steps=[{"name": "w", "plugin": "Data_Processing.delay", "config": {}}])
        save_spec(backend, spec)
        jobs.create_job(backend, name=JOB_NAME, pipeline="noop", cron_expr="0 3 * * *", job_id="ledger")
    return config


def _listening(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on ``port`` (from /proc/net)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in _descendants(c)]


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_serve_shows_the_dashboard_in_a_browser(tmp_path, chromium):
    """The page in Chromium shows the dashboard with the job of the operator's database; the
    dashboard it runs got the same --config and --theme and not --serve; the server listens on
    127.0.0.1 only; SIGTERM stops the server and the dashboard it started."""
    config = _store(tmp_path)
    elsewhere = tmp_path / "elsewhere"  # no config.yaml here: only --config leads to the database
    elsewhere.mkdir()
    port = free_port()
    relative = Path("..") / "conf" / "config.yaml"
    with serving(["--config", str(relative), "--theme", "mimir-light"], cwd=elsewhere, port=port) as server:
        assert _listening(port) == ["0100007F"], "the default host is 127.0.0.1, and nothing else"
        ready = server.stdout.readline()
        assert ready.startswith(f"mimir-tui: the dashboard is at http://127.0.0.1:{port} ")
        assert f"ssh -L {port}:127.0.0.1:{port} " in ready

        chromium.get(f"http://127.0.0.1:{port}/")
        # The rows, then the count: 1 job, or 3 once the dashboard's scheduler has added its
        # system jobs (mimir-backup, mimir-retention), whichever the first read saw.
        text = wait_for_text(chromium, lambda t: JOB_NAME in t and bool(re.search(r"\b\d+ jobs?, \d+ enabled", t)))
        assert "Jobs" in text and "Executions" in text and "Health" in text

        dashboards = [p for p in _descendants(server.pid) if "mimir_tui.cli" in _argv(p)]
        assert len(dashboards) == 1, [_argv(p) for p in _descendants(server.pid)]
        argv = _argv(dashboards[0])
        assert "--serve" not in argv
        assert argv[argv.index("--config") + 1] == str(config.resolve())
        assert argv[argv.index("--theme") + 1] == "mimir-light"

        server.terminate()  # SIGTERM to the server alone: it closes the session it serves
        assert server.wait(10) == 0
        deadline = time.monotonic() + 10
        while _alive(dashboards[0]):
            assert time.monotonic() < deadline, "the dashboard outlived its server"
            time.sleep(0.1)


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


WEBSOCKET = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}


def test_serve_refuses_other_sites_and_follows_the_tunnel(tmp_path):
    """The page's websocket URL is the address the browser used (an SSH tunnel's local port
    differs from the server's); a foreign Host (DNS rebinding) or a websocket opened by another
    site's page is refused, before any dashboard starts."""
    config = _store(tmp_path)
    port = free_port()
    with serving(["--config", str(config)], cwd=tmp_path, port=port) as server:
        status, page = _get(port, "/", {"Host": "localhost:9999"})
        assert status == 200
        assert 'data-session-websocket-url="ws://localhost:9999/ws"' in page
        status, page = _get(port, "/", {"Host": "localhost:9999", "X-Forwarded-Proto": "https"})
        assert 'data-session-websocket-url="wss://localhost:9999/ws"' in page

        status, body = _get(port, "/", {"Host": f"attacker.example:{port}"})
        assert status == 403
        assert body == f"mimir-tui: refused: host 'attacker.example:{port}' is not a loopback name\n"

        key = {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        origin = {"Origin": "http://attacker.example"}
        status, body = _get(port, "/ws", {"Host": f"127.0.0.1:{port}", **WEBSOCKET, **key, **origin})
        assert status == 403 and "another origin" in body
        assert [p for p in _descendants(server.pid) if "mimir_tui.cli" in _argv(p)] == []

        own = {"Origin": f"http://127.0.0.1:{port}"}
        status, _ = _get(port, "/ws", {"Host": f"127.0.0.1:{port}", **WEBSOCKET, **key, **own})
        assert status == 101  # the same origin is let through (the session closes with this socket)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimir_tui.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def test_serve_usage_errors_are_one_line_and_exit_2(tmp_path):
    config = str(_store(tmp_path))
    with serving(["--config", config], cwd=tmp_path, port=(port := free_port())):
        taken = _run(["--config", config, "--serve", "--port", str(port)], tmp_path)
    assert taken.returncode == 2
    assert taken.stderr == f"mimir-tui: error: --host 127.0.0.1 --port {port}: cannot listen (Address already in use)\n"
    assert taken.stdout == ""

    bad_host = _run(["--config", config, "--serve", "--host", "no-such-host.invalid"], tmp_path)
    assert bad_host.returncode == 2
    assert bad_host.stderr.startswith("mimir-tui: error: --host 'no-such-host.invalid': cannot resolve it (")
    assert bad_host.stderr.count("\n") == 1

    for args, message in (
        (["--serve", "--port", "0"], "argument --port: not a port number from 1 to 65535: '0'"),
        (["--port", "8000"], "--host and --port go with --serve"),
        (["--serve", "--headless"], "--serve serves the dashboard: not with --headless or a command"),
    ):
        result = _run(args, tmp_path)
        assert (result.returncode, result.stderr) == (2, f"mimir-tui: error: {message}\n")


def test_serve_on_a_network_address_warns_there_is_no_authentication(tmp_path):
    config = str(_store(tmp_path))
    port = free_port()
    with serving(["--config", config, "--host", "0.0.0.0"], cwd=tmp_path, port=port) as server:
        assert _listening(port) == ["00000000"]
        assert server.stdout.readline().startswith("mimir-tui: the dashboard is at http://")
        warning = server.stderr.readline()
    assert warning == (
        f"mimir-tui: warning: --host 0.0.0.0 is reachable from the network and there is no "
        f"authentication: anyone who reaches port {port} drives the dashboard\n"
    )
