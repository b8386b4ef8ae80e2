"""A wheel built from pyproject.toml carries everything the product needs at run time (the web chat page, the
migrations, the prompts): installed into a fresh venv, `copilot --help`, `--version`, `doctor` and `serve` work
from a directory outside the checkout, without the sample knowledge (which stays in the source tree).

The fresh venv reaches the dependencies through a .pth line to this venv's site-packages (nothing is downloaded);
the wheel itself is installed with --no-deps, so its own files come first, and the editable install of the checkout
is not activated there (its finder is set up by a .pth file that only this venv's own site-packages runs)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow


def _sources(dst: Path) -> Path:
    """The checkout's files (tracked or new, not ignored) copied to `dst`: the build never writes into the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            src = REPO / name
            if src.is_file():
                (dst / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst / name)
    else:  # not a git checkout
        shutil.copytree(REPO, dst, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".venv", ".git", "data", ".cache", "build", "dist", "*.egg-info", "__pycache__"))
    return dst


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _sources(tmp / "src")
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("sales_copilot-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_deps_from_dev_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]

    work = tmp / "elsewhere"  # outside the checkout: nothing can be imported from the cwd
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPILOT_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(COPILOT_DATA_DIR=str(tmp / "data"), COPILOT_CONFIG=str(tmp / "absent.toml"), PYTHONDONTWRITEBYTECODE="1")
    return {"venv": venv, "py": py, "site": site, "copilot": venv / "bin" / "copilot", "cwd": work, "env": env, "wheel": wheel}


def run(inst: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(inst["copilot"]), *args], cwd=inst["cwd"], env=inst["env"], capture_output=True, text=True, timeout=timeout)


def test_the_wheel_carries_the_web_page_the_migrations_and_the_prompts(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for needed in ("connectors/local/web/index.html", "connectors/local/web/chat.js", "connectors/local/web/chat.css",
                   "connectors/local/web/marked.min.js", "connectors/local/web/purify.min.js", "migrations/alembic.ini", "migrations/env.py", "migrations/script.py.mako",
                   "migrations/versions/0001_initial.py", "prompts/answer.md", "prompts/route.md"):
        assert needed in names, needed
    assert any(n.startswith("prompts/") and n.endswith(".toml") for n in names)
    assert not any(n.startswith(("knowledge/", "tests/")) for n in names)


def test_the_installed_wheel_not_the_checkout_is_imported(installed):
    out = subprocess.run([str(installed["py"]), "-c", "import bot.cli, prompts, migrations, connectors.local, bot.settings as s; "
                          "print(bot.cli.__file__); print(prompts.__file__); print(migrations.__file__); "
                          "print(connectors.local.__file__); print(s.Settings().prompts_dir)"],
                         cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert Path(line).resolve().is_relative_to(installed["site"].resolve()), line


def test_help_and_version(installed):
    out = run(installed, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage: copilot" in out.stdout and "serve" in out.stdout and "doctor" in out.stdout
    out = run(installed, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"copilot (sales-copilot) {version('sales-copilot')}", out


def test_doctor_prints_its_checks(installed):
    out = run(installed, "doctor")
    assert out.returncode in (0, 1), out.stderr[-3000:]  # 1: an empty knowledge base is a finding, not a crash
    assert "Traceback" not in out.stdout + out.stderr
    checks = [line for line in out.stdout.splitlines() if line.startswith(("✓", "✗"))]
    assert len(checks) >= 3, out.stdout
    assert any("database" in line.lower() for line in checks), out.stdout


def test_serve_starts_empty_without_the_sample_knowledge_and_serves_the_web_chat(installed):
    port = free_port()
    proc = subprocess.Popen([str(installed["copilot"]), "serve", "--port", str(port)], cwd=installed["cwd"],
                            env={**installed["env"], "COPILOT_DATA_DIR": str(installed["cwd"] / "serve-data")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = None
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as p:
                            page = p.read().decode()
                        break
            except OSError:
                time.sleep(0.2)
        assert page and "<html" in page.lower() and 'name="password"' in page  # / sends a stranger to the sign-in page
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read()
        proc.wait(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert "Starting with an empty knowledge base" in err and "/login?token=" in err, err[-3000:]  # and a one-time admin link
    assert "Traceback" not in err
