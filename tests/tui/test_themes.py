"""Themes: the file themes are Textual themes, the one chosen is remembered across starts
(``--theme`` wins), NO_COLOR is honoured, and the CSS holds no literal colour."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from textual.filter import Monochrome, NoColor
from textual.widget import Widget

import mimir_tui.tui as tui_package
from mimir_tui.config import load_settings
from mimir_tui.tui.app import MimirApp
from mimir_tui.tui.themes import state_path

#: A literal colour in CSS: #rgb / #rrggbb(aa), rgb()/hsl() calls, or a named colour.
LITERAL = re.compile(
    r"#[0-9a-fA-F]{3,8}\b(?![-\w])|\b(?:rgba?|hsla?)\(|:\s*(?:[^;]*\s)?"
    r"(?:red|green|blue|white|black|yellow|magenta|cyan|gray|grey|orange|purple|pink)\b",
)


def _settings(tmp_path):
    (tmp_path / "config.yaml").write_text("persistence:\n  database_path: ./data/mimir.db\n")
    return load_settings(tmp_path / "config.yaml")


async def test_a_theme_chosen_while_running_is_remembered_at_the_next_start(tmp_path):
    settings = _settings(tmp_path)
    app = MimirApp(settings)
    async with app.run_test() as pilot:
        assert app.theme == "mimir"  # ui.theme
        assert not state_path(settings).exists()  # the start's theme is not saved
        app.theme = "mimir-light"  # what the palette's "Change theme" does
        await pilot.pause()
        await app.workers.wait_for_complete()
    path = state_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = MimirApp(settings)
    async with again.run_test():
        assert again.theme == "mimir-light"
    forced = MimirApp(settings, theme_name="mimir")  # --theme overrides the remembered one
    async with forced.run_test():
        assert forced.theme == "mimir"


async def test_a_broken_state_file_is_ignored(tmp_path):
    """Attack: ui-state.json holds garbage; the dashboard starts on ui.theme."""
    settings = _settings(tmp_path)
    state_path(settings).parent.mkdir(parents=True, exist_ok=True)
    state_path(settings).write_text("{not json")
    app = MimirApp(settings)
    async with app.run_test():
        assert app.theme == "mimir"


async def test_no_color_in_the_environment_turns_colour_off(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = MimirApp(_settings(tmp_path))
    async with app.run_test():
        assert app.no_color
        assert any(isinstance(f, NoColor | Monochrome) for f in app._filters)  # Textual applies it


def _css_sources() -> dict[str, str]:
    root = Path(tui_package.__file__).parent
    sources = {str(p): p.read_text() for p in root.rglob("*.tcss")}
    for path in root.rglob("*.py"):
        module = f"mimir_tui.tui.{'.'.join(path.relative_to(root).with_suffix('').parts)}".removesuffix(".__init__")
        __import__(module)
    for cls in _subclasses(Widget):
        if cls.__module__.startswith("mimir_tui.") and "DEFAULT_CSS" in vars(cls):
            sources[f"{cls.__module__}.{cls.__name__}.DEFAULT_CSS"] = cls.DEFAULT_CSS
    return sources


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_css_uses_theme_variables_only():
    """Every .tcss file under tui/ and every DEFAULT_CSS of our widgets: no literal colour."""
    sources = _css_sources()
    assert any(name.endswith("mimir.tcss") for name in sources)
    bad = [
        f"{name}:{n}: {line.strip()}"
        for name, text in sources.items()
        for n, line in enumerate(text.splitlines(), 1)
        if LITERAL.search(re.sub(r"/\*.*?\*/", "", line))
    ]
    assert bad == []
    assert LITERAL.search("color: #ff0000;") and LITERAL.search("background: red;")
    assert LITERAL.search("border: round rgb(1, 2, 3);")
