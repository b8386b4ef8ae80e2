"""Sign in with the company's OpenID Connect provider, end to end on loopback: the copilot's real gateway and a
provider that speaks the protocol (tests/fakes/oidc_provider.py). The browser's redirects are followed by hand, as a
browser does, so each hop is checked: PKCE, state, the ID token's signature, audience and nonce, and the person."""
from __future__ import annotations

import re

import aiohttp
import pytest

from tests.conftest import free_port
from tests.fakes.oidc_provider import FakeOIDC

CLIENT, SECRET = "copilot", "client-secret-0001"


@pytest.fixture
async def sso(make_app, make_settings, aiohttp_server):
    from bot.web.gateway import create_web_app

    fake = FakeOIDC(CLIENT, SECRET)
    provider = await aiohttp_server(fake.app())
    fake.issuer = str(provider.make_url("")).rstrip("/")
    port = free_port()  # known before the server starts: the callback URL the provider sends the browser back to
    cp = make_app(make_settings(oidc_issuer=fake.issuer, oidc_client_id=CLIENT, oidc_client_secret=SECRET,
                                public_url=f"http://127.0.0.1:{port}"))
    server = await aiohttp_server(create_web_app(cp), port=port)
    return fake, server, cp


async def browse(server, fake: FakeOIDC, *, state: str | None = None) -> tuple[aiohttp.ClientSession, aiohttp.ClientResponse]:
    """Open /login/oidc and follow the redirects to the provider and back; the session holds the cookies."""
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await s.get(server.make_url("/login/oidc"), allow_redirects=False)
    assert r.status == 303, await r.text()
    at_provider = await s.get(r.headers["Location"], allow_redirects=False)
    assert at_provider.status == 302, await at_provider.text()
    back = at_provider.headers["Location"]
    assert back.startswith(str(server.make_url("/login/oidc/callback")))
    if state is not None:
        back = re.sub(r"state=[^&]*", f"state={state}", back)
    return s, await s.get(back, allow_redirects=False)


async def test_a_directory_person_signs_in_through_the_provider(sso):
    fake, server, cp = sso
    fake.user = {"sub": "u-zhangwei", "email": "ZhangWei@yunfan.example.com", "email_verified": True}
    async with aiohttp.ClientSession() as browser, browser.get(server.make_url("/login")) as login:
        assert 'href="/login/oidc"' in await login.text()  # the sign-in page offers it
    s, r = await browse(server, fake)
    async with s:
        assert r.status == 303 and r.headers["Location"] == "/"
        me = await s.get(server.make_url("/api/me"))
        assert me.status == 200 and (await me.json())["id"] == "zhangwei"
    token_request = fake.token_requests[-1]
    assert token_request["grant_type"] == "authorization_code" and token_request["code_verifier"]  # PKCE


async def test_an_id_token_the_provider_did_not_issue_for_this_sign_in_is_refused(sso):
    fake, server, _ = sso
    fake.user = {"sub": "u-zhangwei", "email": "zhangwei@yunfan.example.com", "email_verified": True}
    for tamper in ({"aud": "another-client"}, {"nonce": "replayed"}, {"iss": "https://evil.example"}, {"exp": 1}):
        fake.tamper = tamper
        s, r = await browse(server, fake)
        async with s:
            assert r.status == 403, tamper
            assert "copilot_session" not in {c.key for c in s.cookie_jar}
            assert (await s.get(server.make_url("/api/me"))).status == 401
    fake.tamper = {}
    s, r = await browse(server, fake)  # the same provider, an honest token: in
    async with s:
        assert r.status == 303


async def test_a_forged_state_an_unknown_person_and_an_unverified_email_are_refused(sso):
    fake, server, _ = sso
    fake.user = {"sub": "u-zhangwei", "email": "zhangwei@yunfan.example.com", "email_verified": True}
    s, r = await browse(server, fake, state="forged")  # a callback this browser did not start (login CSRF)
    async with s:
        assert r.status == 400 and (await s.get(server.make_url("/api/me"))).status == 401
    fake.user = {"sub": "u-x", "email": "stranger@yunfan.example.com", "email_verified": True}
    s, r = await browse(server, fake)
    async with s:
        assert r.status == 403 and "通讯录" in await r.text()  # says why (the browser asked in Chinese)
        assert (await s.get(server.make_url("/api/me"))).status == 401
    fake.user = {"sub": "u-zhangwei", "email": "zhangwei@yunfan.example.com", "email_verified": False}
    s, r = await browse(server, fake)
    async with s:
        assert r.status == 403 and (await s.get(server.make_url("/api/me"))).status == 401
