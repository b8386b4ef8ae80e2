"""Sign-in and the web edge, attacked through a real loopback server: identity comes from the signed-in session,
never from a field; another person's conversation is out of reach; only this site's pages, with the session's
CSRF token and a JSON body sent as JSON, can change anything; sign-in is throttled; a one-time link works once.
(The same attacks against a `copilot serve` subprocess: test_sign_in_serve.py.)"""
from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import parse_qs, urlsplit

from tests.conftest import PASSWORD, replies_for, sign_in

QUESTION = "折扣审批的底价是多少？"


def inbox_total(cp) -> int:
    return sum(cp.inbox.counts().values())


async def test_a_chat_without_a_session_is_refused_and_nothing_is_stored(gateway):
    r = await gateway.post("/api/chat", json={"as": "lina", "text": QUESTION})
    assert r.status == 401 and "sign in" in (await r.json())["error"]
    r = await gateway.get("/api/replies", params={"conversation": "web-lina"})
    assert r.status == 401
    r = await gateway.get("/", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
    assert inbox_total(gateway.copilot) == 0


async def test_the_sender_is_the_signed_in_person_and_as_is_ignored(gateway, login):
    zhangwei = await login("zhangwei")
    r = await zhangwei.post("/api/chat", json={"as": "lina", "sender": "lina", "text": QUESTION, "conversation": "c1", "id": "m1"})
    assert r.status == 202, await r.text()
    row = gateway.copilot.inbox.get((await r.json())["inbox_id"])
    stored = json.loads(row.payload)
    assert stored["sender_id"] == "zhangwei" and stored["sender_name"] == "张伟"
    [reply] = await replies_for(zhangwei, "c1")
    assert reply["reply"]["text"]


async def test_another_persons_conversations_are_out_of_reach(gateway, login):
    zhangwei, lina = await login("zhangwei"), await login("lina")
    r = await zhangwei.post("/api/chat", json={"text": "/help", "conversation": "shared-name", "id": "z1"})
    assert r.status == 202
    assert len(await replies_for(zhangwei, "shared-name")) == 1
    # the nudge conversation of someone else: refused, to read and to write
    r = await lina.get("/api/replies", params={"conversation": "web-zhangwei", "wait": "0"})
    assert r.status == 403
    r = await lina.post("/api/chat", json={"text": "hi", "conversation": "web-zhangwei", "id": "l0"})
    assert r.status == 403
    # the same conversation name is lina's own: empty, not zhangwei's
    r = await lina.get("/api/replies", params={"conversation": "shared-name", "wait": "0"})
    assert r.status == 200 and (await r.json())["replies"] == []
    # nor can lina pre-empt zhangwei's next message by taking its id first
    r = await lina.post("/api/chat", json={"text": "/help", "conversation": "x", "id": "z2"})
    assert r.status == 202
    r = await zhangwei.post("/api/chat", json={"text": "/help", "conversation": "shared-name", "id": "z2"})
    assert r.status == 202 and (await r.json())["duplicate"] is False


async def test_the_user_list_is_gone(gateway, login):
    zhangwei = await login("zhangwei")
    assert (await zhangwei.get("/api/users")).status == 404
    me = await (await zhangwei.get("/api/me")).json()
    assert me["id"] == "zhangwei" and me["role"] == "rep" and "people" not in me


async def test_a_text_plain_post_is_refused(gateway, login):
    zhangwei = await login("zhangwei")
    before = inbox_total(gateway.copilot)
    body = json.dumps({"text": QUESTION, "conversation": "tp", "id": "tp1"})
    r = await zhangwei.post("/api/chat", data=body, headers={"Content-Type": "text/plain"})
    assert r.status == 415 and "application/json" in (await r.json())["error"]
    assert inbox_total(gateway.copilot) == before


async def test_a_cross_site_request_is_refused(gateway, login):
    zhangwei = await login("zhangwei")
    before = inbox_total(gateway.copilot)
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Referer": "https://evil.example/page"},
                    {"Sec-Fetch-Site": "cross-site"}):
        r = await zhangwei.post("/api/chat", json={"text": QUESTION, "conversation": "xs", "id": "xs1"}, headers=headers)
        assert r.status == 403 and "cross-site" in (await r.json())["error"], headers
    own = str(zhangwei.make_url("/")).rstrip("/")
    r = await zhangwei.post("/api/chat", json={"text": "/help", "conversation": "xs", "id": "xs2"}, headers={"Origin": own})
    assert r.status == 202
    assert inbox_total(gateway.copilot) == before + 1


