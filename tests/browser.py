"""A real headless Chromium on ``mimir-tui --serve`` (tests/tui/test_serve.py and
screenshots/make_browser_screenshot.py import it, as the test folders import loopback.py).

Chromium and its driver are Debian's (``apt-get install chromium chromium-driver``); Selenium
is given their paths, so it downloads nothing.

textual-serve's page draws the dashboard with xterm.js on a canvas (WebGL), so there is no text
in the DOM to read. The page keeps its xterm ``Terminal`` in a local object as ``.terminal``;
:data:`CATCH_TERMINAL`, run before the page's own scripts, catches that assignment (a setter on
``Object.prototype`` that steps aside at once) and keeps the terminal as ``window.__terminal``,
whose buffer holds the cells xterm.js draws: :func:`terminal_text` reads them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && value.buffer.active) { window.__terminal = value; }
  },
});
"""

READ_TERMINAL = """
const term = window.__terminal;
if (!term) { return null; }
const buffer = term.buffer.active, rows = [];
for (let y = 0; y < term.rows; y++) {
  const line = buffer.getLine(buffer.viewportY + y);
  rows.push(line ? line.translateToString(true) : "");
}
return rows.join("\\n");
"""


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mimir-tui --serve exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


@contextmanager
def serving(args: Sequence[str], *, cwd: Path, port: int, env: dict[str, str] | None = None) -> Iterator[Any]:
    """``mimir-tui --serve --port PORT *args`` in a process group of its own; the group (the
    server and the dashboards it started) is stopped at the end, by SIGTERM then SIGKILL."""
    command = [sys.executable, "-m", "mimir_tui.cli", "--serve", "--port", str(port), *args]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()


@contextmanager
def headless_chromium(width: int = 1200, height: int = 800) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",  # xterm.js draws with WebGL; software WebGL here
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=subprocess.DEVNULL))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_TERMINAL})
        yield driver
    finally:
        driver.quit()


def terminal_text(driver: Any) -> str | None:
    """The rows xterm.js shows in the page, as text (None before the terminal exists)."""
    return driver.execute_script(READ_TERMINAL)


def wait_for_text(driver: Any, condition: Callable[[str], bool], seconds: float = 15) -> str:
    """The terminal's text once ``condition`` holds for it; AssertionError with the last text."""
    deadline = time.monotonic() + seconds
    text: str | None = None
    while time.monotonic() < deadline:
        text = terminal_text(driver)
        if text is not None and condition(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"the page's terminal never showed what was expected; it shows:\n{text}")
