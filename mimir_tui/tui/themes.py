"""User themes from YAML files, turned into Textual themes (as Posting does), and the theme
last chosen (from the command palette), remembered in ``ui-state.json`` beside the database."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import yaml
from textual.theme import Theme

from ..config import Settings
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


def state_path(settings: Settings) -> Path:
    """``<data dir>/ui-state.json``: the dashboard's remembered choices (the data dir is the
    SQLite database's folder)."""
    return Path(settings.persistence.database_path).parent / "ui-state.json"


def saved_theme(settings: Settings) -> str | None:
    """The theme last chosen, or None (no state file, or one that cannot be read: logged)."""
    path = state_path(settings)
    try:
        theme = json.loads(path.read_text(encoding="utf-8")).get("theme")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s ignored: %s", path, exc)
        return None
    return theme if isinstance(theme, str) else None


def save_theme(settings: Settings, theme: str) -> None:
    """Remember ``theme``: the state file is replaced whole (a temporary file, then a rename),
    mode 0600, its folder made 0700 if missing."""
    path = state_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ui-state.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"theme": theme}, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
