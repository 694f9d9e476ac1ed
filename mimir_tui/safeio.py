"""Reading what may be hostile: files read with a size cap (regular files only), and YAML
without alias bombs.

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

import errno
import os
import stat
from typing import Any

import yaml

from .errors import BadInput

#: Nodes that aliases may add to a YAML stream (each alias counts the nodes it stands for).
#: Hand-written files that reuse a block with ``*name`` or ``<<: *name`` stay far below it.
MAX_ALIAS_NODES = 10_000

#: Levels of nesting a YAML document may have (hand-written files have a handful): deeper is
#: refused at its line, before composing it (recursively) exhausts Python's recursion limit.
MAX_NESTING = 64

#: The default of ``pipelines.max_file_bytes``: a pipeline file larger than this is refused.
MAX_PIPELINE_FILE_BYTES = 1 << 20

#: The default of ``plugins.max_file_bytes`` and ``plugins.max_response_bytes``: what a step reads.
MAX_STEP_INPUT_BYTES = 50 << 20


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses alias expansion past :data:`MAX_ALIAS_NODES` nodes, and
    nesting deeper than :data:`MAX_NESTING` levels."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._tree_sizes: dict[yaml.Node, int] = {}  # node -> nodes in its tree, aliases expanded
        self._alias_nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels (refused)", self.peek_event().start_mark
                )
            return self._compose_counted(parent, index)
        finally:
            self._depth -= 1

    def _compose_counted(self, parent: Any, index: Any) -> Any:
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


# -- files ---------------------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, from its ``st_mode``, in words ("a FIFO")."""
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")


class UnsafeFile(BadInput):
    """A file that is not a regular file, or larger than its cap. The message is a predicate
    ("is a FIFO, not a regular file"): callers put the path in front."""


def read_capped(path: str | os.PathLike[str], max_bytes: int, cap_name: str) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    A FIFO, a device, a socket or a directory is refused without reading (opening a FIFO does
    not wait for a writer), and so is a file larger than the cap, whether its size says so or
    it grows while read (``/proc`` files report size 0). ``cap_name`` names the setting in the
    message. ``OSError`` passes through (a missing file, no permission)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            raise UnsafeFile("is a socket, not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise UnsafeFile(f"is {info.st_size:,} bytes, more than {cap_name} ({max_bytes:,})")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFile(f"is larger than {cap_name} ({max_bytes:,} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_NESTING",
    "MAX_PIPELINE_FILE_BYTES",
    "MAX_STEP_INPUT_BYTES",
    "SafeLoader",
    "UnsafeFile",
    "file_kind",
    "read_capped",
    "safe_load",
]
