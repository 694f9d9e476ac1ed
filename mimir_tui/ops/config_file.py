"""Changing keys of the config file in place, as an operator would by hand: its comments, key
order, quoting and blank lines kept (ruamel.yaml's round-trip mode), the new file checked as
Mimir reads it before it replaces the old one (a temp file in the same folder, then
``os.replace``: a reader sees the old file or the new, never half of one), with the old
file's mode. The Retention screen saves its policy through :func:`set_keys`.
"""

from __future__ import annotations

import copy
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from ..errors import BadInput, ConfigError


def set_keys(path: Path | str, values: dict[str, Any]) -> None:
    """Set ``section.key`` = value for each item of ``values`` in the config file ``path``
    (a missing section or key is added at the end of its mapping). :class:`ConfigError` when the
    file cannot be read or the result is not a valid config; the file is then unchanged."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from ..config import load_settings

    path = Path(path)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the operator wrote
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for dotted, value in values.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise BadInput(f"{dotted}: give a key as section.key")
        block = data.get(section)
        if block is None:
            block = data[section] = CommentedMap()
        if not isinstance(block, dict):
            raise ConfigError(f"{path}: {section} is not a mapping")
        if key in block:
            block[key] = value
        else:
            _append(block, key, value)
    out = io.StringIO()
    yaml.dump(data, out)
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(out.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, mode)
        try:
            load_settings(temp, use_search=False, environ={})  # the new file as Mimir reads it
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(temp, str(path))) from None
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def _append(block: Any, key: str, value: Any) -> None:
    """Add ``key`` at the end of the mapping ``block``. What followed the last key's line (a
    blank line, the comment above the next section) moves below the new key: ruamel keeps it
    with the last key, and the new key would land after it."""
    keys = list(block.keys())
    block[key] = value
    if not keys:
        return
    items = block.ca.items
    entry = items.get(keys[-1])
    token = entry[2] if entry and len(entry) > 2 else None
    if token is None:
        return
    head, _, rest = token.value.partition("\n")
    if not rest:
        return
    moved = copy.copy(token)
    moved.value = "\n" + rest
    items[key] = [None, None, moved, None]
    if head:
        token.value = head + "\n"
    else:
        entry[2] = None
