"""Customer email through the whole pipeline: logged to the CRM, the rep told in chat, a threaded reply
drafted on request and sent only after approval; automatic and unknown mail never answered."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from sqlalchemy import select
from sqlmodel import Session

from connectors.message import Attachment, InboundMessage, MailFacts, Reply, Target
from tests.conftest import replies_for


class RecordingMail:
    """The email channel's outbound side, recording what would go over SMTP (SMTP itself is tested
    against aiosmtpd in the email connector's own tests). A name, a sender and a file fetcher: the
    capabilities it lacks (receivers, doctor) the core does without."""

    name = "email"

    def __init__(self) -> None:
        self.sent: list[tuple[Target, Reply, str]] = []

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        self.sent.append((target, reply, key))

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        return b"# not for customers\n\ntext"


def mail(msg_id: str, sender: str, text: str, auto: str = "") -> InboundMessage:
    mid = f"<{msg_id}@hdmg.example.com>"
    return InboundMessage(channel="email", conversation_id=mid, sender_id=sender, sender_name="王建国", text=text, platform_msg_id=mid,
                          received_at=datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc), from_outside=True, auto_reply_forbidden=auto,
                          mail=MailFacts(subject="Re: 报价方案", message_id=mid, to=("copilot@yunfan.example.com",),
                                         cc=("zhangwei@yunfan.example.com",)),
                          reply_context={"mailbox": "default", "message_id": mid, "subject": "Re: 报价方案", "from": sender})


async def test_customer_mail_is_logged_and_the_rep_drafts_a_threaded_reply(make_app, aiohttp_client, login_to):
    from bot.web.gateway import create_web_app
    from crm.models import Activity

    outbox = RecordingMail()
    copilot = make_app(channels=[outbox])
    client = await login_to(await aiohttp_client(create_web_app(copilot)), copilot, "zhangwei")
    customer = mail("m1", "wangjianguo@hdmg.example.com", "张经理好，我们比较关注价格，能否再给一个三年期的报价？\n\n-----原始邮件-----")
    await copilot.intake.sink(customer)
    await copilot.intake.sink(customer)  # the same mail seen twice (two mailboxes, a resync)
    [note] = await replies_for(client, "web-zhangwei")
    assert "王建国" in note["reply"]["text"] and "价格" in note["reply"]["text"] and note["reply"]["buttons"][0]["key"] == "confirm"
    with Session(copilot.engine) as s:
        logged = s.execute(select(Activity).where(Activity.source == "email:<m1@hdmg.example.com>")).scalars().all()
    assert len(logged) == 1 and logged[0].kind == "email" and logged[0].account_id == "acc-001" and logged[0].rep_id == "zhangwei"
    assert outbox.sent == []  # nothing went back to the customer

    await client.post("/api/chat", json={"text": "1", "conversation": "web-zhangwei", "id": "c1"})
    got = await replies_for(client, "web-zhangwei", 2)
    draft = got[1]["reply"]
    assert draft["kind"] == "draft" and "Re: 报价方案" in draft["text"] and "Re: Re:" not in draft["text"]
    assert outbox.sent == []  # a draft is not a send
    await client.post("/api/chat", json={"text": "1", "conversation": "web-zhangwei", "id": "c2"})
    await replies_for(client, "web-zhangwei", 3)
    for _ in range(50):
        if outbox.sent:
            break
        await asyncio.sleep(0.1)
    [(target, reply, key)] = outbox.sent
    email = reply.meta["email"]
    assert email["to"] == ["wangjianguo@hdmg.example.com"] and email["in_reply_to"] == "<m1@hdmg.example.com>"
    assert email["references"] == ["<m1@hdmg.example.com>"] and email["subject"] == "Re: 报价方案"
    assert reply.kind == "draft" and key.startswith("draft:")


async def test_automatic_unknown_and_attachment_mail_is_never_answered(make_app, aiohttp_client):
    from bot.pipeline.tables import OutboundRow
    from bot.web.gateway import create_web_app
    from rag.retrieve import Viewer

    outbox = RecordingMail()
    copilot = make_app(channels=[outbox])
    await aiohttp_client(create_web_app(copilot))
    await copilot.intake.sink(mail("ooo", "wangjianguo@hdmg.example.com", "我正在休假，12月1日回来。", auto="Auto-Submitted: auto-replied"))
    await copilot.intake.sink(mail("spam", "stranger@unknown.example", "Buy now"))
    await copilot.intake.sink(InboundMessage(**{**mail("att", "wangjianguo@hdmg.example.com", "附件是我们的需求").model_dump(),
                                          "kind": "file", "attachments": (Attachment(name="需求.md", ref="x"),)}))
    await asyncio.sleep(1.5)
    with Session(copilot.engine) as s:
        rows = s.execute(select(OutboundRow)).scalars().all()
    assert all(r.channel != "email" for r in rows) and outbox.sent == []
    assert not copilot.directory.pending()  # an unknown external sender is not asked to register
    assert not any(h.doc_id == "需求.md" for h in copilot.knowledge.retriever.search("需求", Viewer("default", "admin"), k=10))
