"""Built-in plugins. Each module defines Plugin subclasses; list them here."""

from __future__ import annotations

BUILTIN_PLUGINS: list = []
