"""Regenerate the SVG screenshots in this folder from the demo data.

    python screenshots/make_screenshots.py

Runs the dashboard headless on a throwaway SQLite store seeded with the demo data, at 80x24
and 120x40, and saves what it shows.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


async def shoot(size: tuple[int, int], name: str, store: Path) -> None:
    from mimir_tui.config import load_settings
    from mimir_tui.demo import seed_demo
    from mimir_tui.persistence import open_backend
    from mimir_tui.tui.app import MimirApp

    config = store / "config.yaml"
    config.write_text("persistence:\n  database_path: ./data/mimir.db\n")
    settings = load_settings(config)
    with open_backend(settings) as backend:
        seed_demo(backend)
    app = MimirApp(settings, theme_name="mimir")
    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        # The database path is a temporary folder: show a stable one instead.
        app.save_screenshot(filename=name, path=str(HERE))
    print(f"wrote {HERE / name}")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for size, name in (((80, 24), "dashboard-80x24.svg"), ((120, 40), "dashboard-120x40.svg")):
            asyncio.run(shoot(size, name, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
