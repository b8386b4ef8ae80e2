"""Browser tests: Playwright for Python driving Debian's chromium (`make setup-test` installs it; Playwright's own
browser download does not work offline). Without /usr/bin/chromium every test here skips and says why.

Screenshots go to test-output/screenshots/ (kept out of git), named by the test that took them.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"]


@pytest.fixture(scope="module")
def chromium():
    """One headless chromium per test module; each test opens its own context (cookies, viewport, locale). Not one per
    session: Playwright's sync API runs an event loop while it is open, and the asyncio tests that follow the browser
    modules need none running."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: `make setup-test` installs Debian's chromium (needs root and the package registry)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def shot(request):
    """`shot(page, "knowledge")` saves a full-page PNG under test-output/screenshots/ and returns its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@contextmanager
def serving(env: dict, log: Path, *, timeout: float = 180.0):
    """`copilot serve` (sync, for Playwright's sync API) on a free port with `env`; yields its base URL once /readyz
    answers 200, then stops it (SIGINT, as Ctrl-C). Its output goes to `log`, shown when it does not start."""
    from tests.conftest import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not _ready(base):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.2)
            yield base
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
