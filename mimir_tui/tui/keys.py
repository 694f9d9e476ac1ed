"""Every action of the screen in front, built from the bindings (those with an ``id``): the
help screen lists them and the command palette runs them, so there is no second list to keep.

On the main screen each pane is a section (the focused pane first: its own bindings and its
table's), then the screen's, then the app's (everywhere)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.binding import Binding
from textual.dom import DOMNode

from .panes import Pane


@dataclass(frozen=True)
class Action:
    section: str  # "Jobs", "Screen", "Everywhere"
    keys: str  # as the footer shows them, "t, space"
    binding: Binding
    target: DOMNode  # where the action runs
    pane: Pane | None = None  # shown (focused) first

    @property
    def title(self) -> str:
        return f"{self.binding.description} ({self.section})"

    async def run(self) -> None:
        if self.pane is not None:
            screen: Any = self.pane.screen
            screen.action_show_pane(screen.panes.index(self.pane))
        await self.target.app.run_action(self.binding.action, self.target)


def bindings(node: DOMNode) -> list[tuple[str, Binding]]:
    """The node's bindings that have an id (its actions, not a widget's cursor keys), one per
    id with its keys joined, in the order they are declared."""
    found: dict[str, tuple[list[str], Binding]] = {}
    for key_bindings in node._bindings.key_to_bindings.values():
        for binding in key_bindings:
            if binding.id:
                found.setdefault(binding.id, ([], binding))[0].append(node.app.get_key_display(binding))
    return [(", ".join(keys), binding) for keys, binding in found.values()]


def actions(screen: Any) -> list[Action]:
    found: list[Action] = []
    panes: list[Pane] = list(screen.query(Pane))
    current = getattr(screen, "current", None)
    for pane in sorted(panes, key=lambda p: p is not current):
        for node in (pane, pane.table):
            found += [Action(pane.title, keys, b, node, pane) for keys, b in bindings(node)]
    found += [Action("Screen", keys, b, screen) for keys, b in bindings(screen)]
    found += [Action("Everywhere", keys, b, screen.app) for keys, b in bindings(screen.app)]
    return found
