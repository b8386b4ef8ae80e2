"""The gateway and the durable inbox, through the web-chat channel on a real loopback server (each client signed
in through /login: the sender is the session's person)."""
from __future__ import annotations

import asyncio

from tests.conftest import replies_for


async def post(client, **body):
    return await client.post("/api/chat", json=body)


async def test_question_is_answered_with_a_citation(gateway, login):
    zhangwei = await login("zhangwei")
    r = await post(zhangwei, **{"text": "星图软件的实施周期一般多长？", "conversation": "c1", "id": "m1"})
    assert r.status == 202
    [reply] = await replies_for(zhangwei, "c1")
    body = reply["reply"]
    assert body["grounded"] is True
    assert "实施周期" in body["text"]
    assert "bc-xingtu" in [c["doc_id"] for c in body["citations"]]
    assert "[1]" in body["text"]
    assert body["citations"][0]["url"].startswith("http://")


async def test_duplicate_delivery_is_answered_once(gateway, login):
    zhangwei = await login("zhangwei")
    bodies = [{"text": "蓝海系统的价格区间？", "conversation": "dup", "id": "same-id"}] * 5
    results = await asyncio.gather(*(post(zhangwei, **b) for b in bodies))
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 200, 200, 200, 202]  # one accepted, four acknowledged as duplicates
    ids = {(await r.json())["inbox_id"] for r in results}
    assert len(ids) == 1
    await replies_for(zhangwei, "dup", 1)
    # a late retry after processing is still a duplicate and produces no second answer
    again = await post(zhangwei, **bodies[0])
    assert again.status == 200 and (await again.json())["duplicate"] is True
    await asyncio.sleep(0.5)
    got = await replies_for(zhangwei, "dup", 2, timeout=1.5)
    assert len(got) == 1
    metrics = await (await gateway.get("/metrics")).text()
    assert 'copilot_messages_deduplicated_total{channel="console"} 5.0' in metrics
    assert 'copilot_messages_processed_total{channel="console"} 1.0' in metrics


async def test_messages_of_one_conversation_are_answered_in_order(gateway, login):
    lijun = await login("lijun")
    questions = ["/help", "星图的弱点是什么？", "今天天气怎么样", "NorthPeak 的价格区间？"]
    for i, q in enumerate(questions):
        assert (await post(lijun, **{"text": q, "conversation": "order", "id": f"o{i}"})).status == 202
    got = await replies_for(lijun, "order", len(questions))
    assert [g["inbox_id"] for g in got] == sorted(g["inbox_id"] for g in got)
    assert "/compare" in got[0]["reply"]["text"]  # the help text came first


