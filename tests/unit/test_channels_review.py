"""Review findings of the new channels' code, each pinned by a test that fails without its fix."""
from __future__ import annotations

import logging

from aiohttp import web


async def test_an_unhandled_error_on_a_route_with_a_secret_in_its_path_logs_the_route_not_the_secret(aiohttp_client, caplog):
    """The DingTalk card callback URL carries its token (the URL is the credential): a crash behind it (the inbox's
    database gone) is logged with the route as written, never the path with the token."""
    from bot.web.gateway import error_middleware

    async def card(request: web.Request) -> web.Response:
        raise RuntimeError("the inbox's database is gone")

    app = web.Application(middlewares=[error_middleware(1024, 1024)])
    app.add_routes([web.post("/dingtalk/{app}/card/{token}", card)])
    client = await aiohttp_client(app)
    token = "5f1e0c9a7b3d4e2f8a6c1b0d9e7f3a2c"
    with caplog.at_level(logging.ERROR, logger="copilot.gateway"):
        r = await client.post(f"/dingtalk/sales/card/{token}", json={})
    assert r.status == 500 and token not in await r.text()
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "/dingtalk/{app}/card/{token}" in logged and token not in logged and "sales" not in logged
