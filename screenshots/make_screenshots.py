"""Regenerate the SVG screenshots in this folder from the demo data.

    python screenshots/make_screenshots.py

Each view of the dashboard at 120x40 (the main screen at 80x24 too), headless, on the stage
the snapshot tests use (:mod:`mimir_tui.tui.stage`: the demo's data and a clock fixed at one
moment, built in a throwaway folder), so the screenshots change only when the dashboard does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (view, size) pairs to shoot: every view at 120x40, the main screen at 80x24 too.
WIDE = (120, 40)
EXTRA = [("dashboard", (80, 24))]


async def shoot(settings, name: str, size: tuple[int, int]) -> Path:
    from mimir_tui.tui.stage import SHOTS, stage_app

    app = stage_app(settings)
    filename = f"{name}-{size[0]}x{size[1]}.svg"
    async with app.run_test(size=size) as pilot:
        await SHOTS[name](pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        # As the snapshot tests take theirs (pytest-textual-snapshot): the same SVG.
        (HERE / filename).write_text(app.export_screenshot(simplify=True), encoding="utf-8")
    return HERE / filename


def main() -> int:
    from mimir_tui.tui.stage import SHOTS, build_stage

    os.environ.pop("NO_COLOR", None)
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the stage's paths are relative to it
        try:
            settings = build_stage()
            for name, size in [*((name, WIDE) for name in SHOTS), *EXTRA]:
                print(f"wrote {asyncio.run(shoot(settings, name, size))}")
        finally:
            os.chdir(here)
    return 0


if __name__ == "__main__":
    sys.exit(main())
