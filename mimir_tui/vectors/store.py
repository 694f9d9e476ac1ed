"""One vector store (chromadb), for the command line, the pipelines and the dashboard alike.

Embedded (``PersistentClient`` at ``persistence.vector_db_path``: one writing process at a
time) or a server (``HttpClient`` to ``vectors.server_url``: how several instances share one
store). Telemetry is off. Every failure is a :class:`~mimir_tui.errors.MimirError` in one line:
an unknown collection is :class:`~mimir_tui.errors.NotFound`, a bad name or filter is
:class:`~mimir_tui.errors.BadInput`, an unreachable server is :class:`VectorStoreUnavailable`,
an embedder that cannot reach its model is :class:`EmbedderError` naming the collection.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import BadInput, MimirError, NotFound
from ..secrets import mask_url
from . import EmbedderError, VectorStoreUnavailable, check_collection_name

# chromadb reads these at import: no telemetry, whatever its settings say.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.config import Settings as ChromaSettings  # noqa: E402

from . import embedders, owner  # noqa: E402  (embedders: registers Mimir's with chromadb)

T = TypeVar("T")

#: The most documents one ``get`` page may ask for.
MAX_PAGE = 10_000


@dataclass
class Document:
    id: str
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    distance: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text, "metadata": self.metadata}
        if self.distance is not None:
            out["distance"] = self.distance
        return out


def clean_metadata(metadata: Any, where: str) -> dict[str, Any] | None:
    """What chromadb stores: str, int, float, bool and lists of one of those; None values are
    dropped and anything else (a mapping...) becomes its JSON text. None for no metadata
    (chromadb refuses an empty mapping)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise BadInput(f"{where}: metadata must be a mapping, not {type(metadata).__name__}")
    import json

    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, (str, int, float, bool)):
            out[str(key)] = value
        elif isinstance(value, list) and value and all(isinstance(v, (str, int, float, bool)) for v in value):
            kinds = {type(v) for v in value}
            out[str(key)] = value if len(kinds) == 1 else [str(v) for v in value]
        else:
            out[str(key)] = json.dumps(value, ensure_ascii=False, default=str)
    return out or None


