"""Regenerate dashboard-browser.png: the dashboard served by ``mimir-tui --serve``, in Chromium.

    python screenshots/make_browser_screenshot.py

Seeds the demo data into a throwaway SQLite store, starts ``mimir-tui --serve`` on it and takes
the page in a headless Chromium (Debian's chromium and chromium-driver, and selenium from the
dev extra), with the helpers of tests/browser.py.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from browser import free_port, headless_chromium, missing_browser, serving, wait_for_text  # noqa: E402


def main() -> int:
    from mimir_tui.config import load_settings
    from mimir_tui.demo import seed_demo
    from mimir_tui.persistence import open_backend

    if reason := missing_browser():
        print(f"make_browser_screenshot: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text("persistence:\n  database_path: ./data/mimir.db\npipelines:\n  watch: false\n")
        with open_backend(load_settings(config)) as backend:
            seed_demo(backend)
        port = free_port()
        with serving(["--config", str(config)], cwd=Path(tmp), port=port), headless_chromium(1280, 800) as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for_text(driver, lambda text: "Hourly report" in text and "loading..." not in text, seconds=30)
            time.sleep(1)  # xterm.js draws on the next animation frames
            driver.save_screenshot(str(HERE / "dashboard-browser.png"))
    print(f"wrote {HERE / 'dashboard-browser.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
