"""Reading what may be hostile: YAML without alias bombs.

Every YAML Mimir reads (config, pipelines, themes, ``Input.file`` data) goes through
:class:`SafeLoader`: PyYAML's safe loader, plus a budget on what aliases may add. PyYAML
composes an alias as a second reference to the anchored node, so ten lines of nested anchors
("billion laughs") load in microseconds as a graph whose tree has 10^9 nodes; whatever walks it
next (validation, JSON) walks the tree. Each alias is charged the size of the tree it stands
for, and a document whose aliases would add more than :data:`MAX_ALIAS_NODES` nodes is refused
at the alias that crosses the line, before anything walks it. An alias inside its own anchor (a
recursive structure) is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Nodes that aliases may add to a YAML stream (each alias counts the nodes it stands for).
#: Hand-written files that reuse a block with ``*name`` or ``<<: *name`` stay far below it.
MAX_ALIAS_NODES = 10_000


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias expansion past :data:`MAX_ALIAS_NODES` nodes."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._tree_sizes: dict[yaml.Node, int] = {}  # node -> nodes in its tree, aliases expanded
        self._alias_nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        sizes = self._tree_sizes
        if not self.check_event(yaml.AliasEvent):
            node: Any = super().compose_node(parent, index)
            if isinstance(node, yaml.SequenceNode):
                sizes[node] = 1 + sum(sizes[child] for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                sizes[node] = 1 + sum(sizes[key] + sizes[value] for key, value in node.value)
            else:
                sizes[node] = 1
            return node
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if node not in sizes:  # the anchored node is still being composed: it contains this alias
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} refers to a node that contains it (refused)", event.start_mark
            )
        self._alias_nodes += sizes[node]
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases expand past {MAX_ALIAS_NODES:,} nodes at *{event.anchor} (refused: a YAML alias bomb?)",
                event.start_mark,
            )
        return node


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` through :class:`SafeLoader`."""
    return yaml.load(text, Loader=SafeLoader)


__all__ = ["MAX_ALIAS_NODES", "SafeLoader", "safe_load"]