async def test_a_state_change_needs_the_sessions_csrf_token(gateway, login):
    zhangwei, lina = await login("zhangwei"), await login("lina")
    lina_token = lina.session.headers["X-CSRF-Token"]
    for token in ("", "forged", lina_token):
        r = await zhangwei.post("/api/chat", json={"text": "/help", "id": "c1"}, headers={"X-CSRF-Token": token})
        assert r.status == 403 and "CSRF" in (await r.json())["error"]


async def test_a_wrong_password_is_refused_in_the_browsers_language(gateway, login, aiohttp_client):
    await login("zhangwei")  # zhangwei has a password
    for lang, text in (("en-US,en;q=0.9", "Wrong username or password."), ("zh-CN,zh;q=0.9", "用户名或密码错误。")):
        client = await aiohttp_client(gateway.server, headers={"Accept-Language": lang})
        page = await (await client.get("/login")).text()
        assert 'name="username"' in page and 'name="password"' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        for who in ("zhangwei", "nobody"):
            r = await client.post("/login", data={"csrf": csrf, "username": who, "password": "wrong-password"}, allow_redirects=False)
            assert r.status == 401 and text in await r.text()
        assert (await client.get("/api/me")).status == 401


async def test_the_sign_in_form_needs_its_csrf_token(gateway, login, aiohttp_client):
    await login("zhangwei")
    client = await aiohttp_client(gateway.server)
    r = await client.post("/login", data={"csrf": "x", "username": "zhangwei", "password": PASSWORD}, allow_redirects=False)
    assert r.status == 403  # no form cookie: a page elsewhere cannot sign a visitor in as someone else
    r = await client.post("/login", json={"username": "zhangwei", "password": PASSWORD}, allow_redirects=False)
    assert r.status == 415
    assert (await client.get("/api/me")).status == 401


