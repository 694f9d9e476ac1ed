"""Embedders, as chromadb registered embedding functions: a collection's configuration keeps
the embedder's name and settings (never a key), and chromadb rebuilds the same embedder when
any process that imported this module opens the collection again.

- ``offline``: wordllama's l2_supercat model (256 dimensions), whose weights ship in its wheel:
  no download, about 10,000 short texts a second on one core. Word embeddings averaged: good
  for keyword-ish similarity, weaker than a transformer on paraphrases.
- ``openai``: an OpenAI-compatible ``POST {url}/embeddings`` (OpenAI, Ollama, vLLM...); the key
  comes from the environment variable the collection names.
- ``chroma``: chromadb's own all-MiniLM-L6-v2 (ONNX), only when its files are already on the
  machine: Mimir never lets it download them.

Whatever cannot reach its model raises :class:`EmbedderError` in one line; the store adds the
collection's name.
"""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from ..secrets import mask_url
from . import EmbedderError

#: The user's word for an embedder -> the name chromadb stores with the collection.
REGISTERED = {"offline": "mimir-offline", "openai": "mimir-openai", "chroma": "mimir-chroma"}
SHOWN = {v: k for k, v in REGISTERED.items()}


def shown_name(registered: str | None) -> str:
    """The user's word for a stored embedder name (``offline``), or the stored name itself for
    an embedder Mimir did not make (``default``, ``openai``...)."""
    if not registered:
        return "none"
    return SHOWN.get(registered, registered)


# -- offline: wordllama ----------------------------------------------------------------------------

_wordllama: dict[tuple[str, int], Any] = {}
_wordllama_lock = threading.Lock()


def load_wordllama(config: str = "l2_supercat", dim: int = 256) -> Any:
    """The wordllama model from the weights in its own wheel, once per process. (Its default
    loader looks for the tokenizer in the wrong folder of the wheel, then tries to download:
    ``cache_dir`` set to the package folder and ``disable_download`` load it offline.)"""
    key = (config, dim)
    with _wordllama_lock:
        model = _wordllama.get(key)
        if model is None:
            try:
                import wordllama
                from wordllama import WordLlama

                folder = Path(wordllama.__file__).parent
                model = WordLlama.load(config=config, dim=dim, cache_dir=folder, disable_download=True)
            except ImportError:
                raise EmbedderError("embedder offline: wordllama is not installed (pip install wordllama)") from None
            except Exception as exc:
                raise EmbedderError(f"embedder offline: cannot load wordllama {config}/{dim}: {exc}") from None
            _wordllama[key] = model
    return model


class MimirEmbedder(EmbeddingFunction[Documents]):
    """What Mimir's embedders share: the registered name from :data:`REGISTERED`, cosine
    distances, and rebuilding from the stored config (keys the constructor takes)."""

    KIND: ClassVar[str] = ""

    @classmethod
    def name(cls) -> str:
        return REGISTERED[cls.KIND]

    def default_space(self) -> Any:
        return "cosine"

    @classmethod
    def build_from_config(cls, config: dict[str, Any]) -> Any:
        accepted = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in config.items() if k in accepted})


@register_embedding_function
class OfflineEmbedder(MimirEmbedder):
    """wordllama, offline; vectors normalised (cosine and l2 then rank alike)."""

    KIND = "offline"

    def __init__(self, model: str = "l2_supercat", dim: int = 256) -> None:
        self.model = model
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:
        vectors = load_wordllama(self.model, self.dim).embed(list(input), norm=True)
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.dim}

    def describe(self) -> str:
        return f"offline (wordllama {self.model}, {self.dim} dimensions)"


# -- an OpenAI-compatible endpoint -----------------------------------------------------------------


