"""The vector store: chromadb, embedded at ``persistence.vector_db_path`` or a shared server
(``vectors.server_url``), with embedders stored with each collection.

This module is cheap to import: chromadb (a second or more) is imported by :func:`open_store`
only, so the command line and the dashboard's first paint do not pay for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import BadInput, MimirError

if TYPE_CHECKING:
    from ..config import Settings
    from .store import VectorStore

#: chromadb's rule for collection names (checked here, to say it in one line).
NAME_RULE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
EMBEDDERS = ("offline", "openai", "chroma")


class VectorsDisabled(MimirError):
    """A vector feature was asked for with ``persistence.enable_vector_db: false``."""


class VectorStoreUnavailable(MimirError):
    """The vector server cannot be reached (or the embedded store cannot be opened)."""


class EmbedderError(MimirError):
    """An embedder cannot reach its model; the message names the collection and the embedder."""


def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RULE.match(name) or ".." in name:
        raise BadInput(
            f"collection name {name!r}: 3 to 512 characters of letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit (chromadb's rule)"
        )
    return name


def vectors_enabled(settings: Settings) -> bool:
    return settings.persistence.enable_vector_db


def open_store(settings: Settings) -> VectorStore:
    """The vector store the settings describe (not yet connected: the first call connects).
    :class:`VectorsDisabled` when ``persistence.enable_vector_db`` is false."""
    if not settings.persistence.enable_vector_db:
        where = f" in {settings.config_path}" if settings.config_path else ""
        raise VectorsDisabled(f"the vector store is turned off (persistence.enable_vector_db: false{where})")
    from .store import VectorStore

    return VectorStore(settings)


__all__ = [
    "EMBEDDERS",
    "EmbedderError",
    "VectorStoreUnavailable",
    "VectorsDisabled",
    "check_collection_name",
    "open_store",
    "vectors_enabled",
]
