"""A sender over the rate limit (bot/pipeline/intake.py raises `Throttled`): nothing is stored, and each
receiver tells its platform "later" so nothing is lost either.

  HTTP (WeCom, DingTalk, the web chat)  429 with Retry-After; the platform's retry is answered once
  DingTalk Stream                       no ack, so DingTalk delivers again; acked once it is stored
  email (IMAP)                          the cursor stays, the watcher waits on the same connection, then hands it over
"""
from __future__ import annotations

import asyncio

import pytest

from bot.pipeline.ratelimit import RateLimiter
from connectors.channel import Accepted, Throttled
from tests.fakes.email_env import *  # noqa: F403 - the Dovecot fixtures the email rig uses
from tests.fakes.email_env import Collector, email_context
from tests.fakes.rigs import RIGS, Rig


def strict(rig_or_app) -> None:
    """One message, then one a second: the second message of a burst is refused for about a second."""
    app = getattr(rig_or_app, "copilot", rig_or_app)
    app.intake.limiter = RateLimiter(60, burst=1)


@pytest.fixture(params=["wecom", "dingtalk", "console"])
async def http_rig(request, make_app, settings, aiohttp_client, aiohttp_server) -> Rig:
    return await RIGS[request.param].open(make_app=make_app, aiohttp_client=aiohttp_client, aiohttp_server=aiohttp_server,
                                          settings=settings, request=request)


async def test_an_http_callback_over_the_limit_gets_429_and_its_retry_is_answered_once(http_rig):
    rig = http_rig
    strict(rig)
    assert (await rig.deliver("/help", "limit-1")).status in (200, 202)
    refused = await rig.deliver("/todo", "limit-2")  # another text: WeCom would drop a second identical answer
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    assert "try again" in (await refused.json())["error"]
    await asyncio.sleep(1.1)
    assert (await rig.deliver("/todo", "limit-2")).status in (200, 202)  # the platform's retry
    await rig.wait(2, timeout=30)
    await asyncio.sleep(0.8)
    assert len(await rig.texts()) == 2
    metrics = await (await rig.client.get("/metrics")).text()
    assert f'copilot_requests_rejected_total{{channel="{rig.channel}",reason="rate_limit"}} 1.0' in metrics


async def test_a_stream_message_over_the_limit_is_not_acked_and_is_answered_once_when_redelivered(make_app, settings, aiohttp_client,
                                                                                                   aiohttp_server):
    from bot.web.gateway import create_web_app
    from connectors.dingtalk import DingTalkConnector
    from connectors.dingtalk.config import DingTalkApp
    from tests.fakes.dingtalk_api import serve_with_stream
    from tests.fakes.rigs import APP, SECRET, STAFF

    fake = await serve_with_stream(aiohttp_server, (APP, SECRET), redeliver_after=0.6, max_deliveries=6)
    stream = fake.stream
    conn = DingTalkConnector([DingTalkApp(tenant=settings.tenant, app_key=APP, app_secret=SECRET, mode="stream", api_base=fake.base,
                                          oapi_base=fake.base)], stream_options={"backoff_base": 0.05, "backoff_max": 0.5})
    copilot = make_app(channels=[conn])
    strict(copilot)
    await aiohttp_client(create_web_app(copilot))
    await stream.wait_connected(APP)
    first = stream.push(APP, fake.message(APP, sender=STAFF, text="/help", msg_id="s-limit-1"))
    assert (await stream.acked(first)).code == 200
    second = stream.push(APP, fake.message(APP, sender=STAFF, text="/help", msg_id="s-limit-2"))
    ack = await stream.acked(second, timeout=8)
    assert ack.code == 200 and stream.deliveries[second] >= 2  # the first delivery was refused, not acked
    assert conn.receivers["default"].throttled >= 1
    await fake.wait_sent(2)
    await asyncio.sleep(0.8)
    assert len(fake.sent) == 2 and copilot.inbox.counts().get("done") == 2


class ThrottleOnce(Collector):
    """A sink that refuses the n-th message the first time it is handed over."""

    def __init__(self, n: int, retry_after: float = 0.3) -> None:
        super().__init__()
        self.n, self.retry_after, self.refused = n, retry_after, 0

    async def __call__(self, msg) -> Accepted:
        if len(self.messages) + 1 == self.n and not self.refused:
            self.refused += 1
            raise Throttled(self.retry_after)
        return await super().__call__(msg)


async def test_mail_over_the_limit_stays_unread_by_the_cursor_and_is_handed_over_after_the_wait(make_settings, imap_user):
    from connectors.email.connector import EmailConnector

    def mail(n: int) -> bytes:
        return (f"From: wang@customer.example.cn\r\nTo: {imap_user.address}\r\nSubject: q{n}\r\nMessage-ID: <t{n}@customer.example.cn>\r\n"
                "Date: Mon, 4 Mar 2024 10:00:00 +0800\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n价格？\r\n").encode()

    settings = make_settings()
    await imap_user.append(mail(1), mail(2), mail(3))
    sink = ThrottleOnce(2)
    conn = EmailConnector([imap_user.mailbox()], email_context(settings))
    await conn.start(sink)
    try:
        await sink.wait(3, timeout=15)
        watcher = conn.watchers["default"]
        for _ in range(100):  # the cursor moves just after the sink took the message
            cursor = await asyncio.to_thread(conn.state.cursor, "default", "INBOX")
            if cursor is not None and cursor.last_uid >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.aclose()
    assert sink.ids() == [f"<t{n}@customer.example.cn>" for n in (1, 2, 3)]  # in order, each once
    assert sink.refused == 1 and watcher.status.counts["throttled"] == 1
    assert watcher.status.counts["reconnects"] == 0 and watcher.status.last_error == ""  # waited, did not crash or reconnect
    assert cursor is not None and cursor.last_uid >= 3
