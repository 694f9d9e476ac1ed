"""``Storage.vector``: the vector store (mimir_tui.vectors) from a pipeline, with the original's
operations and keys, so its ``storage_demo.yaml`` runs unchanged.

Operations: ``create_collection`` (name), ``store`` / ``batch_store`` (collection, documents
``[{id, content, metadata}]``, or ``input``: a context key holding them, or ``folder`` with
``pattern``: one document per file), ``query`` (collection, query, limit, where), ``get``
(collection, id or ids), ``delete`` (collection, id or ids), ``list_collections``. The
collection defaults to ``vectors.default_collection``; ``store`` creates it when it is missing
(with ``vectors.embedding``). chromadb is imported when the step runs, not when the plugin is
registered.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ...errors import MimirError
from ..policy import Policy
from ..registry import Plugin, PluginConfig, PluginError, StepContext
from .common import lookup_input

Operation = Literal["store", "batch_store", "query", "delete", "get", "create_collection", "list_collections"]


class VectorConfig(PluginConfig):
    operation: Operation = Field(description="what to do (store, query, get, delete, create_collection...)")
    collection: str | None = Field(None, description="the collection (default vectors.default_collection)")
    name: str | None = Field(None, description="create_collection: the new collection's name")
    embedder: Literal["offline", "openai", "chroma"] | None = Field(
        None, description="create_collection: its embedder (default vectors.embedding)"
    )
    documents: list[Any] | None = Field(None, description="store: [{id, content, metadata}] (or text/document)")
    input: str | None = Field(None, description="store: a context key holding the documents (a list)")
    folder: str | None = Field(None, description="store: one document per file of this folder (id: its name)")
    pattern: str = Field("*", description="store with folder: which files (a glob, e.g. *.md)")
    query: str | None = Field(None, description="query: the text to search for")
    limit: int = Field(10, ge=1, le=10_000, description="query: how many results")
    where: dict[str, Any] | None = Field(None, description="query: a metadata filter (chromadb's where)")
    ids: list[str] | None = Field(None, description="get, delete: these ids")
    id: str | None = Field(None, description="get, delete: this id")

    @model_validator(mode="after")
    def _keys_for_the_operation(self) -> VectorConfig:
        op = self.operation
        sources = (self.documents, self.input, self.folder)
        if op in ("store", "batch_store") and sum(x is not None for x in sources) != 1:
            raise ValueError(f"{op}: give one of documents, input (a context key) or folder")
        if op == "query" and not self.query:
            raise ValueError("query: give the query text ('query')")
        if op in ("get", "delete") and not (self.id or self.ids):
            raise ValueError(f"{op}: give id or ids")
        return self


class VectorStorage(Plugin):
    type = "Storage"
    name = "vector"
    description = (
        "The vector store: create_collection, store/batch_store documents, query by text, get, delete, "
        "list_collections. Results as the original's ({operation, collection, count, ...})."
    )
    Config = VectorConfig

    def execute(self, config: VectorConfig, ctx: StepContext) -> Any:
        from ...vectors import open_store

        if ctx.settings is None:
            raise PluginError("Storage.vector needs Mimir's settings (the vector store's location)")
        store = open_store(ctx.settings)
        try:
            return self._run(store, config, ctx)
        except PluginError:
            raise
        except MimirError as exc:  # one line already; the step fails with it
            raise PluginError(str(exc)) from None
        finally:
            store.close()  # an embedded store is free for other processes between steps

    def _run(self, store: Any, config: VectorConfig, ctx: StepContext) -> Any:
        collection = config.collection or ctx.settings.vectors.default_collection
        op = config.operation
        if op == "list_collections":
            return store.names()
        if op == "create_collection":
            name = config.name or collection
            existed = name in store.names()
            info = store.create(name, embedder=config.embedder, exist_ok=True)
            ctx.log("INFO", f"collection {name}: {'exists' if existed else 'created'} ({info['embedder']})")
            return {
                "operation": op,
                "name": name,
                "successful": True,
                "created": not existed,
                "embedder": info["embedder"],
                "count": info["count"],
            }
        if op in ("store", "batch_store"):
            docs = self._documents(config, ctx)
            store.create(collection, exist_ok=True)
            count = store.add(collection, docs)
            ctx.log("INFO", f"stored {count} document(s) in {collection}")
            return {"operation": op, "collection": collection, "count": count, "successful": True}
        if op == "query":
            assert config.query is not None
            hits = store.query(collection, config.query, n=config.limit, where=config.where)
            return {
                "operation": op,
                "collection": collection,
                "query": config.query,
                "count": len(hits),
                "results": [_document(d) for d in hits],
            }
        ids = config.ids or [str(config.id)]  # get, delete (the validator asks for one)
        if op == "get":
            if config.id and not config.ids:
                return {"operation": op, "collection": collection, **_document(store.get(collection, config.id))}
            docs = [_document(d) for d in store.get_many(collection, [str(i) for i in ids])]
            return {"operation": op, "collection": collection, "count": len(docs), "documents": docs}
        deleted = store.delete(collection, [str(i) for i in ids])
        return {"operation": op, "collection": collection, "deleted": deleted, "successful": True}

    @staticmethod
    def _documents(config: VectorConfig, ctx: StepContext) -> list[Any]:
        if config.folder is not None:
            policy = Policy.of(ctx.settings, ctx.base_dir)
            folder = policy.readable(config.folder)
            if not folder.is_dir():
                raise PluginError(f"folder {folder}: not a folder")
            docs = []
            for found in sorted(p for p in folder.glob(config.pattern) if p.is_file()):
                path = policy.readable(found)  # a pattern with ".." or a symlink may lead elsewhere
                try:
                    text = policy.read_bytes(path).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise PluginError(f"{path}: not UTF-8 text (byte {exc.start})") from None
                docs.append({"id": found.name, "content": text, "metadata": {"source": str(found)}})
            if not docs:
                raise PluginError(f"folder {folder}: no file matches {config.pattern!r}")
            return docs
        value = config.documents if config.documents is not None else lookup_input(ctx, config.input or "")
        if not isinstance(value, list):
            raise PluginError(f"documents: a list of {{id, content, metadata}}, not {type(value).__name__}")
        return value


def _document(doc: Any) -> dict[str, Any]:
    out = {"id": doc.id, "content": doc.text, "metadata": doc.metadata}
    if doc.distance is not None:
        out["distance"] = doc.distance
    return out
