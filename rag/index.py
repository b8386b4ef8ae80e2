"""The vector side of the knowledge index: Chroma collections under the data dir, one per permission
partition (tenant × allowed roles × team).

A viewer's dense search runs only over the partitions they may read and merges the results, so
permissions are applied before ranking by construction: a chunk the viewer may not see is never a
candidate. (A single collection with a `where` filter gives the same answer but costs ~25 ms per
query at 10k chunks in Chroma's metadata filter; a partition query costs under a millisecond.)
Every collection records the embedding model that filled it; opening the index with another model
is refused with a clear message (`copilot kb reembed` rebuilds it), so vectors are never mixed.
With `url` (COPILOT_CHROMA_URL, http://host:port) the collections live in a Chroma server that every process
of a deployment shares; without it, in an embedded store under the data dir.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.store import SEE_ALL

PREFIX = "kb-"
REOPEN_SECONDS = 5.0  # a Chroma server that went away is tried again this often
log = logging.getLogger("copilot.index")


class ModelMismatch(RuntimeError):
    pass


def chroma_client(path: Path, url: str = ""):
    """A Chroma server's client when `url` is given (http[s]://host:port), else the embedded store at `path`."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlsplit

        u = urlsplit(url)
        return chromadb.HttpClient(host=u.hostname or "127.0.0.1", port=u.port or (443 if u.scheme == "https" else 8000),
                                   ssl=u.scheme == "https", settings=settings)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def partition_name(tenant: str, roles: frozenset[str], team: str) -> str:
    key = f"{tenant}|{','.join(sorted(roles))}|{team}"
    return PREFIX + hashlib.sha1(key.encode()).hexdigest()[:20]


def readable(meta: dict, role: str, team: str) -> bool:
    """May a viewer with this role and team read the partition described by `meta`?"""
    if role in SEE_ALL:
        return True
    return role in meta["roles"].split(",") and meta["team"] in ("", team)


