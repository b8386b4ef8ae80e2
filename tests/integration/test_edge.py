"""The door of the real gateway on loopback: client addresses behind a trusted proxy (and a spoofed header ignored
without one), an address that keeps being refused is refused for a while, limits per signed-in person, and an
upload refused before its body is read when its sender is over the limit (nothing spooled, nothing stored)."""
from __future__ import annotations

import asyncio
import re

import aiohttp
from aiohttp.test_utils import make_mocked_request

from tests.conftest import PASSWORD


def test_the_client_address_is_read_from_x_forwarded_for_only_when_a_trusted_proxy_sent_it():
    from bot.web.edge import client_address, parse_networks

    proxies = parse_networks(["127.0.0.1", "10.0.0.0/8"])

    def address(peer: str, xff: str | None) -> str:
        request = make_mocked_request("GET", "/", headers={"X-Forwarded-For": xff} if xff is not None else {},
                                      transport=_Transport(peer))
        return client_address(request, proxies)

    assert address("203.0.113.9", "198.51.100.1") == "203.0.113.9"  # not a proxy: its header is the client's own words
    assert address("127.0.0.1", "198.51.100.1") == "198.51.100.1"
    assert address("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3") == "198.51.100.1"  # spoofed left part skipped
    assert address("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert address("127.0.0.1", None) == "127.0.0.1"
    assert client_address(make_mocked_request("GET", "/", transport=_Transport("127.0.0.1")), []) == "127.0.0.1"


class _Transport:
    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default=None):
        return (self.peer, 40000) if name == "peername" else default


async def serve(make_app, make_settings, aiohttp_server, **settings):
    from bot.web.gateway import create_web_app

    cp = make_app(make_settings(**settings))
    return cp, await aiohttp_server(create_web_app(cp))


async def test_behind_a_trusted_proxy_login_is_throttled_per_forwarded_client_not_per_proxy(make_app, make_settings, aiohttp_server):
    cp, server = await serve(make_app, make_settings, aiohttp_server, trusted_proxies=["127.0.0.1"], login_attempts_per_minute=1)
    await asyncio.to_thread(cp.auth.add_user, "zhangwei", "rep", cp.settings.tenant, PASSWORD)

    async def attempts(client_ip: str, n: int) -> list[int]:
        statuses = []
        for i in range(n):
            async with aiohttp.ClientSession(base_url=str(server.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             headers={"X-Forwarded-For": client_ip}) as s:


                page = await (await s.get("/login")).text()
                csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
                r = await s.post("/login", data={"csrf": csrf, "username": f"nobody-{client_ip}-{i}", "password": "x"}, allow_redirects=False)
                statuses.append(r.status)
        return statuses

    first = await attempts("198.51.100.1", 8)  # 6 per minute per address (6 × 1 per account)
    assert first[:6] == [401] * 6 and 429 in first[6:]
    other = await attempts("198.51.100.2", 1)  # another client behind the same proxy is not punished for the first
    assert other == [401]


async def test_an_address_that_keeps_being_refused_is_refused_for_a_while_and_others_are_not(make_app, make_settings, aiohttp_server):
    cp, server = await serve(make_app, make_settings, aiohttp_server, trusted_proxies=["127.0.0.1"], address_failures_per_minute=5)
    async with aiohttp.ClientSession(headers={"X-Forwarded-For": "203.0.113.7"}) as s:
        statuses = [(await s.post(server.make_url("/api/chat"), json={"text": "hi"})).status for _ in range(7)]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        r = await s.get(server.make_url("/login"))
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1  # even what would succeed, for a while
        assert (await s.get(server.make_url("/healthz"))).status == 200  # health checks are never refused
    async with aiohttp.ClientSession(headers={"X-Forwarded-For": "203.0.113.8"}) as s:
        assert (await s.get(server.make_url("/login"))).status == 200


async def test_state_changing_requests_are_limited_per_signed_in_person(make_app, make_settings, aiohttp_server, login_to):
    from aiohttp.test_utils import TestClient

    cp, server = await serve(make_app, make_settings, aiohttp_server, person_requests_per_minute=4)
    client = await login_to(TestClient(server), cp, "zhangwei")
    statuses = [(await client.post("/api/chat", json={"text": f"问题 {i}", "id": f"p{i}"})).status for i in range(4)]
    assert statuses.count(202) == 2 and statuses[2:] == [429, 429]  # burst of half a minute's worth, then refused
    assert (await client.get("/api/me")).status == 200  # reading is not limited


async def test_an_upload_over_the_senders_limit_is_refused_before_its_body_is_read(make_app, make_settings, aiohttp_server, login_to):
    from aiohttp.test_utils import TestClient

    from tests.integration.test_bounded_requests import send_chunked

    cp, server = await serve(make_app, make_settings, aiohttp_server, rate_limit_per_minute=1)  # a burst of 5 messages
    client = await login_to(TestClient(server), cp, "zhangwei")
    statuses = [(await client.post("/api/chat", json={"text": f"问题 {i}", "id": f"u{i}"})).status for i in range(6)]
    assert statuses[:5] == [202] * 5 and statuses[5] == 429
    cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    headers = {"Cookie": cookie, "X-CSRF-Token": client.session.headers["X-CSRF-Token"]}
    status, sent = await send_chunked(server.port, "/api/chat", parts=1, part_size=20 * 1024 * 1024, stop_after=20 * 1024 * 1024,
                                      headers=headers)
    assert status == 429
    assert sent < 16 * 1024 * 1024  # answered while the 20 MB were still being sent (what the socket buffers held)
    uploads = cp.settings.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
