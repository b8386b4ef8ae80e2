"""The `copilot` command as a user runs it: exit codes, one-line errors, JSON shapes, batch mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import EMBED_CACHE


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")},
           "COPILOT_DATA_DIR": str(data / "data"), "COPILOT_EMBED_CACHE": str(EMBED_CACHE), "COPILOT_CONFIG": str(data / "absent.toml")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, input=stdin, timeout=300)

    run.data = data
    from bot.app import build_app
    from bot.settings import Settings

    os.environ["COPILOT_CONFIG"] = str(data / "absent.toml")
    cp = build_app(Settings(data_dir=data / "data", embed_cache=EMBED_CACHE))
    cp.load_samples()
    cp.close()
    del os.environ["COPILOT_CONFIG"]
    return run


def test_usage_errors_exit_2_with_one_line(run):
    for args in (["search"], ["ask", "x", "--batch", "f.jsonl"], ["search", "x", "--as", "nobody"], ["frobnicate"],
                 ["reps", "add", "x", "--name", "X", "--role", "emperor"], ["ingest", "/no/such/path"], ["search", "x", "-k", "0"]):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_help_everywhere(run):
    for args in ([], ["--help"], ["kb", "--help"], ["reps", "--help"], ["crm", "--help"], ["search", "--help"]):
        r = run(*args)
        assert r.returncode == 0 and "Usage" in r.stdout, args


def test_search_and_ask_json(run):
    r = run("search", "星图 实施周期", "--as", "zhangwei", "-k", "3", "--json")
    hits = json.loads(r.stdout)
    assert r.returncode == 0 and len(hits) == 3 and len({h["doc_id"] for h in hits}) == 3
    assert set(hits[0]) >= {"doc_id", "title", "chunk_id", "score", "snippet", "source", "version"}
    r = run("ask", "今天天气怎么样？", "--json")
    out = json.loads(r.stdout)
    assert out["grounded"] is False and out["citations"] == []
    r = run("ask", "蓝海支持 UDI 吗？", "--as", "zhangwei", "--json")
    out = json.loads(r.stdout)
    assert out["grounded"] and out["citations"][0]["doc_id"] in ("prod-quality-trace", "bc-lanhai")


def test_batch_mode_reports_bad_lines_without_aborting(run):
    batch = run.data / "q.jsonl"
    batch.write_text('{"id": "a", "q": "星图的价格区间", "as": "zhangwei"}\nnot json\n{"id": "c", "q": "x", "as": "ghost"}\n'
                     '{"id": "d", "q": "NorthPeak pricing"}\n', encoding="utf-8")
    r = run("search", "--batch", str(batch), "-k", "2")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 0 and [x["id"] for x in lines] == ["a", 2, "c", "d"]
    assert len(lines[0]["hits"]) == 2 and "error" in lines[1] and "ghost" in lines[2]["error"] and lines[3]["hits"]
    r = run("ask", "--batch", str(batch))
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert set(lines[0]) == {"id", "answer", "citations", "grounded"} and "error" in lines[1]


def test_reps_and_kb_versions(run):
    assert run("reps", "add", "wangwu", "--name", "王五", "--role", "rep", "--team", "华东区").returncode == 0
    people = json.loads(run("reps", "list", "--json").stdout)
    assert any(p["id"] == "wangwu" and "console:wangwu" in p["identities"] for p in people)
    r = run("kb", "versions", "bc-xingtu", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["status"] == "live"
    assert run("kb", "versions", "no-such-doc").returncode == 2
    rep = json.loads(run("kb", "report", "--json").stdout)
    flagged = {r["doc_id"]: r["flags"] for r in rep}
    assert "expired" in flagged["pricing-q3-promo"] and any("not updated" in f for f in flagged["faq-implementation"])


def test_doctor_names_problems(run):
    r = run("doctor")
    assert "✓ database" in r.stdout and "knowledge index" in r.stdout
