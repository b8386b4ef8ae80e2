"""Failure paths through the whole pipeline (intake.sink → dispatcher → agent → outbox → channels):
a draft is "sent ✓" and logged only after the mail platform accepted it; a dead letter is told to the rep
and loses nothing; a confirmation a crash left `executing` returns to pending with a notice."""
from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlmodel import Session

from connectors.channel import SendError
from connectors.message import InboundMessage, Reply, Target
from tests.polling import until

_ids = itertools.count(1)


class Mail:
    """The email channel's outbound side: holds each send until released, then accepts it or fails it for good."""

    name = "email"

    def __init__(self, fail: bool = False) -> None:
        self.release = asyncio.Event()
        self.fail = fail
        self.calls: list[tuple[Target, Reply, str]] = []
        self.accepted: list[str] = []

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        self.calls.append((target, reply, key))
        await self.release.wait()
        if self.fail:
            raise SendError("550 mailbox unavailable", retryable=False)
        self.accepted.append(key)


def say(text: str) -> InboundMessage:
    n = next(_ids)
    return InboundMessage(channel="console", conversation_id="web-zhangwei", sender_id="zhangwei", sender_name="张伟", text=text,
                          platform_msg_id=f"fail-{n}", received_at=datetime.now(timezone.utc))


def texts(cp) -> list[str]:
    from bot.pipeline.tables import OutboundRow

    with Session(cp.engine) as s:
        rows = s.exec(select(OutboundRow).where(OutboundRow.conversation_key.like("%web-zhangwei%")).order_by(OutboundRow.id)).all()
    return [Reply.model_validate_json(r[0].reply).text for r in rows]


def activities(cp, source_prefix: str = "pending:") -> int:
    from crm.models import Activity

    with Session(cp.engine) as s:
        return len(s.exec(select(Activity).where(Activity.source.like(f"{source_prefix}%"), Activity.kind == "email")).all())


async def test_a_draft_is_sent_and_logged_only_after_the_platform_accepted_it(make_app):
    mail = Mail()
    cp = make_app(channels=[mail])
    await cp.start()
    try:
        await cp.intake.sink(say("/draft 华东医疗集团"))
        await until(lambda: any("Dear" in t or "您好" in t for t in texts(cp)))
        before = activities(cp)
        await cp.intake.sink(say("1"))
        await until(lambda: mail.calls)
        await asyncio.sleep(0.5)
        shown = texts(cp)
        assert any("正在发给" in t for t in shown), shown
        assert not any("已发送" in t for t in shown) and activities(cp) == before  # not yet accepted
        mail.release.set()
        await until(lambda: any("已发送给" in t for t in texts(cp)))
        assert activities(cp) == before + 1 and len(mail.accepted) == 1
    finally:
        await cp.aclose()


async def test_a_dead_draft_send_is_told_to_the_rep_and_the_draft_is_kept(make_app):
    mail = Mail(fail=True)
    mail.release.set()
    cp = make_app(channels=[mail])
    await cp.start()
    try:
        await cp.intake.sink(say("/draft 华东医疗集团"))
        await until(lambda: any("Dear" in t or "您好" in t for t in texts(cp)))
        await cp.intake.sink(say("1"))
        failed = await until(lambda: [t for t in texts(cp) if "没有发出" in t])
        assert "550 mailbox unavailable" in failed[0] and activities(cp) == 0
        assert not any("已发送" in t for t in texts(cp))
        mail.fail = False  # the rep sends the same draft again: a new delivery, not the dead one's key
        await cp.intake.sink(say("1"))
        await until(lambda: any("已发送给" in t for t in texts(cp)))
        assert len(mail.calls) == 2 and mail.calls[0][2] != mail.calls[1][2] and activities(cp) == 1
    finally:
        await cp.aclose()


async def test_a_confirmation_left_executing_returns_to_pending_with_a_notice(make_settings, make_app):
    from bot.agent.tables import PendingRow

    mail = Mail()
    mail.release.set()
    cp = make_app(make_settings(lease_seconds=2.0, confirm_stale_seconds=1.0), channels=[mail])
    await cp.start()
    try:
        await cp.intake.sink(say("/draft 华东医疗集团"))
        await until(lambda: any("Dear" in t or "您好" in t for t in texts(cp)))
        [p] = [x for k in _conversation_keys(cp) if (x := cp.agent.pending.latest(k, "zhangwei")) is not None]
        assert cp.agent.pending.claim(p.id)  # the process died right after claiming it
        t = PendingRow.__table__
        with cp.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == p.id).values(decided_at=datetime(2020, 1, 1, tzinfo=timezone.utc)))
        await until(lambda: any("处理中断" in x for x in texts(cp)))
        assert cp.agent.pending.get(p.id).status == "pending"
        await cp.intake.sink(say("1"))  # answered as the confirmation again, not as a knowledge question
        await until(lambda: any("已发送给" in x for x in texts(cp)))
    finally:
        await cp.aclose()


def _conversation_keys(cp) -> list[str]:
    from bot.agent.tables import PendingRow

    t = PendingRow.__table__
    with cp.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(t.c.conversation_key).distinct()).all()]


class Pigeon:
    """A chat platform whose every send is refused for good (a revoked app, a user who left)."""

    name = "pigeon"

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        raise SendError("errcode 81013: user not in the app's visible range", retryable=False)


async def test_a_dead_reply_is_told_to_the_rep_in_the_web_chat(make_app):
    from bot.pipeline.tables import OutboundRow

    cp = make_app(channels=[Pigeon()])
    cp.directory.link("zhangwei", "pigeon", "pz-1", tenant="default")
    await cp.start()
    try:
        await cp.intake.sink(InboundMessage(channel="pigeon", conversation_id="pz-1", sender_id="pz-1", sender_name="张伟",
                                            text="星图软件的实施周期一般多长？", platform_msg_id="pg-1", received_at=datetime.now(timezone.utc)))
        told = await until(lambda: [t for t in texts(cp) if "没能通过 pigeon 送达" in t])
        assert "81013" in told[0] and "星图" in told[0]  # the answer itself, where the rep can read it
        with Session(cp.engine) as s:
            dead = s.execute(select(OutboundRow).where(OutboundRow.channel == "pigeon")).scalars().all()
        assert dead and all(r.status == "dead" for r in dead)
    finally:
        await cp.aclose()
