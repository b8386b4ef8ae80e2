"""The web chat's history and words on a real loopback server: a conversation as its person saw it (their own
messages, the replies, a confirmation settled by a typed "1" and a draft's approval decided elsewhere marked done),
nobody else's, and the page's words in the reader's language (the switch's cookie first, then the browser's)."""
from __future__ import annotations

import aiohttp

from tests.conftest import replies_for

LOG = "今天拜访了华东医疗集团王总，关注价格，下周二再约"


async def test_history_of_a_conversation_and_the_pages_words(gateway, login):
    zhangwei = await login("zhangwei")
    assert (await zhangwei.post("/api/chat", json={"text": LOG, "conversation": "h", "id": "h1"})).status == 202
    [proposal] = await replies_for(zhangwei, "h")
    assert len(proposal["reply"]["buttons"]) == 3
    before = await (await zhangwei.get("/api/history", params={"conversation": "h"})).json()
    assert [i["type"] for i in before["items"]] == ["me", "bot"] and before["items"][1]["done"] is False

    assert (await zhangwei.post("/api/chat", json={"text": "1", "conversation": "h", "id": "h2"})).status == 202  # typed, not clicked
    await replies_for(zhangwei, "h", 2)
    body = await (await zhangwei.get("/api/history", params={"conversation": "h"})).json()
    items = body["items"]
    assert [i["type"] for i in items] == ["me", "bot", "me", "bot"]
    assert items[0]["text"] == LOG and items[2]["text"] == "1"
    assert items[1]["id"] == proposal["id"] and items[1]["done"] is True and items[1]["chosen"] == ""  # settled, by no click
    assert "✓" in items[3]["reply"]["text"] and body["after"] == items[3]["id"]

    lijun = await login("lijun")
    assert (await lijun.get("/api/history", params={"conversation": "web-zhangwei"})).status == 403
    assert (await (await lijun.get("/api/history", params={"conversation": "h"})).json())["items"] == []  # his own "h" is empty
    assert (await gateway.get("/api/history", params={"conversation": "h"})).status == 401

    # a rep's upload is a draft whose approval enablement is asked for in their web chat; decided elsewhere (another
    # conversation here), the question is settled in theirs too
    form = aiohttp.FormData()
    form.add_field("file", b"# Field note\n\nThe demo widget ships in blue.\n", filename="field-note.md", content_type="text/markdown")
    assert (await zhangwei.post("/api/chat", data=form)).status == 202
    chenjing = await login("chenjing")
    [question] = await replies_for(chenjing, "web-chenjing")
    ref = question["reply"]["buttons"][0]["ref"]
    assert ref.startswith("kbv:") and question["reply"]["buttons"][0]["key"] == "kb_approve"
    assert (await (await chenjing.get("/api/history", params={"conversation": "web-chenjing"})).json())["items"][-1]["done"] is False
    await chenjing.post("/api/chat", json={"text": "ok", "conversation": "elsewhere", "id": "a1", "action": {"key": "kb_approve", "ref": ref}})
    await replies_for(chenjing, "elsewhere")
    [asked] = (await (await chenjing.get("/api/history", params={"conversation": "web-chenjing"})).json())["items"]
    assert asked["id"] == question["id"] and asked["done"] is True and asked["chosen"] == ""

    # the page's words: the switch's cookie first, then the browser's languages
    en = await (await zhangwei.get("/api/chat/ui", headers={"Accept-Language": "fr-FR,en;q=0.8"})).json()
    assert en["lang"] == "en" and en["words"]["chat_send"] == "Send" and en["langs"] == {"en": "English", "zh": "中文"}
    zh = await (await zhangwei.get("/api/chat/ui", headers={"Accept-Language": "en-US", "Cookie": "copilot_lang=zh"})).json()
    assert zh["lang"] == "zh" and zh["words"]["chat_send"] == "发送"
    page = await zhangwei.get("/chat")
    assert page.status == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert (await zhangwei.get("/chat/assets/marked.min.js")).status == 200
    r = await zhangwei.get("/", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/chat"
