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
    assert len(live.previews) <= KEEP_FINISHED


async def test_a_feishu_event_whose_body_arrives_in_pieces_is_read_whole(aiohttp_client):
    """`StreamReader.read(n)` returns what has arrived so far, not n bytes: a body split over TCP segments (a long post
    through a proxy) was cut, failed its signature and was refused with 403 at every redelivery."""
    import asyncio

    from connectors.channel import Accepted
    from connectors.feishu.config import FeishuApp
    from connectors.feishu.connector import FeishuConnector
    from tests.fakes.feishu_api import FakeFeishu

    fake = FakeFeishu()
    ids = fake.add_app("cli_review0001", "secret-review-0001")
    app = FeishuApp(app_id=ids.app_id, app_secret=ids.secret, encrypt_key=ids.encrypt_key, verification_token=ids.token)
    conn = FeishuConnector([app])
    stored = []

    async def sink(msg):
        stored.append(msg)
        return Accepted(inbox_id=len(stored), duplicate=False)

    web_app = web.Application()
    web_app.add_routes(conn.routes(sink))
    client = await aiohttp_client(web_app)
    body, headers = fake.request(ids.app_id, fake.message_event(ids.app_id, sender="ou_review0000000000000000000001", text="长问题 " * 400))

    async def pieces():
        for i in range(0, len(body), 1024):
            yield body[i:i + 1024]
            await asyncio.sleep(0.01)  # each piece its own segment, as a slow link delivers it

    try:
        r = await client.post("/feishu/events", data=pieces(), headers=headers)
        assert r.status == 200, await r.text()
        assert len(stored) == 1 and stored[0].text.startswith("长问题")
    finally:
        await conn.aclose()


async def test_a_wecom_media_download_that_arrives_in_pieces_is_whole(aiohttp_server):
    """media/get read the body with one `read(n)`, which returns what has arrived so far: a file larger than the first
    segments was kept cut short (and ingested so)."""
    import asyncio

    from connectors.wecom.client import WeComClient
    from connectors.wecom.config import CorpConfig

    data = bytes(range(256)) * 800  # 200 KB

    async def gettoken(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "access_token": "tok", "expires_in": 7200})

    async def media(request: web.Request) -> web.StreamResponse:
        r = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        r.content_length = len(data)
        await r.prepare(request)
        for i in range(0, len(data), 16384):
            await r.write(data[i:i + 16384])
            await asyncio.sleep(0.005)
        await r.write_eof()
        return r

    app = web.Application()
    app.add_routes([web.get("/cgi-bin/gettoken", gettoken), web.get("/cgi-bin/media/get", media)])
    server = await aiohttp_server(app)
    client = WeComClient(CorpConfig(corp_id="ww1", secret="s", agent_id=1, token="T", aes_key="0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
                                    api_base=str(server.make_url("")).rstrip("/")))
    try:
        got, _ = await client.media("m1", 1024 * 1024)
        assert got == data
    finally:
        await client.aclose()


async def test_refused_platform_callbacks_do_not_get_the_platform_s_address_refused(aiohttp_client):
    """Feishu, WeCom and DingTalk deliver every tenant's callbacks from the same servers. Anyone can point an app of
    their own at this copilot's URL: its callbacks, signed with their key, are refused (403); counted as failures of
    that address, they got the real callbacks from the same servers refused (429) for a while."""
    from bot.pipeline.ratelimit import RateLimiter
    from bot.web.edge import address_middleware
    from bot.web.gateway import error_middleware

    async def events(request: web.Request) -> web.Response:
        if request.headers.get("X-Lark-Signature") != "good":
            raise web.HTTPForbidden(text="bad signature")
        return web.json_response({})

    async def login(request: web.Request) -> web.Response:
        raise web.HTTPUnauthorized(text="no")

    app = web.Application(middlewares=[error_middleware(1024, 1024), address_middleware([], RateLimiter(60), RateLimiter(3, 3))])
    app.add_routes([web.post("/feishu/events", events), web.post("/login", login)])
    client = await aiohttp_client(app)
    forged = [(await client.post("/feishu/events", headers={"X-Lark-Signature": "theirs"})).status for _ in range(6)]
    assert forged == [403] * 6
    assert (await client.post("/feishu/events", headers={"X-Lark-Signature": "good"})).status == 200
    refused = [(await client.post("/login")).status for _ in range(5)]  # the web's own routes are still limited
    assert refused[:3] == [401] * 3 and 429 in refused[3:]


def test_feishu_cards_kept_without_a_database_are_bounded(monkeypatch):
    from connectors.feishu import cards

    monkeypatch.setattr(cards, "KEEP_IN_MEMORY", 50)
    store = cards.CardStore(None)
    for i in range(120):
        assert store.begin(f"default|om_{i}").fresh
    assert len(store._mem) == 50 and store.get("default|om_119") is not None and store.get("default|om_0") is None


def test_a_preview_while_the_loop_closes_never_fails_the_model_s_answer():
    """The Previewer runs in the model's worker thread; the loop may close between its check and the handoff (shutdown):
    call_soon_threadsafe then raises, and that used to end the answer being written."""
    from connectors.dingtalk.config import DingTalkApp
    from connectors.dingtalk.livecards import LiveCards as DingTalkCards
    from connectors.feishu.cards import CardStore
    from connectors.feishu.live import LiveCards as FeishuCards
    from connectors.message import Target

    class Closing:  # closed right after the check
        def is_closed(self) -> bool:
            return False

        def call_soon_threadsafe(self, *args) -> None:
            raise RuntimeError("Event loop is closed")

    feishu = FeishuCards(CardStore(None))
    feishu.bind(Closing())
    target = Target(channel="feishu", conversation_id="oc_1", context={"inbound": "om_1"})
    feishu.preview("default|om_1", target, "星图", None, 0.5, None)
    dingtalk = DingTalkCards(None)
    dingtalk.bind(Closing())
    dingtalk.preview(DingTalkApp(app_key="k", app_secret="s", cards=True), None,
                     Target(channel="dingtalk", conversation_id="c", user_id="u", context={"msgId": "m1"}), "星图")


def test_the_password_of_a_redis_url_without_a_user_is_masked_on_its_own():
    """COPILOT_REDIS_URL is usually redis://:password@host (Redis has no user): the password alone was not a secret
    the log filter knew, only the whole URL."""
    from pydantic import SecretStr

    from bot.ops.logs import secret_values

    class S:
        model_fields = {"redis_url": None, "database_url": None}
        redis_url = SecretStr("redis://:r3dis-Pa55@redis.internal:6379/0")
        database_url = SecretStr("postgresql://copilot:pg-Pa55@db/copilot")

    found = secret_values(S(), env={})
    assert "r3dis-Pa55" in found and "pg-Pa55" in found
