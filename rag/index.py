"""The vector side of the knowledge index: one Chroma collection under the data dir.

The collection records the embedding model that filled it; opening it with another model is
refused with a clear message (`copilot kb reembed` rebuilds it), so vectors are never mixed.
Chunk metadata carries tenant, team and one boolean per role, so permissions are a `where`
filter inside the vector search itself, never a filter applied after ranking.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rag.store import CONTENT_ROLES, SEE_ALL

COLLECTION = "knowledge"


class ModelMismatch(RuntimeError):
    pass


def viewer_where(tenant: str, role: str, team: str) -> dict:
    clauses: list[dict] = [{"tenant": tenant}]
    if role not in SEE_ALL:
        clauses.append({f"r_{role}": True})
        clauses.append({"$or": [{"team": ""}, {"team": team or "-"}]})
    else:
        clauses.append({"live": True})
    return {"$and": clauses}


def chunk_metadata(tenant: str, version_id: int, roles: frozenset[str], team: str) -> dict:
    meta: dict = {"tenant": tenant, "version_id": version_id, "team": team, "live": True}
    for r in CONTENT_ROLES:
        meta[f"r_{r}"] = r in roles
    return meta


class VectorIndex:
    def __init__(self, path: Path, model_id: str, dim: int) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        path.mkdir(parents=True, exist_ok=True)
        self._client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        self.model_id = model_id
        self.dim = dim
        self._col = self._client.get_or_create_collection(
            COLLECTION,
            metadata={"embed_model": model_id, "dim": dim},
            configuration={"hnsw": {"space": "cosine", "ef_search": 200}},
            embedding_function=None,
        )
        filled_by = (self._col.metadata or {}).get("embed_model")
        if filled_by != model_id:
            raise ModelMismatch(
                f"the knowledge index was built with {filled_by}, but COPILOT_EMBED_MODEL is {model_id}; "
                f"run `copilot kb reembed` to rebuild it with the new model (or set COPILOT_EMBED_MODEL back)"
            )

    @classmethod
    def rebuild(cls, path: Path, model_id: str, dim: int) -> "VectorIndex":
        """Drop the collection so it is refilled with another model."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        try:
            client.delete_collection(COLLECTION)
        except Exception:  # noqa: BLE001 - absent collection
            pass
        return cls(path, model_id, dim)

    def count(self) -> int:
        return self._col.count()

    def add(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[dict]) -> None:
        for i in range(0, len(ids), 1000):
            self._col.upsert(ids=list(ids[i : i + 1000]), embeddings=vectors[i : i + 1000], metadatas=list(metas[i : i + 1000]))

    def delete_version(self, version_id: int) -> None:
        self._col.delete(where={"version_id": version_id})

    def delete_ids(self, ids: Sequence[str]) -> None:
        if ids:
            self._col.delete(ids=list(ids))

    def query(self, vector: np.ndarray, where: dict, n: int) -> list[tuple[str, float, int]]:
        """(chunk id, cosine similarity, version id), best first."""
        res = self._col.query(query_embeddings=vector.reshape(1, -1), n_results=n, where=where, include=["distances", "metadatas"])
        ids, dists, metas = res["ids"][0], res["distances"][0], res["metadatas"][0]
        return [(i, 1.0 - float(d), int(m["version_id"])) for i, d, m in zip(ids, dists, metas)]

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        res = self._col.get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(res["ids"], res["embeddings"])}