async def test_sign_in_is_throttled_per_account(gateway, login, aiohttp_client):
    await login("zhangwei")  # one attempt of the 5 a minute
    client = await aiohttp_client(gateway.server)
    page = await (await client.get("/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    codes = []
    for password in ["wrong-password"] * 5 + [PASSWORD]:
        r = await client.post("/login", data={"csrf": csrf, "username": "zhangwei", "password": password}, allow_redirects=False)
        codes.append(r.status)
    assert codes == [401, 401, 401, 401, 429, 429]  # even the right password waits
    assert int(r.headers["Retry-After"]) >= 1
    lina = await login("lina")  # another account is not held up
    assert (await lina.get("/api/me")).status == 200


async def test_sign_in_is_throttled_per_client_address(gateway, aiohttp_client):
    client = await aiohttp_client(gateway.server)
    page = await (await client.get("/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    codes = []
    while 429 not in codes and len(codes) < 60:  # 30 at once, then one every 2 s: each guess at a new account
        r = await client.post("/login", data={"csrf": csrf, "username": f"guess{len(codes)}", "password": "123456789"}, allow_redirects=False)
        codes.append(r.status)
    assert codes[-1] == 429 and set(codes[:30]) == {401}, codes
    r = await client.post("/login", data={"csrf": csrf, "username": "lina", "password": PASSWORD}, allow_redirects=False)
    assert r.status == 429  # this address waits, whichever account it tries


async def test_after_sign_in_the_browser_is_back_on_the_page_it_asked_for_and_never_on_another_site(gateway, aiohttp_client):
    await asyncio.to_thread(gateway.copilot.auth.add_user, "chenjing", "enablement", gateway.copilot.settings.tenant, PASSWORD)

    async def sign_in_from(next_value: str | None) -> str:
        browser = await aiohttp_client(gateway.server)
        if next_value is None:  # opening a console page without a session: to the form, which remembers the page
            r = await browser.get("/console/knowledge?filter=stale", headers={"Accept": "text/html"}, allow_redirects=False)
            to = urlsplit(r.headers["Location"])
            assert r.status == 303 and to.path == "/login" and parse_qs(to.query)["next"] == ["/console/knowledge?filter=stale"]
            page = await (await browser.get(r.headers["Location"])).text()
        else:
            page = await (await browser.get("/login", params={"next": next_value})).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        then = re.search(r'name="next" value="([^"]*)"', page).group(1)
        r = await browser.post("/login", data={"csrf": csrf, "username": "chenjing", "password": PASSWORD, "next": then},
                               allow_redirects=False)
        assert r.status == 303
        return r.headers["Location"]

    assert await sign_in_from(None) == "/console/knowledge?filter=stale"
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):  # 5 sign-ins: the account's limit
        assert await sign_in_from(elsewhere) == "/", elsewhere


async def test_the_one_time_link_works_once(gateway, aiohttp_client):
    cp = gateway.copilot
    token = await asyncio.to_thread(cp.auth.one_time_token, cp.settings.tenant, "admin")
    first = await aiohttp_client(gateway.server)
    await sign_in(first, "", token=token)
    assert (await (await first.get("/api/me")).json())["id"] == "admin"
    second = await aiohttp_client(gateway.server)
    r = await second.get("/login", params={"token": token})
    assert r.status == 410
    page = await (await second.get("/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = await second.post("/login", data={"csrf": csrf, "token": token}, allow_redirects=False)
    assert r.status == 410 and (await second.get("/api/me")).status == 401


async def test_an_expired_one_time_link_is_refused(gateway, aiohttp_client):
    import time

    cp = gateway.copilot
    token = await asyncio.to_thread(cp.auth.one_time_token, cp.settings.tenant, "admin", time.time() - 16 * 60)
    r = await (await aiohttp_client(gateway.server)).get("/login", params={"token": token})
    assert r.status == 410


async def test_sign_out_ends_the_session_everywhere(gateway, login, aiohttp_client):
    zhangwei = await login("zhangwei")
    cookie = zhangwei.session.cookie_jar.filter_cookies(zhangwei.make_url("/"))["copilot_session"].value
    token = zhangwei.session.headers["X-CSRF-Token"]
    r = await zhangwei.post("/logout", data={"csrf": token}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
    replay = await aiohttp_client(gateway.server, cookies={"copilot_session": cookie})
    assert (await replay.get("/api/me")).status == 401  # the stolen cookie is void too


async def test_the_session_cookie_is_httponly_and_samesite(gateway, login, aiohttp_client):
    await login("zhangwei")
    client = await aiohttp_client(gateway.server)
    page = await (await client.get("/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = await client.post("/login", data={"csrf": csrf, "username": "zhangwei", "password": PASSWORD}, allow_redirects=False)
    header = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("copilot_session="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header  # http on loopback


async def test_the_admin_api_takes_an_admin_session_with_csrf_or_the_bearer_token(make_app, make_settings, aiohttp_client):
    from bot.web.gateway import create_web_app

    cp = make_app(make_settings(admin_token="s3cret-token"))
    server_client = await aiohttp_client(create_web_app(cp))
    await asyncio.to_thread(cp.auth.add_user, "admin", "admin", "default", PASSWORD)
    await asyncio.to_thread(cp.auth.add_user, "zhangwei", "rep", "default", PASSWORD)
    r = await server_client.get("/admin/kb/report", headers={"Authorization": "Bearer s3cret-token"})
    assert r.status == 200
    assert (await server_client.get("/admin/kb/report")).status == 401
    admin = await aiohttp_client(server_client.server)
    await sign_in(admin, "admin")
    assert (await admin.get("/admin/kb/report")).status == 200
    r = await admin.post("/admin/kb/drafts/999/approve", headers={"X-CSRF-Token": ""})
    assert r.status == 403
    r = await admin.post("/admin/kb/drafts/999/approve")
    assert r.status in (200, 409)  # no such draft, but the request was let in
    rep = await aiohttp_client(server_client.server)
    await sign_in(rep, "zhangwei")
    assert (await rep.get("/admin/kb/report")).status == 403


async def test_platform_callbacks_and_health_need_no_session(gateway):
    assert (await gateway.get("/healthz")).status == 200
    assert (await gateway.get("/metrics")).status == 200
    assert (await gateway.get("/login")).status == 200


def test_sessions_expire_when_idle_and_absolutely(copilot):
    auth = copilot.auth
    person = copilot.directory.get("default", "zhangwei")
    t0 = 1_000_000.0
    cookie = auth.issue(person, t0)
    assert auth.read(cookie, t0 + 60).rep_id == "zhangwei"
    assert auth.read(cookie, t0 + auth.idle + 1) is None  # idle
    touched = auth.touch(auth.read(cookie, t0 + auth.idle - 10), t0 + auth.idle - 10)
    assert auth.read(touched, t0 + auth.idle + 1) is not None  # a used session stays
    assert auth.read(touched, t0 + auth.absolute + 1) is None  # but never past the absolute limit
    body, _, sig = cookie.partition(".")
    assert auth.read(body + "." + sig[:-2] + "AA", t0) is None  # a tampered cookie


async def test_the_cookie_is_secure_behind_https_and_the_web_chat_can_be_switched_off(make_app, make_settings, aiohttp_client):
    from bot.web.gateway import create_web_app

    cp = make_app(make_settings(public_url="https://copilot.example.com", web_chat=False))
    server = await aiohttp_client(create_web_app(cp))
    await asyncio.to_thread(cp.auth.add_user, "zhangwei", "rep", "default", PASSWORD)
    r = await server.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
    form_cookie = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("copilot_form="))
    assert "Secure" in form_cookie  # a browser sends it back over https only: the test client is told it by hand
    r = await server.post("/login", data={"csrf": csrf, "username": "zhangwei", "password": PASSWORD}, allow_redirects=False,
                          headers={"Origin": "https://copilot.example.com",  # the public origin counts as this site's
                                   "Cookie": form_cookie.split(";", 1)[0]})
    assert r.status == 303
    header = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("copilot_session="))
    assert "Secure" in header and "HttpOnly" in header
    cookie = header.split(";", 1)[0].split("=", 1)[1]
    client = await aiohttp_client(server.server, cookies={"copilot_session": cookie})
    assert (await client.get("/api/me")).status == 200
    assert (await client.get("/")).status == 404  # COPILOT_WEB_CHAT=false: no page, no chat API
    assert (await client.get("/api/replies", params={"conversation": "web-zhangwei"})).status == 404


def test_copilot_user_add_checks_its_input_and_prints_a_one_time_link(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import user_add

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")}, "COPILOT_DATA_DIR": str(tmp_path / "data"),
           "COPILOT_CONFIG": str(tmp_path / "absent.toml")}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli", "user", "add", *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=120)

    bad = run("wangwu", "--role", "boss")
    assert bad.returncode == 2 and "role must be one of" in bad.stderr
    short = run("wangwu", "--role", "rep", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    empty = run("wangwu", "--role", "rep", "--password-stdin", stdin="")
    assert empty.returncode == 2 and "no password on stdin" in empty.stderr
    linked = run("wangwu", "--role", "rep")
    assert linked.returncode == 0 and re.search(r"http://127\.0\.0\.1:8080/login\?token=\S{40,}", linked.stdout), linked.stdout
    assert "password set" in user_add(env, "wangwu", "manager")  # a password, and a new role
    assert "Traceback" not in bad.stderr + short.stderr + linked.stderr
