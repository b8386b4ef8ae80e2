"""Sign in to the web console with the platform's own account (企业微信扫码登录), end to end on loopback: the real
gateway, the WeCom connector and a WeCom API that speaks the protocol (tests/fakes/wecom_api.py). What WeCom's login
page does after a scan — send the browser back with a one-time code and our state — is done here by hand."""
from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from connectors.wecom import WeComConnector
from connectors.wecom.config import CorpConfig
from tests.conftest import PASSWORD, free_port, sign_in
from tests.fakes.wecom_api import A, corp_settings, start_fake


@pytest.fixture
async def wecom_login(make_app, make_settings, aiohttp_server):
    from bot.web.gateway import create_web_app

    fake = await start_fake(aiohttp_server)
    conn = WeComConnector([CorpConfig(**{**c, "login_base": fake.url}) for c in corp_settings(fake)])
    port = free_port()
    cp = make_app(make_settings(public_url=f"http://127.0.0.1:{port}"), channels=[conn])
    cp.directory.link("zhangwei", "wecom", "ZhangWei", tenant=cp.settings.tenant)  # as `copilot wecom sync-users` links members
    server = await aiohttp_server(create_web_app(cp), port=port)
    return fake, server, cp


async def scan(server, fake, userid: str, *, corp: str = A["corp_id"], state: str | None = None, code: str | None = None):
    """Start the WeCom sign-in, "scan" as `userid`, come back; returns (browser session, the callback's response, code)."""
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await s.get(server.make_url("/login/with/wecom"), allow_redirects=False)
    assert r.status == 303
    to = urlsplit(r.headers["Location"])
    q = {k: v[0] for k, v in parse_qs(to.query).items()}
    assert to.path == "/wwlogin/sso/login" and q["appid"] == A["corp_id"] and q["agentid"] == str(A["agent_id"])
    assert q["redirect_uri"] == str(server.make_url("/login/with/wecom/callback"))
    code = code or fake.login_code(corp, userid)
    back = await s.get(q["redirect_uri"], params={"code": code, "state": state or q["state"]}, allow_redirects=False)
    return s, back, code


async def test_a_linked_member_signs_in_by_scanning_and_nobody_else_does(wecom_login):
    fake, server, cp = wecom_login
    async with aiohttp.ClientSession() as browser, browser.get(server.make_url("/login")) as page:
        assert 'href="/login/with/wecom"' in await page.text()
    await asyncio.to_thread(cp.auth.add_user, "admin", "admin", cp.settings.tenant, PASSWORD)
    async with aiohttp.ClientSession(base_url=str(server.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        await sign_in(admin, "admin")
        reps = await (await admin.get("/console/reps", headers={"Accept-Language": "en"})).text()
        row = next(r for r in reps.split("<tr") if "zhangwei" in r)
        assert "WeCom scan" in row  # the console knows this way in for the person the directory links
    s, r, code = await scan(server, fake, "ZhangWei")  # the sample rep's WeCom account
    async with s:
        assert r.status == 303 and r.headers["Location"] == "/"
        assert (await (await s.get(server.make_url("/api/me"))).json())["id"] == "zhangwei"
    s, r, _ = await scan(server, fake, "ZhangWei", code=code)  # the same code again: WeCom refuses it
    async with s:
        assert r.status == 403 and (await s.get(server.make_url("/api/me"))).status == 401
    s, r, _ = await scan(server, fake, "NewHire")  # a member the directory does not link to anyone
    async with s:
        assert r.status == 403 and "通讯录" in await r.text()
        assert (await s.get(server.make_url("/api/me"))).status == 401
    s, r, _ = await scan(server, fake, "ZhangWei", state="forged")  # a callback this browser did not start
    async with s:
        assert r.status == 400 and (await s.get(server.make_url("/api/me"))).status == 401


async def test_a_dingtalk_corp_member_signs_in_by_scanning_and_an_outsider_does_not(make_app, make_settings, aiohttp_server):
    from bot.web.gateway import create_web_app
    from connectors.dingtalk import DingTalkConnector
    from connectors.dingtalk.config import DingTalkApp
    from tests.fakes.dingtalk_api import FakeDingTalk

    fake = FakeDingTalk()
    fake.bind(str((await aiohttp_server(fake.app())).make_url("")))
    fake.add_app("dingappkey0001", "app-secret-0001-abcdefghijklmnopqrstuvwxyz", corp_id="dingcorp")
    fake.members[("dingappkey0001", "union-zw")] = "0251120101"  # zhangwei's userid in the corp
    conn = DingTalkConnector([DingTalkApp(app_key="dingappkey0001", app_secret="app-secret-0001-abcdefghijklmnopqrstuvwxyz", corp_id="dingcorp",
                                          api_base=fake.base, oapi_base=fake.base, login_base=fake.base)])
    port = free_port()
    cp = make_app(make_settings(public_url=f"http://127.0.0.1:{port}"), channels=[conn])
    cp.directory.link("zhangwei", "dingtalk", "0251120101", tenant=cp.settings.tenant)
    server = await aiohttp_server(create_web_app(cp), port=port)

    async def scan_as(union_id: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientResponse]:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        r = await s.get(server.make_url("/login/with/dingtalk"), allow_redirects=False)
        to = urlsplit(r.headers["Location"])
        q = {k: v[0] for k, v in parse_qs(to.query).items()}
        assert to.path == "/oauth2/auth" and q["client_id"] == "dingappkey0001" and q["corpId"] == "dingcorp"
        code = fake.login_code("dingappkey0001", union_id)
        return s, await s.get(q["redirect_uri"], params={"authCode": code, "state": q["state"]}, allow_redirects=False)

    s, r = await scan_as("union-zw")
    async with s:
        assert r.status == 303 and (await (await s.get(server.make_url("/api/me"))).json())["id"] == "zhangwei"
    s, r = await scan_as("union-stranger")  # a DingTalk user outside the corp: no userid there
    async with s:
        assert r.status == 403 and (await s.get(server.make_url("/api/me"))).status == 401
