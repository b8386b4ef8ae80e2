"""The channel core's client helpers every platform client uses: a download capped while it arrives, and an app token
refreshed once when the platform refuses it."""
from __future__ import annotations

import pytest
from aiohttp import web

from connectors.cache import AppToken, LocalTokenCache
from connectors.http import PooledSession, json_object, read_capped


async def test_a_download_past_its_cap_is_refused_while_it_arrives(aiohttp_server):
    async def chunked(request: web.Request) -> web.StreamResponse:
        r = web.StreamResponse()  # no Content-Length: only counting the chunks can tell
        await r.prepare(request)
        for _ in range(4):
            await r.write(b"x" * 50_000)
        return r

    app = web.Application()
    app.router.add_get("/f", chunked)
    url = str((await aiohttp_server(app)).make_url("/f"))
    http = PooledSession(5.0)
    try:
        async with http().get(url) as r:
            assert len(await read_capped(r, 200_000, ValueError("too large"))) == 200_000
        async with http().get(url) as r:
            with pytest.raises(ValueError, match="too large"):
                await read_capped(r, 199_999, ValueError("too large"))
    finally:
        await http.aclose()
    assert json_object('{"a": 1}') == {"a": 1} and json_object("[1]") == {} and json_object("<html>") == {} and json_object("") == {}


class Refused(Exception):
    pass


async def test_a_refused_token_is_fetched_again_once_and_never_handed_out_again():
    issued = iter(["t1", "t2", "t3"])

    async def fetch() -> tuple[str, float]:
        return next(issued), 60.0

    token = AppToken(LocalTokenCache(), "app", fetch)
    calls: list[str] = []

    async def call(t: str) -> str:
        calls.append(t)
        if t == "t1":
            raise Refused(t)
        return "ok " + t

    assert await token.use(call, lambda exc: isinstance(exc, Refused)) == "ok t2"
    assert calls == ["t1", "t2"] and token.fetches == 2 and await token.get() == "t2"

    async def always(t: str) -> str:
        calls.append(t)
        raise Refused(t)

    with pytest.raises(Refused):  # twice refused: the caller hears it, no third try
        await token.use(always, lambda exc: isinstance(exc, Refused))
    assert calls[2:] == ["t2", "t3"]

    async def broken(t: str) -> str:
        calls.append(t)
        raise KeyError(t)

    with pytest.raises(KeyError):  # another error is not a refused token: no refresh, no second try
        await token.use(broken, lambda exc: isinstance(exc, Refused))
    assert calls[4:] == ["t3"] and token.fetches == 3
