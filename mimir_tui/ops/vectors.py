"""What the Vectors screen shows, read from the vector store: the read model of
:mod:`mimir_tui.tui.screens.vectors` (no Textual here). Each function takes a
:class:`~mimir_tui.vectors.store.VectorStore` and runs in the screen's worker threads, never on
the event loop. A page of documents is one bounded ``get`` (offset and limit): a collection is
never read whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..vectors.documents import excerpt, meta_text
from .overview import Row

COLLECTION_COLUMNS = ("Name", "Docs", "Dim", "Embedder", "Metadata")
DOCUMENT_COLUMNS = ("ID", "Text", "Metadata")
RESULT_COLUMNS = ("Distance", "ID", "Text", "Metadata")
#: The excerpt of a document's text in the table (Enter shows it whole).
TEXT_WIDTH = 40


@dataclass(frozen=True)
class Collections:
    rows: list[Row]
    summary: str


@dataclass(frozen=True)
class DocumentPage:
    """A page of a collection's documents (or a query's results, nearest first)."""

    collection: str
    rows: list[Row]
    documents: list[Any]  # the store's Document (their whole text: the full view shows it)
    summary: str
    offset: int = 0
    #: The page was full: there may be a next one.
    more: bool = False
    query: bool = False
    filters: dict[str, Any] = field(default_factory=dict)


def read_collections(store: Any) -> Collections:
    rows: list[Row] = []
    total = 0
    for info in store.collections():
        total += int(info["count"])
        cells = (
            info["name"],
            str(info["count"]),
            str(info["dimension"] or "-"),
            info["embedder"],
            meta_text(info["metadata"], 40),
        )
        rows.append((info["name"], cells))
    summary = f"{len(rows)} collection(s), {total} document(s) ({store.mode} {store.where})"
    return Collections(rows, summary)


def _cells(doc: Any) -> tuple[str, str, str]:
    return doc.id, excerpt(doc.text, TEXT_WIDTH), meta_text(doc.metadata, 30)


def _filters(where: dict[str, Any] | None, contains: str | None) -> str:
    shown = [f"where {where}" if where else "", f"contains {contains!r}" if contains else ""]
    words = " and ".join(s for s in shown if s)
    return f" ({words})" if words else ""


def read_page(
    store: Any,
    name: str,
    *,
    offset: int,
    limit: int,
    where: dict[str, Any] | None = None,
    contains: str | None = None,
) -> DocumentPage:
    """``limit`` documents of ``name`` from ``offset``, filtered (chromadb cannot count a
    filtered collection: the summary gives the collection's count)."""
    docs = store.page(name, offset=offset, limit=limit, where=where, contains=contains)
    total = store.count(name)
    rows: list[Row] = [(d.id, _cells(d)) for d in docs]
    first = offset + 1 if docs else offset
    summary = f"{name}: documents {first}-{offset + len(docs)}{_filters(where, contains)} of {total}"
    if not docs and offset == 0 and (where or contains):
        summary = f"{name}: no document matches{_filters(where, contains)} ({total} in all)"
    filters = {"where": where, "contains": contains}
    return DocumentPage(name, rows, docs, summary, offset=offset, more=len(docs) == limit, filters=filters)


def read_query(
    store: Any,
    name: str,
    text: str,
    *,
    n: int,
    where: dict[str, Any] | None = None,
    contains: str | None = None,
) -> DocumentPage:
    """The ``n`` documents of ``name`` nearest to ``text``, nearest first, with their distances."""
    docs = store.query(name, text, n=n, where=where, contains=contains)
    rows: list[Row] = [(d.id, (f"{d.distance:.4f}", *_cells(d))) for d in docs]
    summary = f"{name}: {len(docs)} nearest to {excerpt(text, 40)!r}{_filters(where, contains)}"
    return DocumentPage(name, rows, docs, summary, query=True, filters={"where": where, "contains": contains})
