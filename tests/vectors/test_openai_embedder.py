"""The OpenAI-compatible embedder against a real HTTP server on 127.0.0.1 that serves
deterministic vectors (a bag of hashed words: the same text, the same vector)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
from chroma_server import free_port
from loopback import serve

from mimir_tui.vectors import EmbedderError, open_store

DIM = 32
KEY_ENV = "MIMIR_TEST_EMBED_KEY"


def embed(text: str) -> list[float]:
    vector = np.zeros(DIM)
    for word in text.lower().split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return vector.tolist()


class Embeddings(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if self.headers.get("Authorization") != "Bearer sekrit":
            self._send(401, {"error": {"message": "invalid api key"}})
            return
        data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(body["input"])]
        self._send(200, {"object": "list", "model": body["model"], "data": data[::-1]})  # out of order: index rules

    def _send(self, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


DOCS = [
    {"id": "a", "text": "red apples and green pears"},
    {"id": "b", "text": "trains leave the station at noon"},
    {"id": "c", "text": "the cat sleeps on the warm sofa"},
]


@pytest.fixture
def endpoint(vector_settings, monkeypatch):
    Embeddings.requests = []
    monkeypatch.setenv(KEY_ENV, "sekrit")
    with serve(Embeddings) as url:
        vector_settings.vectors.embedding = "openai"
        vector_settings.vectors.embedding_url = f"{url}/v1"
        vector_settings.vectors.embedding_model = "test-embed"
        vector_settings.vectors.embedding_api_key_env = KEY_ENV
        yield url


def test_documents_are_embedded_by_the_endpoint_and_found_by_their_text(vector_settings, endpoint):
    store = open_store(vector_settings)
    info = store.create("fruit")
    assert info["embedder"] == "openai"
    assert info["embedder_config"] == {
        "url": f"{endpoint}/v1",
        "model": "test-embed",
        "api_key_env": KEY_ENV,
        "timeout": 30.0,
    }  # the variable's name is stored, never the key
    store.add("fruit", DOCS)
    for doc in DOCS:
        assert store.query("fruit", doc["text"], n=1)[0].id == doc["id"]
    assert store.info("fruit")["dimension"] == DIM
    first = Embeddings.requests[0]
    assert first["path"] == "/v1/embeddings" and first["model"] == "test-embed" and first["auth"] == "Bearer sekrit"
    assert first["input"] == [d["text"] for d in DOCS]


def test_a_new_process_reopens_it_with_the_same_endpoint(vector_settings, endpoint):
    store = open_store(vector_settings)
    store.create("fruit")
    store.add("fruit", DOCS)
    before = len(Embeddings.requests)
    probe = textwrap.dedent(f"""
        from mimir_tui.config import load_settings
        from mimir_tui.vectors import open_store
        s = load_settings(use_search=False, environ={{}})
        s.persistence.vector_db_path = {vector_settings.persistence.vector_db_path!r}
        print(open_store(s).query("fruit", "the cat on the sofa", n=1)[0].id)
    """)
    store.close()
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "c"
    assert [r["input"] for r in Embeddings.requests[before:]] == [["the cat on the sofa"]]


def test_a_refused_key_names_the_collection_the_embedder_and_the_variable(vector_settings, endpoint, monkeypatch):
    store = open_store(vector_settings)
    store.create("fruit")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EmbedderError) as caught:
        store.add("fruit", DOCS)
    assert str(caught.value).startswith(
        f"collection 'fruit': embedder openai (test-embed at {endpoint}/v1/embeddings): HTTP 401 (is {KEY_ENV} set?)"
    )
    assert Embeddings.requests[-1]["auth"] is None


def test_an_endpoint_gone_is_one_line(vector_settings, endpoint):
    vector_settings.vectors.embedding_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    store = open_store(vector_settings)
    store.create("gone")
    with pytest.raises(EmbedderError) as caught:
        store.query("gone", "anything")
    text = str(caught.value)
    assert text.startswith(
        f"collection 'gone': embedder openai (test-embed at {vector_settings.vectors.embedding_url}/embeddings): "
        "unreachable: "
    )
    assert "\n" not in text
