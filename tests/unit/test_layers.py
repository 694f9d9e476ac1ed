"""The layers of the package, read off the import statements of every module (those inside
functions too): only ``tui/`` imports Textual; the persistence layer imports nothing above it;
the core never imports a front."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mimir_tui"

#: What the persistence layer may import of the package: itself and the foundation.
PERSISTENCE_MAY_IMPORT = {
    "mimir_tui.persistence",
    "mimir_tui.config",
    "mimir_tui.errors",
    "mimir_tui.secrets",
    "mimir_tui.constants",
    "mimir_tui.safeio",
}
#: The fronts: the core (scheduler, pipelines, persistence, ops, vectors) imports none of them.
FRONTS = ("mimir_tui.tui", "mimir_tui.commands", "mimir_tui.cli")
CORE = ("mimir_tui.persistence", "mimir_tui.scheduler", "mimir_tui.pipelines", "mimir_tui.ops", "mimir_tui.vectors")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_tui_imports_textual(module: str) -> None:
    if within(module, ("mimir_tui.tui",)):
        return
    textual = sorted(i for i in MODULES[module] if within(i, ("textual", "rich")))
    assert not textual, f"{module} imports {textual}: only mimir_tui.tui may"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, ("mimir_tui.persistence",))))
def test_persistence_imports_nothing_above_it(module: str) -> None:
    above = sorted(
        i
        for i in MODULES[module]
        if i.startswith("mimir_tui") and i != "mimir_tui" and not within(i, PERSISTENCE_MAY_IMPORT)
    )
    assert not above, f"{module} imports {above}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, CORE)))
def test_the_core_imports_no_front(module: str) -> None:
    fronts = sorted(i for i in MODULES[module] if within(i, FRONTS))
    assert not fronts, f"{module} imports {fronts}"


def test_the_graph_is_read() -> None:
    """The checks above see the imports they are about (a broken reader would pass them all)."""
    assert "textual.app" in MODULES["mimir_tui.tui.app"] or "textual" in str(MODULES["mimir_tui.tui.app"])
    assert "mimir_tui.persistence.models" in MODULES["mimir_tui.persistence.executions"]
    assert any(within(i, ("mimir_tui.persistence",)) for i in MODULES["mimir_tui.scheduler.core"])
