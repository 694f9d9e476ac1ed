"""``?``/F1: what each pane shows and the keys of the screen in front, made from the bindings
(:mod:`..keys`), so the help cannot drift from the keys."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from ..keys import actions
from ..panes import Pane


def help_markdown(screen: Any) -> str:
    """The keys of ``screen`` by section (the focused pane first) as Markdown tables."""
    panes = {pane.title: pane for pane in screen.query(Pane)}
    lines = ["# Mimir: keys", "", "`ctrl+p` opens the command palette: every action below, by name."]
    section = None
    for action in actions(screen):
        if action.section != section:
            section = action.section
            lines += ["", f"## {section}"]
            if (pane := panes.get(section)) is not None:
                lines += ["", f"Shows: {', '.join(pane.columns)}.", *([pane.LEGEND] if pane.LEGEND else [])]
            lines += ["", "| Key | Action |", "| --- | --- |"]
        lines.append(f"| `{action.keys}` | {action.binding.description} |")
    return "\n".join(lines) + "\n"


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help-close")]

    def __init__(self, text: str) -> None:
        super().__init__(id="help")
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(self.text, id="help-text")
