#!/usr/bin/env python3
"""The vector store: pages through Mimir against chromadb's bare client, and ingestion.

    python bench/vectors.py                      # 100,000 documents (a few minutes)
    python bench/vectors.py --docs 20000         # quicker, smaller

In a temporary folder, an embedded store (``PersistentClient``) gets a collection of ``--docs``
documents made with precomputed 256-dimension embeddings (the offline embedder's size), then:

* pages of 100 at offsets 0, the middle and the end, through Mimir's ``VectorStore.page`` and
  through the same ``get`` on the bare chromadb collection, taking turns, ``--runs`` times
  each: medians, and Mimir's over the bare client's (target: at most 1.2x);
* ingestion of ``--ingest`` new short documents: the offline embedder plus the store
  (``VectorStore.add``), against the same documents embedded alone and then stored alone with
  their precomputed embeddings (no target: the figures say what embedding costs).

Exit status: 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimir_tui.config import load_settings  # noqa: E402
from mimir_tui.vectors import open_store  # noqa: E402

BATCH = 5000
DIM = 256


def texts(start: int, count: int) -> list[str]:
    return [
        f"note {i}: about topic {i % 97} and item {i % 13}, written for the benchmark"
        for i in range(start, start + count)
    ]


def add_precomputed(collection, start: int, count: int, rng: np.random.Generator) -> float:
    """Add ``count`` documents with random unit embeddings; seconds taken."""
    began = time.perf_counter()
    for first in range(start, start + count, BATCH):
        n = min(BATCH, start + count - first)
        vectors = rng.standard_normal((n, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        collection.add(
            ids=[f"d{i:07}" for i in range(first, first + n)],
            documents=texts(first, n),
            metadatas=[{"i": i, "topic": i % 97} for i in range(first, first + n)],
            embeddings=vectors,
        )
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents in the paged collection")
    parser.add_argument("--ingest", type=int, default=10_000, help="documents in the ingestion runs")
    parser.add_argument("--runs", type=int, default=15, help="pages read at each offset, each way")
    args = parser.parse_args()
    report = common.Report()
    started = time.perf_counter()
    rng = np.random.default_rng(14)

    with tempfile.TemporaryDirectory(prefix="mimir-bench-vectors-") as folder:
        settings = load_settings(use_search=False, environ={})
        settings.persistence.vector_db_path = str(Path(folder) / "vectors")
        store = open_store(settings)
        store.create("paged")
        bare = store.client.get_collection("paged")

        report.say(f"== building a collection of {args.docs:,} documents (precomputed embeddings)")
        seconds = add_precomputed(bare, 0, args.docs, rng)
        report.info(f"built {args.docs:,} documents in {seconds:.1f} s ({args.docs / seconds:,.0f} documents/s)")

        report.say(f"\n== pages of 100, {args.runs} runs each way, taking turns")
        for label, offset in [("start", 0), ("middle", args.docs // 2), ("end", args.docs - 100)]:
            mimir, plain = [], []
            store.page("paged", offset=offset, limit=100)  # warm
            for _ in range(args.runs):
                began = time.perf_counter()
                page = store.page("paged", offset=offset, limit=100)
                mimir.append(time.perf_counter() - began)
                began = time.perf_counter()
                got = bare.get(offset=offset, limit=100, include=["documents", "metadatas"])
                plain.append(time.perf_counter() - began)
                assert [d.id for d in page] == got["ids"] and len(page) == 100
            m, p = statistics.median(mimir) * 1000, statistics.median(plain) * 1000
            ratio = m / p
            ok = ratio <= 1.2
            report.failed += not ok
            report.info(
                f"page at offset {offset:,} ({label}): Mimir {m:.1f} ms, bare chromadb {p:.1f} ms, "
                f"{ratio:.2f}x (target <= 1.2x) {'ok' if ok else 'MISSED'}"
            )

        report.say(f"\n== ingestion of {args.ingest:,} short documents, in batches of 1,000")
        words = texts(10**7, args.ingest)
        docs = [{"id": f"e{i}", "text": t, "metadata": {"i": i}} for i, t in enumerate(words)]
        store.create("embedded")
        began = time.perf_counter()
        store.add("embedded", docs, batch=1000)
        total = time.perf_counter() - began

        from mimir_tui.vectors.embedders import OfflineEmbedder

        began = time.perf_counter()
        vectors = OfflineEmbedder()(words)
        embedding = time.perf_counter() - began
        store.create("precomputed")
        bare_ingest = store.client.get_collection("precomputed")
        began = time.perf_counter()
        for first in range(0, args.ingest, 1000):
            bare_ingest.upsert(
                ids=[d["id"] for d in docs[first : first + 1000]],
                documents=words[first : first + 1000],
                metadatas=[d["metadata"] for d in docs[first : first + 1000]],
                embeddings=vectors[first : first + 1000],
            )
        storing = time.perf_counter() - began
        report.info(
            f"offline embedder + store (Mimir's add): {args.ingest / total:,.0f} documents/s; "
            f"of which embedding alone {args.ingest / embedding:,.0f}/s and the store alone, given "
            f"the embeddings, {args.ingest / storing:,.0f}/s"
        )
    return report.summary(started)


if __name__ == "__main__":
    sys.exit(main())
