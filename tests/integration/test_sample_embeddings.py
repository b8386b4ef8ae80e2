"""The sample knowledge's vectors ship in knowledge/.sample-embeddings.db, so a first start (`make run`) copies them
instead of running the model for every passage."""
from __future__ import annotations

import numpy as np

from tests.conftest import KNOWLEDGE


class Counting:
    model_id, dim = "fake", 3

    def __init__(self) -> None:
        self.calls = 0

    def embed_passages(self, texts):
        self.calls += len(texts)
        return np.ones((len(texts), 3), dtype=np.float32)

    embed_queries = embed_passages


def test_seed_adds_what_export_wrote_and_keeps_what_is_cached(tmp_path):
    from rag.embed import CachedEmbedder

    a = CachedEmbedder(Counting(), tmp_path / "a.db")
    a.embed_passages(["one", "two"])
    a.export(tmp_path / "seed.db")
    a.close()

    b = CachedEmbedder(Counting(), tmp_path / "b.db")
    b.embed_passages(["two"])
    assert b.seed(tmp_path / "seed.db") == 1  # "two" was cached already
    assert b.seed(tmp_path / "absent.db") == 0
    b.embed_passages(["one", "two"])
    assert b.inner.calls == 1 and b.misses == 1
    b.close()


def test_a_first_start_runs_the_model_for_no_sample_passage(make_settings, tmp_path):
    from bot.app import open_database, open_knowledge
    from bot.people.directory import Directory
    from bot.samples import SAMPLE_EMBEDDINGS, load_samples

    s = make_settings(embed_cache=tmp_path / "empty-cache.db")
    assert s.knowledge_dir == KNOWLEDGE and (KNOWLEDGE / SAMPLE_EMBEDDINGS).is_file()
    engine = open_database(s)
    knowledge = open_knowledge(s, engine)
    try:
        out = load_samples(s.knowledge_dir, s.tenant, s.timezone, engine=engine, directory=Directory(engine), ingestor=knowledge.ingestor)
        assert out["documents"] > 0 and not out["errors"]
        assert knowledge.embedder.misses == 0, (
            f"{knowledge.embedder.misses} sample passages are not in knowledge/{SAMPLE_EMBEDDINGS}: "
            "the sample knowledge changed; run `make sample-embeddings` and commit the file")
    finally:
        knowledge.close()
        engine.dispose()
