"""Shared fixtures. Tiers: tests/unit (no server), tests/integration (real servers on loopback).

The bundled knowledge is embedded once per machine into .cache/test-embeddings.db (keyed on
content hash), so every test that ingests it after the first costs a lookup, not a model run.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bench.load import free_port  # noqa: F401  (tests import it from here)

for _k in [k for k in os.environ if k.startswith("COPILOT_")]:
    del os.environ[_k]  # a developer's own settings must not leak into the tests

REPO = Path(__file__).resolve().parents[1]
EMBED_CACHE = REPO / ".cache" / "test-embeddings.db"
KNOWLEDGE = REPO / "knowledge"


@pytest.fixture
def make_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("COPILOT_CONFIG", str(tmp_path / "absent.toml"))
    from bot.settings import Settings

    def make(**kw):
        base = dict(data_dir=tmp_path / "data", embed_cache=EMBED_CACHE, rate_limit_per_minute=6000, retry_base_seconds=0.05,
                    lease_seconds=5.0, address_requests_per_minute=6000, person_requests_per_minute=6000)
        base.update(kw)
        return Settings(**base)

    return make


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture(scope="session")
def kb(tmp_path_factory):
    """A read-only copilot over the bundled knowledge and sample reps, shared by the session."""
    from bot.app import build_app
    from bot.settings import Settings

    os.environ["COPILOT_CONFIG"] = str(tmp_path_factory.mktemp("cfg") / "absent.toml")
    cp = build_app(Settings(data_dir=tmp_path_factory.mktemp("kb"), embed_cache=EMBED_CACHE))
    summary = cp.load_samples()
    assert not summary["errors"], summary["errors"]
    yield cp
    cp.close()
    os.environ.pop("COPILOT_CONFIG", None)  # test_cli may have removed it already


# the settings that shape what loading the samples stores; any other setting may differ from the template's
SAMPLE_SHAPING = ("tenant", "timezone", "knowledge_dir", "knowledge_data_dirs", "embed_model", "embed_cache", "database_url",
                  "chroma_url")


def _shape(settings) -> tuple:
    return tuple(str(getattr(settings, k, "")) for k in SAMPLE_SHAPING) + tuple(
        f"{k}={v}" for k, v in sorted(settings.model_dump().items()) if k.startswith(("chunk", "embed_", "index_")))


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """`copy(settings)`: fill a new data dir with the sample people, CRM and knowledge loaded once per run (the first
    test that needs them loads them through the real path; later ones get a copy of that data dir). Only for settings
    that store the samples as the template does; otherwise nothing is copied and the samples are loaded again."""
    import shutil

    templates: dict[tuple, Path] = {}

    def copy(settings, build) -> bool:
        target = Path(settings.data_dir)
        if target.exists() or settings.database_url.get_secret_value() or settings.chroma_url:
            return False
        key = _shape(settings)
        if key not in templates:
            template = tmp_path_factory.mktemp("samples") / "data"
            cp = build(settings.model_copy(update={"data_dir": template}))
            summary = cp.load_samples()
            cp.close()
            if summary.get("errors"):
                return False
            templates[key] = template
        shutil.copytree(templates[key], target)
        return True

    return copy


@pytest.fixture
def make_app(settings, sample_data):
    """Build a copilot (bot.app.build_app) with the sample people, CRM and knowledge (copied from a data dir loaded once
    per run when the settings allow it); closed after the test."""
    from bot.app import build_app

    built = []

    def make(app_settings=None, **kw):
        chosen = app_settings or settings
        sample_data(chosen, build_app)
        cp = build_app(chosen, **kw)
        built.append(cp)
        if cp.needs_samples():
            cp.load_samples()
        return cp

    yield make
    for cp in built:
        cp.close()


@pytest.fixture
def copilot(make_app):
    return make_app()


@pytest.fixture
async def gateway(copilot, aiohttp_client):
    """The real app on a loopback port, with the bundled knowledge and sample reps."""
    from bot.web.gateway import create_web_app

    client = await aiohttp_client(create_web_app(copilot))
    client.copilot = copilot
    return client


PASSWORD = "test-password-1"  # what `login` sets for the person it signs in


async def sign_in(client, username: str, password: str = PASSWORD, *, token: str = "") -> None:
    """Sign `client` (an aiohttp TestClient, or a ClientSession with a base_url and a cookie jar that keeps cookies for
    127.0.0.1) in through the /login form, as a browser does; its later requests carry the session's CSRF token."""
    import re

    r = await client.get("/login", params={"token": token} if token else None)
    page = await r.text()
    assert r.status == 200, page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = {"csrf": csrf, "token": token} if token else {"csrf": csrf, "username": username, "password": password}
    r = await client.post("/login", data=form, allow_redirects=False)
    assert r.status == 303, await r.text()
    r = await client.get("/api/me")
    assert r.status == 200, await r.text()
    session = getattr(client, "session", client)  # a TestClient wraps its ClientSession
    session.headers["X-CSRF-Token"] = (await r.json())["csrf"]


