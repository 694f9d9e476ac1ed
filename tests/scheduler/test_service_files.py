"""A headless service process on PostgreSQL (issue 9, items 6 and 13): the line it logs at every
start named the database with a ``?password=`` in clear, and its log was 0644 in a 0755 folder."""

from __future__ import annotations

import stat
from urllib.parse import quote

import pytest
from sched_helpers import wait_until, write_config

pytestmark = pytest.mark.slow

SECRET = "Svc-Qu3ry-Secret"


def test_the_service_start_line_masks_a_query_password_and_its_log_is_private(
    tmp_path, services, server_settings, server_databases
):
    server_settings("postgres")  # skips (or fails in CI) without the server
    info = server_databases.info("postgres")
    secret = info.password or SECRET  # the real one where the server asks for it
    url = f"postgres://{info.user}@{info.host}:{info.port}/{server_databases.database('postgres')}"
    cfg = write_config(
        tmp_path, persistence={"backend": "postgres", "connection_string": f"{url}?password={quote(secret)}"}
    )
    proc = services.start(cfg)
    log = tmp_path / "logs" / "mimir.log"
    wait_until(
        lambda: log.exists() and "mimir service running" in log.read_text(),
        30,
        what=f"the service to start: {services.output(proc)}",
    )
    code, _ = services.terminate(proc)
    assert code == 0
    text = log.read_text() + services.output(proc)
    assert secret not in text and quote(secret) not in text
    started = next(line for line in text.splitlines() if "mimir service running" in line)
    assert "?password=***" in started, started
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