@register_embedding_function
class OpenAIEmbedder(MimirEmbedder):
    """``POST {url}/embeddings`` with ``{"model", "input": [...]}``; the key (if any) from the
    environment variable ``api_key_env``, read at each call."""

    KIND = "openai"

    def __init__(
        self,
        url: str = "http://127.0.0.1:11434/v1",
        model: str = "nomic-embed-text",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 30.0,
        batch: int = 256,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.batch = batch

    def __call__(self, input: Documents) -> Embeddings:
        import httpx

        texts = list(input)
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        endpoint = f"{self.url}/embeddings"
        out: list[np.ndarray] = []
        try:
            with httpx.Client(timeout=self.timeout, headers=headers, trust_env=False) as client:
                for start in range(0, len(texts), self.batch):
                    chunk = texts[start : start + self.batch]
                    response = client.post(endpoint, json={"model": self.model, "input": chunk})
                    if response.status_code != 200:
                        hint = f" (is {self.api_key_env} set?)" if response.status_code in (401, 403) else ""
                        raise EmbedderError(
                            f"{self.describe_at(endpoint)}: HTTP {response.status_code}"
                            f"{hint}: {' '.join(response.text.split())[:200]}"
                        )
                    out.extend(self._vectors(response.json(), len(chunk), endpoint))
        except httpx.HTTPError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise EmbedderError(
                f"embedder openai ({self.model} at {mask_url(endpoint)}): unreachable: {reason}"
            ) from None
        except ValueError as exc:  # not JSON
            raise EmbedderError(f"embedder openai ({self.model} at {mask_url(endpoint)}): bad answer: {exc}") from None
        return out

    def describe_at(self, endpoint: str) -> str:
        return f"embedder openai ({self.model} at {mask_url(endpoint)})"

    def _vectors(self, body: Any, expected: int, endpoint: str) -> list[np.ndarray]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            raise EmbedderError(
                f"{self.describe_at(endpoint)}: the answer has no 'data' list of {expected} embedding(s)"
            )
        ordered = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
        try:
            return [np.asarray(item["embedding"], dtype=np.float32) for item in ordered]
        except (KeyError, TypeError, ValueError):
            raise EmbedderError(f"{self.describe_at(endpoint)}: an item of 'data' has no numeric 'embedding'") from None

    def get_config(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, "api_key_env": self.api_key_env, "timeout": self.timeout}

    def describe(self) -> str:
        return f"openai ({self.model} at {mask_url(self.url)})"


# -- chromadb's default model, when its files are here ---------------------------------------------

ONNX_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json")


def chroma_model_folder() -> Path:
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    return Path(ONNXMiniLM_L6_V2.DOWNLOAD_PATH) / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME


def chroma_model_missing() -> str | None:
    """None when chromadb's default model is on the machine; else what is missing."""
    folder = chroma_model_folder()
    missing = [name for name in (*ONNX_FILES, "vocab.txt") if not (folder / name).is_file()]
    return f"its files are not in {folder} (missing {', '.join(missing)})" if missing else None


@register_embedding_function
class ChromaDefaultEmbedder(MimirEmbedder):
    """chromadb's all-MiniLM-L6-v2 (384 dimensions), refused rather than downloaded."""

    KIND = "chroma"

    _model: Any = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        cls = type(self)
        with cls._lock:
            if cls._model is None:
                missing = chroma_model_missing()
                if missing:
                    raise EmbedderError(f"embedder chroma (all-MiniLM-L6-v2): {missing}; Mimir does not download it")
                from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

                cls._model = ONNXMiniLM_L6_V2()
        return list(cls._model(list(input)))

    def get_config(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return "chroma (all-MiniLM-L6-v2)"


def make_embedder(kind: str, settings: Any) -> EmbeddingFunction:
    """A new collection's embedder: ``offline``, ``openai`` (with ``vectors.embedding_*``) or
    ``chroma``; ``settings`` is the whole :class:`mimir_tui.config.Settings`."""
    if kind == "offline":
        return OfflineEmbedder()
    if kind == "openai":
        v = settings.vectors
        return OpenAIEmbedder(
            url=v.embedding_url, model=v.embedding_model, api_key_env=v.embedding_api_key_env, timeout=v.timeout
        )
    if kind == "chroma":
        return ChromaDefaultEmbedder()
    from ..errors import BadInput
    from . import EMBEDDERS

    raise BadInput(f"embedder {kind!r}: not one of {', '.join(EMBEDDERS)}")
