"""User themes from YAML files, turned into Textual themes (as Posting does)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml
from textual.theme import Theme

from ..safeio import safe_load

log = logging.getLogger("mimir.tui")

SOURCE_TREE = Path(__file__).resolve().parents[2] / "themes"  # a checkout (pip install -e)
INSTALLED = Path(sys.prefix) / "share" / "mimir" / "themes"  # a wheel's data files


def theme_dirs() -> list[Path]:
    """Where themes come from; a later folder's theme replaces an earlier one of that name."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [INSTALLED, SOURCE_TREE, Path(xdg) / "mimir" / "themes"]


def load_themes(dirs: list[Path] | None = None) -> dict[str, Theme]:
    """Every valid theme file; a broken one is logged by name and skipped."""
    themes: dict[str, Theme] = {}
    for folder in dirs if dirs is not None else theme_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            try:
                data = safe_load(path.read_text(encoding="utf-8")) or {}
                if not isinstance(data, dict) or "name" not in data or "primary" not in data:
                    raise ValueError("a theme needs at least 'name' and 'primary'")
                themes[data["name"]] = Theme(**data)
            except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
                log.warning("theme file %s skipped: %s", path, exc)
    return themes