@pytest.fixture
def login_to(aiohttp_client):
    """`client = await login_to(server_client, cp, "zhangwei")`: a new client of that test server, signed in as the
    person through the /login form after `copilot user add`'s path gave them a password: what a browser does."""
    async def make(server_client, cp, rep_id: str):
        role = cp.directory.get(cp.settings.tenant, rep_id).role
        await asyncio.to_thread(cp.auth.add_user, rep_id, role, cp.settings.tenant, PASSWORD)
        client = await aiohttp_client(server_client.server)
        await sign_in(client, rep_id)
        return client

    return make


@pytest.fixture
def login(gateway, login_to):
    """`client = await login("zhangwei")`: a new client of the `gateway` fixture's server, signed in as that person."""
    return lambda rep_id: login_to(gateway, gateway.copilot, rep_id)


def user_add(env: dict, name: str, role: str, password: str = PASSWORD) -> str:
    """`copilot user add NAME --role ROLE --password-stdin` on the data dir of `env` (a server may be running on it)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bot.cli", "user", "add", name, "--role", role, "--password-stdin"], env=env,
                          input=password + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


async def web_session(base: str, name: str, password: str = PASSWORD, *, token: str = ""):
    """An aiohttp ClientSession on a running `copilot serve` at `base`, signed in as `name` (close it after use)."""
    import aiohttp

    session = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: keep cookies for 127.0.0.1
    try:
        await sign_in(session, name, password, token=token)
    except BaseException:
        await session.close()
        raise
    return session


async def start_serve(env: dict, port: int, *, demo: bool = True):
    """`copilot serve` as a real subprocess on `port`, returned once /readyz answers 200. `demo`: with the sample
    people and knowledge, as `make run` has them."""
    import sys

    import aiohttp

    env = {"COPILOT_DEMO": "true", **env} if demo else env
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "serve", "--port", str(port),
                                                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError((await proc.stderr.read()).decode()[-3000:])
            try:
                async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("copilot did not start")


async def stop_serve(proc, grace: float = 20.0) -> None:
    """Stop a `copilot serve` subprocess if it still runs: SIGTERM (it finishes what it holds), then SIGKILL after
    `grace` seconds; never waits for ever (a process stuck on a full pipe or a dead database would hang the suite)."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except asyncio.TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


def serve_env(tmp_path: Path, model_url: str, **settings: str) -> dict:
    """The environment of a `copilot serve` subprocess: its own data dir, the shared embedding cache, no config
    file, the model at `model_url`, and more COPILOT_* `settings`."""
    return {**os.environ, "COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_EMBED_CACHE": str(EMBED_CACHE),
            "COPILOT_CONFIG": str(tmp_path / "absent.toml"), "COPILOT_LLM_BASE_URL": model_url, **settings}


async def ask_until_in_flight(env: dict, base: str, body: dict, arrived: asyncio.Event) -> None:
    """zhangwei (given a password) asks `body` in the web chat of the server at `base`; returns once the model
    got the call (`arrived`): a worker is then inside the message."""
    await asyncio.to_thread(user_add, env, "zhangwei", "rep")
    async with await web_session(base, "zhangwei") as s:
        async with s.post(base + "/api/chat", json=body) as r:
            assert r.status == 202
    await asyncio.wait_for(arrived.wait(), 60)


async def replies_for(client, conversation: str, n: int = 1, timeout: float = 30.0) -> list[dict]:
    """Wait until `n` replies have arrived in a web-chat conversation; return all of them."""
    got: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        after = got[-1]["id"] if got else 0
        r = await client.get("/api/replies", params={"conversation": conversation, "after": after, "wait": str(min(left, 5))})
        assert r.status == 200
        got += (await r.json())["replies"]
    return got
