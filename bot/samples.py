"""The first start: on an empty data dir, the bundled sample people, CRM records and knowledge, so
everything works at once."""
from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.people.directory import Directory
from rag.index import VectorIndex
from rag.ingest import Ingestor, Uploader

SAMPLE_DATA_DIRS = ("crm", "eval")  # folders of knowledge/ that hold data, not documents
# in knowledge/: the sample passages' vectors under the default model, so that a first start need not run the model
# for them (`make sample-embeddings` rewrites it; when stale, a first start embeds only what changed)
SAMPLE_EMBEDDINGS = ".sample-embeddings.db"


def needs_samples(directory: Directory, vectors: VectorIndex) -> bool:
    return not directory.list() and vectors.count() == 0


def load_samples(knowledge_dir: Path, tenant: str, timezone: str, *, engine: Engine, directory: Directory, ingestor: Ingestor,
                 progress=None, seed: bool = True) -> dict:
    """Load the bundled sample reps and CRM records, and ingest the bundled knowledge (`seed`: with the
    precomputed vectors of knowledge/.sample-embeddings.db in the embedding cache first)."""
    from crm.io import import_sample

    if seed:
        ingestor.embedder.seed(knowledge_dir / SAMPLE_EMBEDDINGS)

    reps = import_reps(directory, knowledge_dir / "crm" / "reps.csv", tenant)
    if (knowledge_dir / "crm").is_dir():
        import_sample(engine, knowledge_dir / "crm", tenant, timezone)
    results = ingestor.ingest_paths([knowledge_dir], Uploader("bootstrap", "admin", tenant), progress=progress, exclude=SAMPLE_DATA_DIRS)
    return {"reps": reps, "documents": sum(r.status in ("added", "updated", "unchanged") for r in results),
            "errors": [r.to_json() for r in results if r.status == "error"]}


def import_reps(directory: Directory, path: Path, tenant: str) -> int:
    """Sample reps from knowledge/crm/reps.csv, each reachable on the console channel under its id."""
    if not path.is_file():
        return 0
    n = 0
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            directory.add(row["id"], row.get("name") or row["id"], row.get("role") or "rep", team=row.get("team", ""),
                          tenant=tenant, channel="console", email=row.get("email", ""),
                          timezone=row.get("timezone") or "Asia/Shanghai", language=row.get("language") or "zh",
                          manager_id=row.get("manager_id", ""))
            if row.get("email"):
                directory.link(row["id"], "email", row["email"].lower(), tenant=tenant)
            n += 1
    return n