async def test_bad_json_and_oversized_bodies_get_clear_errors(gateway, login):
    zhangwei = await login("zhangwei")
    r = await zhangwei.post("/api/chat", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and "not valid JSON" in (await r.json())["error"]
    r = await zhangwei.post("/api/chat", json=["a", "list"])
    assert r.status == 400 and "JSON object" in (await r.json())["error"]
    r = await zhangwei.post("/api/chat", json={"text": 42})
    assert r.status == 400 and "'text' must be a string" in (await r.json())["error"]
    big = b'{"text":"' + b"x" * (3 * 1024 * 1024) + b'"}'
    r = await zhangwei.post("/api/chat", data=big, headers={"Content-Type": "application/json"})
    assert r.status == 413 and "too large" in (await r.json())["error"]

    async def chunked():
        for _ in range(48):
            yield b"x" * 65536

    r = await zhangwei.post("/api/chat", data=chunked(), headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert (await gateway.get("/healthz")).status == 200
    assert (await gateway.get("/readyz")).status == 200
    r = await post(zhangwei, **{"text": "/help", "conversation": "after-bad", "id": "ok1"})
    assert r.status == 202
    assert await replies_for(zhangwei, "after-bad")


async def test_unknown_user_is_told_and_recorded_for_an_admin(gateway):
    # nobody unknown gets past the web chat's sign-in; a console sender the directory does not know (the terminal
    # channel's path) is told and recorded
    from bot.pipeline.outbox import reply_history
    from connectors.message import InboundMessage

    acc = await gateway.copilot.intake.sink(InboundMessage(channel="console", tenant="default", conversation_id="s1",
                                                           sender_id="stranger", sender_name="stranger", text="你好", platform_msg_id="s1"))
    assert not acc.duplicate
    history, reply = reply_history(gateway.copilot.engine, "console"), None
    for _ in range(100):
        if rows := await history("default", "s1", 0):
            [reply] = rows
            break
        await asyncio.sleep(0.1)
    assert "管理员" in reply["reply"]["text"]
    pending = gateway.copilot.directory.pending()
    assert [(p.channel, p.platform_user_id) for p in pending] == [("console", "stranger")]


async def test_per_sender_rate_limit(make_settings, aiohttp_client, login_to):
    from bot.app import build_app
    from bot.web.gateway import create_web_app

    cp = build_app(make_settings(rate_limit_per_minute=6))
    cp.load_samples()
    server = await aiohttp_client(create_web_app(cp))
    zhangwei, lijun = await login_to(server, cp, "zhangwei"), await login_to(server, cp, "lijun")
    codes = [(await post(zhangwei, **{"text": "/help", "conversation": "rl", "id": f"r{i}"})).status for i in range(8)]
    assert codes.count(202) == 5 and codes[-1] == 429
    r = await post(lijun, **{"text": "/help", "conversation": "rl2", "id": "other"})
    assert r.status == 202  # another sender is not affected


async def test_citation_link_opens_the_passage_for_its_person_only(gateway, login):
    from bot.web.links import KeyRing
    from rag.retrieve import Viewer

    zhangwei = await login("zhangwei")
    await post(zhangwei, **{"text": "星图软件的实施周期一般多长？", "conversation": "link", "id": "l1"})
    [reply] = await replies_for(zhangwei, "link")
    url = reply["reply"]["citations"][0]["url"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    page = await gateway.get("/" + path)  # a signed link: no session needed
    text = await page.text()
    assert page.status == 200 and "星图" in text and 'class="passage cited"' in text and page.headers["Cache-Control"] == "no-store"
    whole = gateway.copilot.knowledge.retriever.document_hits(Viewer("default", "rep", "华东区"), url.split("/kb/")[1].split("?")[0])
    assert text.count('class="passage') <= 5 < len(whole)  # the cited passage with its neighbours, not the whole document
    forged = await gateway.get("/" + path.replace("role=rep", "role=admin"))
    assert forged.status == 403
    assert (await (await login("lijun")).get("/" + path)).status == 403  # bound to zhangwei: another signed-in person is refused
    assert (await zhangwei.get("/" + path)).status == 200
    stale = path.replace("exp=", "exp=1").split("&sig=")[0]
    assert (await gateway.get("/" + stale)).status == 403

    ring = KeyRing(gateway.copilot.settings.data_dir / "link-keys")
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in ring.folder.glob("*.key"))
    ring.rotate()
    assert (await gateway.get("/" + path)).status == 200  # a new key signs; the old one still verifies
    ring.rotate(revoke=True)
    assert (await gateway.get("/" + path)).status == 403  # revoked with the old keys


async def test_file_sent_in_the_web_chat_goes_to_the_knowledge_base(gateway, login):
    import aiohttp

    from rag.retrieve import Viewer

    clients = {who: await login(who) for who in ("chenjing", "zhangwei")}

    async def upload(who: str, name: str, text: str):
        form = aiohttp.FormData()
        form.add_field("as", "admin")  # ignored: the upload is the signed-in person's
        form.add_field("conversation", f"up-{who}")
        form.add_field("file", text.encode(), filename=name, content_type="text/markdown")
        return await clients[who].post("/api/chat", data=form)

    assert (await upload("chenjing", "qinglong.md", "# 青龙\n\n青龙方案的交付周期是五周。\n")).status == 202
    [reply] = await replies_for(clients["chenjing"], "up-chenjing")
    assert "已导入" in reply["reply"]["text"]
    hits = gateway.copilot.knowledge.retriever.search("青龙方案 交付周期", Viewer("default", "rep", "华东区"), k=3)
    assert hits[0].doc_id == "qinglong.md"
    assert (await upload("zhangwei", "baihu.md", "# 白虎\n\n白虎方案只有草稿。\n")).status == 202
    [reply] = await replies_for(clients["zhangwei"], "up-zhangwei")
    assert "草稿" in reply["reply"]["text"]
    assert all(h.doc_id != "baihu.md" for h in gateway.copilot.knowledge.retriever.search("白虎方案", Viewer("default", "admin"), k=5))


async def test_a_message_that_keeps_failing_is_dead_lettered_and_the_sender_told(make_settings, aiohttp_client, login_to):
    from bot.app import build_app
    from bot.web.gateway import create_web_app

    cp = build_app(make_settings(max_attempts=3, retry_base_seconds=0.05))
    cp.load_samples()
    calls = []

    def broken(person, msg, *rest):
        calls.append(msg.platform_msg_id)
        raise RuntimeError("boom")

    cp.agent.handle = broken
    client = await login_to(await aiohttp_client(create_web_app(cp)), cp, "zhangwei")
    await post(client, **{"text": "星图？", "conversation": "dead", "id": "d1"})
    [reply] = await replies_for(client, "dead")
    assert reply["reply"]["kind"] == "error" and "处理失败" in reply["reply"]["text"]
    assert calls == ["zhangwei/d1"] * 3  # the sender's own message id
    assert cp.inbox.counts().get("dead") == 1
    assert 'copilot_messages_dead_total{channel="console"} 1.0' in await (await client.get("/metrics")).text()
