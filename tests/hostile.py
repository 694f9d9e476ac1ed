"""Hostile inputs for the tests (the test folders import it, as they do loopback.py).

- ``alias_bomb(levels)``: a pipeline file of nested YAML anchors ("billion laughs"): a few
  hundred bytes whose aliases stand for ``9 ** levels`` strings.
- ``fifo(path)``: a FIFO that cannot hang a test. Code that should refuse it but opens it
  instead is let through at once (a writer or a reader comes and goes), so the test fails on
  its assertion rather than waiting forever.
- ``limited_memory()``: a ``preexec_fn`` that caps a child process's address space, so a
  command that reads ``/dev/zero`` without a cap dies of MemoryError instead of taking the
  machine.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def alias_bomb(levels: int = 5, width: int = 9) -> str:
    lines = ["name: bomb", "lol0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    lines += [
        "steps:",
        "  - name: wait",
        "    plugin: Data_Processing.delay",
        f"    config: {{seconds: 0, extra: *a{levels}}}",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def fifo(path: Path) -> Iterator[Path]:
    os.mkfifo(path)
    stop = threading.Event()

    def let_through() -> None:
        while not stop.wait(0.05):
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                try:
                    os.close(os.open(path, flags))  # ENXIO for a writer while no one reads
                except OSError:
                    pass

    thread = threading.Thread(target=let_through, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join()


def limited_memory(max_bytes: int = 2 << 30) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))

    return limit
