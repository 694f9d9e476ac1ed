"""The command palette (ctrl+p): each pane and every action of the screen in front, by name,
from the same bindings the footer and the help show (:mod:`.keys`)."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .keys import actions
from .panes import Pane


class MimirCommands(Provider):
    def _commands(self) -> list[tuple[str, Any, str]]:
        screen: Any = self.screen
        found: list[tuple[str, Any, str]] = [
            (f"{pane.title} pane", partial(screen.action_show_pane, i), f"focus the {pane.title} pane")
            for i, pane in enumerate(screen.query(Pane))
        ]
        found += [(a.title, a.run, f"key {a.keys}") for a in actions(screen)]
        return found

    async def discover(self) -> Hits:
        for title, run, help_text in self._commands():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, run, help_text in self._commands():
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
