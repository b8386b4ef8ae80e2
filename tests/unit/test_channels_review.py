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


async def test_feishu_answers_without_a_preview_do_not_grow_the_process_memory_of_cards(monkeypatch):
    """Every answer with an inbound message passes LiveCards.finish; answers the model did not stream (notices, /help,
    an extractive answer) never preview, and finish alone used to add an entry nobody removed."""
    from connectors.feishu import live as live_module
    from connectors.feishu.cards import CardStore
    from connectors.feishu.live import LiveCards

    monkeypatch.setattr(live_module, "KEEP_FINISHED", KEEP_FINISHED := 20)
    live = LiveCards(CardStore(None))
    shown = []

    async def show(card) -> None:
        shown.append(card)

    for i in range(KEEP_FINISHED + 30):
        await live.finish(f"default|om_{i}", f"in:{i}:0", show)
    assert len(shown) == KEEP_FINISHED + 30 and all(c is not None for c in shown)
    assert len(live._live) <= KEEP_FINISHED
