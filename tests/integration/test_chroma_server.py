"""COPILOT_CHROMA_URL: every process of a deployment shares one Chroma server (started here with `chroma run`)
instead of an embedded store of its own; the embedded store stays the default."""
from __future__ import annotations

import pytest

from rag.retrieve import Viewer
from tests.conftest import free_port
from tests.fakes.services import chroma_server, pg_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
QUESTION = "星图软件的实施周期一般多长？"


def test_two_processes_share_the_vectors_of_one_chroma_server(make_settings, make_app, tmp_path):
    with chroma_server(tmp_path / "chroma-server", free_port()) as url, pg_database() as db:
        a = make_app(make_settings(data_dir=tmp_path / "a", chroma_url=url, database_url=db))  # loads the samples: their vectors go to the server
        n = a.knowledge.vectors.count()
        assert n > 0 and not a.knowledge.vectors.broken
        b = make_app(make_settings(data_dir=tmp_path / "b", chroma_url=url, database_url=db))  # another process, another data dir
        assert not b.needs_samples() and b.knowledge.vectors.count() == n
        hits = b.knowledge.retriever.search(QUESTION, Viewer("default", "rep"), mode="dense")
        assert hits and hits[0].doc_id == "bc-xingtu"
        assert not (tmp_path / "a" / "chroma").exists() and not (tmp_path / "b" / "chroma").exists()  # nothing embedded
    # the server is gone: the copilot keeps answering from keyword search and says why
    c = make_app(make_settings(data_dir=tmp_path / "c", chroma_url=url))
    assert url in c.knowledge.vectors.broken


def test_dense_search_comes_back_when_the_chroma_server_restarts(make_settings, make_app, tmp_path):
    """The server stops under a running copilot (a restart): answers come from keyword search meanwhile, and once it is
    back on its data the copilot reads it again by itself (no `kb rebuild`, no restart of the copilot)."""
    path, port = tmp_path / "chroma-server", free_port()
    viewer = Viewer("default", "rep")
    with chroma_server(path, port) as url:
        cp = make_app(make_settings(chroma_url=url))  # its samples' vectors go to the server
        assert cp.knowledge.retriever.search(QUESTION, viewer, mode="dense")[0].doc_id == "bc-xingtu"
    assert cp.knowledge.retriever.search(QUESTION, viewer, mode="dense") == [] and cp.knowledge.vectors.broken
    assert cp.knowledge.retriever.search(QUESTION, viewer)[0].doc_id == "bc-xingtu"  # keyword search answers meanwhile
    with chroma_server(path, port):
        cp.knowledge.vectors._reopen_at = 0.0  # rather than waiting out REOPEN_SECONDS
        hits = cp.knowledge.retriever.search(QUESTION, viewer, mode="dense")
        assert hits and hits[0].doc_id == "bc-xingtu" and not cp.knowledge.vectors.broken
