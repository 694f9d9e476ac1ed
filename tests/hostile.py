"""Hostile inputs for the tests (the test folders import it, as they do loopback.py).

- ``alias_bomb(levels)``: a pipeline file of nested YAML anchors ("billion laughs"): a few
  hundred bytes whose aliases stand for ``9 ** levels`` strings.
"""

from __future__ import annotations


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
