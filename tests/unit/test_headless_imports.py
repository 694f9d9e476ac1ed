"""The headless path never imports Textual (DESIGN.md: one core, two fronts)."""

from __future__ import annotations

import json
import subprocess
import sys

HEADLESS_MODULES = [
    "mimir_tui",
    "mimir_tui.cli",
    "mimir_tui.config",
    "mimir_tui.constants",
    "mimir_tui.errors",
    "mimir_tui.health",
    "mimir_tui.commands",
    "mimir_tui.persistence",
    "mimir_tui.persistence.migrate",
    "mimir_tui.service",
]

PROBE = """
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
import contextlib, io
from mimir_tui.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["health", "--json"]) == 0
    assert main(["config", "show", "--json"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))))
"""


def test_headless_modules_do_not_import_textual() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=HEADLESS_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"textual imported by the headless path: {loaded[:5]}"


def test_the_probe_can_see_textual() -> None:
    """The check above is real: importing the dashboard does load textual."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, mimir_tui.tui.app; print('textual' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