class VectorIndex:
    """`broken`: why the store could not be read (empty when it is fine). A broken store does not take the
    copilot down: dense search returns nothing (retrieval runs on BM25), new vectors are skipped, `copilot
    doctor` says so, and `copilot kb rebuild` refills it from the stored passages. A Chroma server (`url`) that
    went away (restarted, unreachable) is opened again on use, at most every REOPEN_SECONDS: dense search comes
    back by itself (vectors of documents ingested meanwhile were skipped: `copilot kb rebuild` adds them)."""

    def __init__(self, path: Path, model_id: str, dim: int, *, url: str = "") -> None:
        self.path = path
        self.url = url
        self.model_id = model_id
        self.dim = dim
        self.broken = ""
        self._reopen_at = 0.0
        self._parts: dict[str, object] = {}  # collection name -> collection
        self._meta: dict[str, dict] = {}
        self._lock = threading.Lock()
        try:
            self._open(path, model_id)
        except ModelMismatch:
            raise
        except Exception as exc:
            self._degrade(exc)

    def _degrade(self, exc: Exception) -> None:
        self.broken = f"vector store at {self.url or self.path} unreadable: {type(exc).__name__}: {exc}"
        self._reopen_at = time.monotonic() + REOPEN_SECONDS
        self._parts.clear()
        self._meta.clear()
        log.error("%s: answering from keyword search (BM25) until `copilot kb rebuild`", self.broken)

    def _reopen(self) -> None:
        """A broken Chroma server is tried again (an embedded store stays broken: only a rebuild mends it)."""
        if not self.broken or not self.url or time.monotonic() < self._reopen_at:
            return
        self._reopen_at = time.monotonic() + REOPEN_SECONDS
        try:
            with self._lock:
                self._open(self.path, self.model_id)
        except Exception:
            return
        log.warning("vector store at %s readable again: dense search is back", self.url)
        self.broken = ""

    def _open(self, path: Path, model_id: str) -> None:
        self._client = chroma_client(path, self.url)
        for col in self._client.list_collections():
            if not col.name.startswith(PREFIX):
                continue
            meta = col.metadata or {}
            if meta.get("embed_model") != model_id:
                raise ModelMismatch(
                    f"the knowledge index was built with {meta.get('embed_model')}, but COPILOT_EMBED_MODEL is {model_id}; "
                    f"run `copilot kb reembed` to rebuild it with the new model (or set COPILOT_EMBED_MODEL back)"
                )
            self._parts[col.name] = col
            self._meta[col.name] = meta

    @classmethod
    def rebuild(cls, path: Path, model_id: str, dim: int, *, wipe: bool = False, url: str = "") -> "VectorIndex":
        """Drop every knowledge collection so the index is refilled with another model; `wipe`: remove the whole
        embedded store first (an unreadable one: nothing in it can be trusted, the passages are in the database)."""
        import shutil

        if wipe and not url:
            shutil.rmtree(path, ignore_errors=True)
        client = chroma_client(path, url)
        for col in client.list_collections():
            if col.name.startswith(PREFIX):
                client.delete_collection(col.name)
        return cls(path, model_id, dim, url=url)

    def _partition(self, tenant: str, roles: frozenset[str], team: str):
        name = partition_name(tenant, roles, team)
        with self._lock:
            if name not in self._parts:
                meta = {"embed_model": self.model_id, "dim": self.dim, "tenant": tenant, "roles": ",".join(sorted(roles)), "team": team}
                self._parts[name] = self._client.get_or_create_collection(
                    name, metadata=meta, configuration={"hnsw": {"space": "cosine", "ef_search": 100}}, embedding_function=None)
                self._meta[name] = meta
            return self._parts[name]

    def _readable(self, tenant: str, role: str, team: str) -> list:
        return [self._parts[n] for n, m in self._meta.items() if m["tenant"] == tenant and readable(m, role, team)]

    def count(self) -> int:
        self._reopen()
        try:
            return sum(c.count() for c in self._parts.values())
        except Exception as exc:
            self._degrade(exc)
            return 0

    def add(self, ids: Sequence[str], vectors: np.ndarray, *, tenant: str, roles: frozenset[str], team: str, version_id: int) -> None:
        if self.broken:
            return  # the passages are stored and found by BM25; `copilot kb rebuild` adds their vectors
        col = self._partition(tenant, roles, team)
        meta = {"version_id": version_id}
        for i in range(0, len(ids), 1000):
            col.upsert(ids=list(ids[i : i + 1000]), embeddings=vectors[i : i + 1000], metadatas=[meta] * len(ids[i : i + 1000]))

    def delete_version(self, tenant: str, version_id: int) -> None:
        for name, col in list(self._parts.items()):
            if self._meta[name]["tenant"] == tenant:
                col.delete(where={"version_id": version_id})

    def delete_ids(self, tenant: str, ids: Sequence[str]) -> None:
        if ids:
            for name, col in list(self._parts.items()):
                if self._meta[name]["tenant"] == tenant:
                    col.delete(ids=list(ids))

    def query(self, vector: np.ndarray, tenant: str, role: str, team: str, n: int) -> list[tuple[str, float, int]]:
        """(chunk id, cosine similarity, version id) over the partitions the viewer may read, best first."""
        self._reopen()
        out: list[tuple[str, float, int]] = []
        q = vector.reshape(1, -1)
        try:
            for col in self._readable(tenant, role, team):
                size = col.count()
                if not size:
                    continue
                res = col.query(query_embeddings=q, n_results=min(n, size), include=["distances", "metadatas"])
                out += [(i, 1.0 - float(d), int(m["version_id"])) for i, d, m in zip(res["ids"][0], res["distances"][0], res["metadatas"][0])]
        except Exception as exc:
            self._degrade(exc)
            return []
        out.sort(key=lambda t: -t[1])
        return out[:n]

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        want = list(dict.fromkeys(ids))  # Chroma refuses a repeated id (and that would mark the store broken)
        try:
            for name, col in self._parts.items():
                if not want:
                    break
                if self._meta[name]["tenant"] != tenant:
                    continue
                res = col.get(ids=want, include=["embeddings"])
                out.update({i: np.asarray(v, dtype=np.float32) for i, v in zip(res["ids"], res["embeddings"])})
                want = [i for i in want if i not in out]
        except Exception as exc:
            self._degrade(exc)
        return out
