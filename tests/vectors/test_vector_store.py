"""The vector store (issue 14): embedded in tmp_path and as a real ``chroma run`` server, with
the offline embedder (wordllama, no download)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from chroma_server import free_port

from mimir_tui.errors import BadInput, NotFound
from mimir_tui.vectors import EmbedderError, VectorsDisabled, VectorStoreUnavailable, open_store

FACTS = [
    {
        "id": "physics",
        "text": "Quantum mechanics describes matter and energy at atomic scales",
        "metadata": {"s": "sci"},
    },
    {
        "id": "biology",
        "text": "Photosynthesis turns light into chemical energy in green plants",
        "metadata": {"s": "sci"},
    },
    {"id": "ml", "text": "Machine learning algorithms learn patterns from data", "metadata": {"s": "cs", "n": 3}},
    {"id": "cooking", "text": "Bake the bread for forty minutes in a hot oven", "metadata": {"s": "home"}},
]


def test_each_document_returns_first_for_its_own_text(vector_settings, tmp_path):
    store = open_store(vector_settings)
    info = store.create("facts")
    assert info["embedder"] == "offline" and info["space"] == "cosine"
    assert store.add("facts", FACTS) == 4
    assert store.info("facts")["count"] == 4 and store.info("facts")["dimension"] == 256
    for doc in FACTS:
        hits = store.query("facts", doc["text"], n=2)
        assert hits[0].id == doc["id"] and hits[0].distance < 0.01 < hits[1].distance
    assert [h.id for h in store.query("facts", "How does quantum mechanics work?", n=1)] == ["physics"]
    assert store.names() == ["facts"] and store.mode == "embedded"
    assert (tmp_path / "data" / "chromem.db" / "chroma.sqlite3").is_file()


def test_filters_by_metadata_and_by_contained_text(vector_settings):
    store = open_store(vector_settings)
    store.create("facts")
    store.add("facts", FACTS)
    assert {d.id for d in store.page("facts", where={"s": "sci"})} == {"physics", "biology"}
    assert [d.id for d in store.page("facts", contains="bread")] == ["cooking"]
    assert [d.id for d in store.query("facts", "energy", n=5, where={"s": "cs"})] == ["ml"]
    assert [d.id for d in store.page("facts", where={"n": {"$gte": 3}})] == ["ml"]
    with pytest.raises(BadInput, match=r"^vector collection 'facts': "):
        store.page("facts", where={"$nonsense": 1})


def test_paging_ten_thousand_documents_sees_every_id_once(vector_settings):
    store = open_store(vector_settings)
    store.create("many")
    docs = [{"id": f"d{i:05}", "text": f"note {i} about topic {i % 97}", "metadata": {"i": i}} for i in range(10_000)]
    store.add("many", docs)
    seen: list[str] = []
    offset = 0
    while True:
        page = store.page("many", offset=offset, limit=500)
        if not page:
            break
        seen += [d.id for d in page]
        offset += len(page)
    assert len(seen) == 10_000 and set(seen) == {d["id"] for d in docs}


def test_a_new_process_reopens_the_collection_with_its_embedder(vector_settings, tmp_path):
    store = open_store(vector_settings)
    store.create("facts")
    store.add("facts", FACTS)
    expected = [(d.id, round(d.distance, 4)) for d in store.query("facts", "plants and light", n=3)]
    probe = textwrap.dedent(f"""
        import json
        from mimir_tui.config import load_settings
        from mimir_tui.vectors import open_store
        s = load_settings(use_search=False, environ={{}})
        s.persistence.vector_db_path = {vector_settings.persistence.vector_db_path!r}
        s.vectors.embedding = "chroma"  # the config's default changed: the collection keeps its own
        store = open_store(s)
        hits = store.query("facts", "plants and light", n=3)
        print(json.dumps([store.info("facts")["embedder"], [(d.id, round(d.distance, 4)) for d in hits]]))
    """)
    store.close()
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    embedder, hits = json.loads(proc.stdout.splitlines()[-1])
    assert embedder == "offline"
    assert [tuple(h) for h in hits] == expected


def test_names_ids_and_collections_are_checked_in_one_line(vector_settings):
    store = open_store(vector_settings)
    with pytest.raises(BadInput, match=r"collection name 'x': 3 to 512 characters"):
        store.create("x")
    with pytest.raises(NotFound, match=r"^vector collection 'nope' does not exist$"):
        store.page("nope")
    store.create("facts")
    with pytest.raises(BadInput, match=r"^vector collection 'facts' exists already$"):
        store.create("facts")
    assert store.create("facts", exist_ok=True)["name"] == "facts"
    with pytest.raises(BadInput, match=r"document 2 \(a\): no text"):
        store.add("facts", [{"id": "b", "text": "x"}, {"id": "a"}])
    with pytest.raises(BadInput, match=r"id 'a' is given twice"):
        store.add("facts", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(NotFound, match=r"no document 'zz'"):
        store.get("facts", "zz")
    with pytest.raises(BadInput, match=r"embedder 'bert': not one of offline, openai, chroma"):
        store.create("other", embedder="bert")


def test_delete_documents_then_the_collection(vector_settings):
    store = open_store(vector_settings)
    store.create("facts")
    store.add("facts", FACTS)
    assert store.delete("facts", ["ml", "nope"]) == 1
    assert store.count("facts") == 3
    store.drop("facts")
    assert store.names() == []
    with pytest.raises(NotFound):
        store.drop("facts")


def test_metadata_the_store_cannot_hold_is_kept_as_json(vector_settings):
    store = open_store(vector_settings)
    store.create("facts")
    store.add(
        "facts", [{"id": "a", "content": "x y z", "metadata": {"tags": ["q", "m"], "deep": {"k": 1}, "no": None}}]
    )
    assert store.get("facts", "a").metadata == {"tags": ["q", "m"], "deep": '{"k": 1}'}


def test_vectors_disabled_says_so_in_one_line(vector_settings):
    vector_settings.persistence.enable_vector_db = False
    with pytest.raises(
        VectorsDisabled, match=r"^the vector store is turned off \(persistence.enable_vector_db: false\)$"
    ):
        open_store(vector_settings)


def test_chromadbs_model_without_its_files_names_the_collection_and_the_embedder(vector_settings):
    from mimir_tui.vectors.embedders import chroma_model_missing

    if chroma_model_missing() is None:
        pytest.skip("chromadb's default model is on this machine")
    store = open_store(vector_settings)
    store.create("minilm", embedder="chroma")
    with pytest.raises(EmbedderError) as caught:
        store.add("minilm", [{"id": "a", "text": "hello"}])
    text = str(caught.value)
    assert text.startswith("collection 'minilm': embedder chroma (all-MiniLM-L6-v2): its files are not in ")
    assert text.endswith("; Mimir does not download it") and "\n" not in text


# -- a real chroma server ----------------------------------------------------------------------


@pytest.mark.slow
def test_server_mode_stores_and_queries_through_chroma_run(server_vector_settings, chroma_server):
    store = open_store(server_vector_settings)
    assert store.mode == "server" and store.where == chroma_server.url
    assert store.heartbeat() < 5
    store.create("server-facts")
    try:
        store.add("server-facts", FACTS)
        assert store.info("server-facts")["embedder"] == "offline"
        assert [d.id for d in store.query("server-facts", "green plants and light", n=1)] == ["biology"]
        assert {d.id for d in store.page("server-facts", where={"s": "sci"})} == {"physics", "biology"}
        # another client (another instance) sees the same store
        assert "server-facts" in open_store(server_vector_settings).names()
    finally:
        store.drop("server-facts")


@pytest.mark.slow
def test_a_server_gone_is_one_line_naming_it(vector_settings, tmp_path):
    vector_settings.vectors.server_url = f"http://127.0.0.1:{free_port()}"
    store = open_store(vector_settings)
    with pytest.raises(VectorStoreUnavailable, match=r"^vector server http://127\.0\.0\.1:\d+: unreachable \("):
        store.names()


def test_a_collection_deleted_and_made_again_by_another_client_is_found_anew(vector_settings):
    """The store keeps collection handles (opening one costs as much as a page): one whose
    collection another process deleted and made again is opened anew, not reported missing."""
    first, other = open_store(vector_settings), open_store(vector_settings)
    first.create("facts")
    first.add("facts", FACTS[:1])
    assert first.count("facts") == 1
    other.drop("facts")
    other.create("facts")
    other.add("facts", FACTS)
    assert first.count("facts") == 4
    assert first.query("facts", FACTS[2]["text"], n=1)[0].id == "ml"
    other.drop("facts")
    with pytest.raises(NotFound, match=r"^vector collection 'facts' does not exist$"):
        first.count("facts")


HOLDER = """
import sys, time
from mimir_tui.config import load_settings
from mimir_tui.vectors import open_store
s = load_settings(use_search=False, environ={})
s.persistence.vector_db_path = sys.argv[1]
store = open_store(s)
store.create("held", exist_ok=True)
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_an_embedded_store_serves_one_process_at_a_time(vector_settings):
    """chromadb's embedded store keeps its index in the memory of the process that opened it:
    another process waits for it (vectors.timeout), then says who holds it, in one line."""
    path = vector_settings.persistence.vector_db_path
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        vector_settings.vectors.timeout = 0.3
        with pytest.raises(VectorStoreUnavailable) as caught:
            open_store(vector_settings).names()
        assert str(caught.value) == (
            f"vector store {path}: in use by another process (pid {holder.pid}) for 0.3 s; an embedded store "
            "serves one process at a time: share it through a server (vectors.server_url)"
        )
        vector_settings.vectors.timeout = 30
        store = open_store(vector_settings)
        assert store.names() == ["held"]  # waited for the holder to exit
        assert holder.poll() is not None
        other = open_store(vector_settings)  # this process's threads share it
        assert other.names() == ["held"]
    finally:
        holder.kill()
        holder.wait()
    store.close()
    other.close()
    # let go: another process opens it at once
    quick = subprocess.run([sys.executable, "-c", HOLDER, path, "0"], capture_output=True, text=True, timeout=60)
    assert quick.returncode == 0 and quick.stdout.strip() == "ready", quick.stderr
