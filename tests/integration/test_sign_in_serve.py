"""The web edge's attacks against a real `copilot serve` subprocess: a chat without a session, a forged "as",
another person's replies, a text/plain or cross-site POST, a wrong password, throttling, the first start's
one-time admin link (once), and a public address without sign-in configured."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import aiohttp
import pytest

from tests.conftest import EMBED_CACHE, PASSWORD, free_port, replies_for, sign_in, start_serve, user_add, web_session

pytestmark = pytest.mark.slow

QUESTION = "折扣审批的底价是多少？"


def environment(tmp_path) -> dict:
    return {**os.environ, "COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_EMBED_CACHE": str(EMBED_CACHE),
            "COPILOT_CONFIG": str(tmp_path / "absent.toml")}


async def one_time_link(proc: asyncio.subprocess.Process) -> str:
    """The sign-in link `copilot serve` printed (on stderr, before it listened)."""
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "".join(seen)
        seen.append(line)
        if m := re.search(r"(http://\S+/login\?token=\S+)", line):
            return m.group(1)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def test_the_web_edge_of_a_real_server(tmp_path):
    env, port = environment(tmp_path), free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_serve(env, port)  # demo mode: the sample people and knowledge
    try:
        link = await one_time_link(proc)
        assert link.startswith(base + "/login?token=")
        async with aiohttp.ClientSession(base_url=base) as anonymous:
            # no session: refused, nothing stored
            r = await anonymous.post("/api/chat", json={"as": "lina", "text": QUESTION})
            assert r.status == 401
            r = await anonymous.get("/api/replies", params={"conversation": "web-lina", "wait": "0"})
            assert r.status == 401
            assert (await anonymous.get("/api/users")).status == 401
            r = await anonymous.get("/", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login"

        # the one-time admin link signs in once; in demo mode that admin may look through a sample person's eyes
        token = link.split("token=", 1)[1]
        admin = await web_session(base, "", token=token)
        try:
            me = await (await admin.get("/api/me")).json()
            assert me["role"] == "admin" and any(p["id"] == "zhangwei" for p in me["people"])
            r = await admin.post("/api/switch", json={"person": "zhangwei"})
            assert r.status == 200
            assert (await (await admin.get("/api/me")).json())["id"] == "zhangwei"
        finally:
            await admin.close()
        async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as again:
            r = await again.get("/login", params={"token": token})
            assert r.status == 410

        await asyncio.to_thread(user_add, env, "zhangwei", "rep")
        await asyncio.to_thread(user_add, env, "lina", "manager")
        zhangwei, lina = await web_session(base, "zhangwei"), await web_session(base, "lina")
        try:
            # "as" is ignored: the message is zhangwei's, answered in zhangwei's conversation
            r = await zhangwei.post("/api/chat", json={"as": "lina", "text": QUESTION, "conversation": "price", "id": "p1"})
            assert r.status == 202
            [reply] = await replies_for(zhangwei, "price")
            assert reply["reply"]["text"]
            # lina reads neither zhangwei's nudge conversation nor, under the same name, his "price"
            assert (await lina.get("/api/replies", params={"conversation": "web-zhangwei", "wait": "0"})).status == 403
            r = await lina.get("/api/replies", params={"conversation": "price", "wait": "0"})
            assert r.status == 200 and (await r.json())["replies"] == []
            # text/plain and cross-site posts are refused
            r = await zhangwei.post("/api/chat", data=json.dumps({"text": QUESTION, "id": "p2"}), headers={"Content-Type": "text/plain"})
            assert r.status == 415
            r = await zhangwei.post("/api/chat", json={"text": QUESTION, "id": "p3"}, headers={"Origin": "https://evil.example"})
            assert r.status == 403
        finally:
            await zhangwei.close()
            await lina.close()

        # a wrong password, then the account is throttled (even for the right one)
        async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as guesser:
            page = await (await guesser.get("/login")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            codes = []
            while 429 not in codes and len(codes) < 8:  # 5 a minute per account (one used by lina's sign-in above)
                r = await guesser.post("/login", data={"csrf": csrf, "username": "lina", "password": "wrong-password"}, allow_redirects=False)
                codes.append(r.status)
                assert r.status == 429 or "用户名或密码错误" in await r.text()
            assert codes[-1] == 429 and 3 <= codes.count(401) <= 5, codes
            r = await guesser.post("/login", data={"csrf": csrf, "username": "lina", "password": PASSWORD}, allow_redirects=False)
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            with pytest.raises(AssertionError):
                await sign_in(guesser, "lina")
    finally:
        await stop(proc)
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'copilot.db'}")
    with engine.connect() as c:
        payloads = [json.loads(p) for (p,) in c.execute(text("SELECT payload FROM inbox")).all()]
    engine.dispose()
    assert [p["sender_id"] for p in payloads] == ["zhangwei"]  # one message, zhangwei's; nothing stored as lina


async def test_a_public_address_without_sign_in_is_refused(tmp_path):
    env, port = environment(tmp_path), free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "serve", "--host", "0.0.0.0", "--port", str(port),
                                                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    err = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    assert await proc.wait() == 2, err
    assert "refusing to listen on 0.0.0.0: sign-in is not configured" in err and "copilot user add admin" in err
    assert "Traceback" not in err

    out = await asyncio.to_thread(user_add, env, "admin", "admin")  # an admin with a password: sign-in is configured
    assert "password set" in out
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "serve", "--host", "0.0.0.0", "--port", str(port),
                                                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]
                try:
                    async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        await stop(proc)
        err = (await proc.stderr.read()).decode()
        assert "login?token=" not in err  # no one-time link once an admin has a password
    finally:
        await stop(proc)
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'copilot.db'}")
    with engine.connect() as c:
        people = [r for (r,) in c.execute(text("SELECT id FROM rep")).all()]
    engine.dispose()
    assert people == ["admin"]  # not demo mode: no sample people