class VectorStore:
    """The store the settings describe; connects at first use. Thread-safe as chromadb's
    client is (the embedded store's writes are serialised by chromadb)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.server = settings.vectors.server()
        self.path = Path(settings.persistence.vector_db_path)
        self._client: Any = None
        self._handles: dict[str, Any] = {}  # collection name -> chromadb's Collection
        self._lock = threading.Lock()

    # -- connection -------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "server" if self.server else "embedded"

    @property
    def where(self) -> str:
        return mask_url(self.server) if self.server else str(self.path)

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if self.server:
            parts = urlsplit(self.server)
            try:
                return chromadb.HttpClient(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or (443 if parts.scheme == "https" else 8000),
                    ssl=parts.scheme == "https",
                    settings=chroma_settings,
                )
            except Exception as exc:
                raise VectorStoreUnavailable(f"vector server {self.where}: unreachable ({_reason(exc)})") from None
        try:
            owner.acquire(self.path, self.settings.vectors.timeout)
        except OSError as exc:
            raise VectorStoreUnavailable(f"vector store {self.path}: cannot open ({_reason(exc)})") from None
        try:
            return chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)
        except Exception as exc:
            owner.release(self.path)
            raise VectorStoreUnavailable(f"vector store {self.path}: cannot open ({_reason(exc)})") from None

    def close(self) -> None:
        """Let go of the store: an embedded one, once every user in this process has, is free
        for another process (:mod:`.owner`)."""
        with self._lock:
            client, self._client = self._client, None
            self._handles.clear()
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.close()  # chromadb stops the store's system when its last client closes
        if not self.server:
            owner.release(self.path)

    @contextlib.contextmanager
    def _errors(self, collection: str | None = None) -> Iterator[None]:
        """chromadb's exceptions as Mimir's one-line errors."""
        from chromadb.errors import ChromaError, InvalidArgumentError, NotFoundError

        try:
            yield
        except EmbedderError as exc:
            # chromadb re-raises an embedder's exception with " in upsert." (the operation) added.
            text = re.sub(r" in \w+\.$", "", str(exc))
            if collection and not text.startswith("collection "):
                text = f"collection {collection!r}: {text}"
            raise EmbedderError(text) from None
        except MimirError:
            raise
        except NotFoundError:
            raise NotFound(f"vector collection {collection!r} does not exist") from None
        except (InvalidArgumentError, ValueError, TypeError) as exc:
            text = _reason(exc)
            if "does not exist" in text.lower():
                raise NotFound(f"vector collection {collection!r} does not exist") from None
            if "could not connect" in text.lower():
                raise VectorStoreUnavailable(f"vector server {self.where}: unreachable ({text})") from None
            raise BadInput(f"vector collection {collection!r}: {text}" if collection else text) from None
        except ChromaError as exc:
            if "already exists" in str(exc):
                raise BadInput(f"vector collection {collection!r} exists already") from None
            raise MimirError(f"vector store {self.where}: {_reason(exc)}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("httpx", "httpcore")) or isinstance(exc, (ConnectionError, OSError)):
                raise VectorStoreUnavailable(f"vector server {self.where}: unreachable ({_reason(exc)})") from None
            raise

    def heartbeat(self) -> float:
        """Seconds the store took to answer; VectorStoreUnavailable if it does not."""
        import time

        start = time.perf_counter()
        with self._errors():
            self.client.heartbeat()
        return time.perf_counter() - start

    # -- collections ------------------------------------------------------------------------------

    def _collection(self, name: str) -> Any:
        """The collection's handle, kept: opening one costs a read of its configuration (about
        2 ms, as much as a page of 100 documents)."""
        check_collection_name(name)
        col = self._handles.get(name)
        if col is None:
            with self._errors(name):
                col = self.client.get_collection(name)
            self._handles[name] = col
        return col

    def _on(self, name: str, operation: Callable[[Any], T]) -> T:
        """``operation(collection)`` with chromadb's errors as Mimir's; a kept handle of a
        collection deleted since (by another process: perhaps made again) is opened anew once."""
        from chromadb.errors import NotFoundError

        kept = name in self._handles
        col = self._collection(name)
        with self._errors(name):
            try:
                return operation(col)
            except NotFoundError:
                self._handles.pop(name, None)
                if not kept:
                    raise
        col = self._collection(name)
        with self._errors(name):
            return operation(col)

    def names(self) -> list[str]:
        with self._errors():
            return sorted(c.name if hasattr(c, "name") else str(c) for c in self.client.list_collections())

    def collections(self) -> list[dict[str, Any]]:
        """Every collection: name, count, dimension, embedder, metadata."""
        return [self.info(name) for name in self.names()]

    def info(self, name: str) -> dict[str, Any]:
        self._handles.pop(name, None)  # a fresh handle: its model has the dimension as it is now
        count = self._on(name, lambda c: c.count())
        col = self._collection(name)
        model = col.get_model()
        config = getattr(col, "configuration_json", None) or {}
        ef = config.get("embedding_function") or {}
        space = (config.get("hnsw") or {}).get("space")
        return {
            "name": name,
            "count": count,
            "dimension": getattr(model, "dimension", None),
            "embedder": embedders.shown_name(ef.get("name")),
            "embedder_config": ef.get("config") or {},
            "space": space,
            "metadata": dict(col.metadata or {}),
        }

    def create(
        self, name: str, embedder: str | None = None, metadata: dict[str, Any] | None = None, *, exist_ok: bool = False
    ) -> dict[str, Any]:
        """A new collection with its embedder (default ``vectors.embedding``); ``exist_ok``: an
        existing one is kept as it is."""
        check_collection_name(name)
        kind = embedder or self.settings.vectors.embedding
        ef = embedders.make_embedder(kind, self.settings)
        options = {
            "embedding_function": ef,
            "metadata": clean_metadata(metadata, name),
            "configuration": {"hnsw": {"space": ef.default_space()}},
        }
        self._handles.pop(name, None)
        with self._errors(name):
            if exist_ok:
                self.client.get_or_create_collection(name, **options)
            else:
                self.client.create_collection(name, **options)
        return self.info(name)

    def drop(self, name: str) -> None:
        self._handles.pop(name, None)
        self._collection(name)  # NotFound first
        self._handles.pop(name, None)
        with self._errors(name):
            self.client.delete_collection(name)

    # -- documents --------------------------------------------------------------------------------

    def add(self, name: str, documents: Sequence[dict[str, Any]], *, batch: int = 1000) -> int:
        """Upsert ``[{id, text, metadata}]`` (``content`` and ``document`` are read as ``text``);
        returns how many were stored."""
        rows = [self._row(name, i, d) for i, d in enumerate(documents)]
        seen: set[str] = set()
        for row in rows:
            if row[0] in seen:
                raise BadInput(f"vector collection {name!r}: id {row[0]!r} is given twice")
            seen.add(row[0])
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            metadatas = [r[2] for r in chunk]
            ids, texts = [r[0] for r in chunk], [r[1] for r in chunk]
            metas = metadatas if any(m for m in metadatas) else None
            self._on(name, functools.partial(_upsert, ids=ids, documents=texts, metadatas=metas))
        return len(rows)

    @staticmethod
    def _row(name: str, index: int, doc: Any) -> tuple[str, str, dict[str, Any] | None]:
        where = f"vector collection {name!r}: document {index + 1}"
        if not isinstance(doc, dict):
            raise BadInput(f"{where}: a mapping with id and text/content, not {type(doc).__name__}")
        ident = doc.get("id")
        text = next((doc[k] for k in ("text", "content", "document") if doc.get(k) is not None), None)
        if ident is None or str(ident) == "":
            raise BadInput(f"{where}: no id")
        if not isinstance(text, str):
            raise BadInput(f"{where} ({ident}): no text (key text, content or document)")
        return str(ident), text, clean_metadata(doc.get("metadata"), f"{where} ({ident})")

    def count(self, name: str) -> int:
        return int(self._on(name, lambda c: c.count()))

    def page(
        self,
        name: str,
        *,
        offset: int = 0,
        limit: int = 100,
        where: dict[str, Any] | None = None,
        contains: str | None = None,
    ) -> list[Document]:
        """``limit`` documents from ``offset``, in the store's order; never the whole collection."""
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise BadInput(f"offset must be >= 0 and limit 1 to {MAX_PAGE} (got {offset}, {limit})")
        got = self._on(
            name,
            lambda c: c.get(
                offset=offset,
                limit=limit,
                where=where or None,
                where_document={"$contains": contains} if contains else None,
                include=["documents", "metadatas"],
            ),
        )
        return _documents(got["ids"], got.get("documents"), got.get("metadatas"))

    def get(self, name: str, ident: str) -> Document:
        found = self.get_many(name, [ident])
        if not found:
            raise NotFound(f"vector collection {name!r}: no document {ident!r}")
        return found[0]

    def get_many(self, name: str, ids: Sequence[str]) -> list[Document]:
        """The documents of these ids that exist."""
        got = self._on(name, lambda c: c.get(ids=list(ids), include=["documents", "metadatas"]))
        return _documents(got["ids"], got.get("documents"), got.get("metadatas"))

    def query(
        self, name: str, text: str, *, n: int = 10, where: dict[str, Any] | None = None, contains: str | None = None
    ) -> list[Document]:
        """The ``n`` nearest documents to ``text``, nearest first, with their distances."""
        if n < 1:
            raise BadInput(f"the number of results must be at least 1 (got {n})")
        got = self._on(
            name,
            lambda c: c.query(
                query_texts=[text],
                n_results=n,
                where=where or None,
                where_document={"$contains": contains} if contains else None,
                include=["documents", "metadatas", "distances"],
            ),
        )
        docs = got.get("documents")
        metas = got.get("metadatas")
        out = _documents(got["ids"][0], docs[0] if docs else None, metas[0] if metas else None)
        for doc, distance in zip(out, (got.get("distances") or [[]])[0], strict=False):
            doc.distance = float(distance)
        return out

    def delete(self, name: str, ids: Sequence[str]) -> int:
        """Delete these documents; returns how many of them existed."""

        def delete(col: Any) -> list[str]:
            present = col.get(ids=list(ids), include=[])["ids"]
            if present:
                col.delete(ids=present)
            return present

        return len(self._on(name, delete))


def _upsert(col: Any, **fields: Any) -> None:
    col.upsert(**fields)


def _documents(ids: list[str], texts: list[Any] | None, metas: list[Any] | None) -> list[Document]:
    return [
        Document(id=i, text=texts[k] if texts else None, metadata=dict((metas[k] if metas else None) or {}))
        for k, i in enumerate(ids)
    ]


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
