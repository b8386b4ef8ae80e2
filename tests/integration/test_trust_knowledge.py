"""Knowledge is only knowledge: `copilot ingest knowledge/` never takes the CRM exports (or any data folder)
as documents, so `copilot search` cannot hand anyone the contacts table; a CSV that looks like a CRM export
is refused with a reason wherever it comes from."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import EMBED_CACHE, KNOWLEDGE


def test_ingesting_the_knowledge_folder_leaves_the_crm_out(tmp_path):
    kn = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE / "faq", kn / "faq")
    shutil.copytree(KNOWLEDGE / "crm", kn / "crm")
    (kn / "eval").mkdir()
    (kn / "eval" / "questions.md").write_text("# 评测\n王建国的电话是 13800138001。\n", encoding="utf-8")
    (kn / "private").mkdir()
    (kn / "private" / "deals.md").write_text("# 内部\n星图报价 13800138009。\n", encoding="utf-8")
    (kn / "faq" / "leads.csv").write_text("客户,联系人,手机\n华东医疗,王建国,13800138001\n", encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")},
           "COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_EMBED_CACHE": str(EMBED_CACHE),
           "COPILOT_CONFIG": str(tmp_path / "x.toml"), "COPILOT_KNOWLEDGE_DATA_DIRS": json.dumps(["crm", "eval", str(kn / "private")])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=300)

    ingested = run("ingest", str(kn), "--json")
    results = [json.loads(line) for line in ingested.stdout.splitlines() if line.strip()]
    names = {r["name"] for r in results}
    assert not any(n.startswith(("crm/", "eval/", "private/")) for n in names), names
    refused = {r["name"]: r for r in results if r["status"] == "error"}
    assert set(refused) == {"faq/leads.csv"} and "CRM export" in refused["faq/leads.csv"]["reason"]
    assert ingested.returncode == 1  # one file refused, said why
    assert any(r["status"] != "error" for r in results)  # the documents went in

    found = run("search", "王建国 电话", "--json", "-k", "20")
    assert found.returncode == 0, found.stderr
    text = found.stdout
    assert "13800138001" not in text and "wangjianguo@" not in text and "13800138009" not in text

    # named explicitly, a file in a data folder is refused with the reason, not ingested
    direct = run("ingest", str(kn / "crm" / "contacts.csv"), "--json")
    [r] = [json.loads(line) for line in direct.stdout.splitlines() if line.strip()]
    assert r["status"] == "error" and "data" in r["reason"] and direct.returncode == 1


def test_a_crm_export_upload_is_refused_with_a_reason():
    from rag.datafiles import crm_export_reason

    assert crm_export_reason(b"id,account_id,name,title,email,phone,language\n", "export.csv")
    assert crm_export_reason("客户,联系人,手机\n".encode("gb18030"), "线索.csv")
    assert crm_export_reason(b"plan,price,seats\npro,100,5\n", "pricing.csv") is None
    assert crm_export_reason(b"email,phone\n", "notes.md") is None  # only tables are checked
