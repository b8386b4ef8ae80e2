"""The channel core without a platform: capabilities checked by isinstance, the text fallbacks a connector
with only `send_text` gets, refusals for what a connector cannot do, and the message model's typed facts."""
from __future__ import annotations

import asyncio
import json

import pytest

from bot.pipeline.channels import CannotFetch, Channels
from connectors.channel import BackgroundReceiver, Closable, Diagnosable, FileFetcher, HttpReceiver, Previewer, RichSender, TextSender
from connectors.local.terminal import TerminalConnector
from connectors.message import Attachment, Button, Citation, InboundMessage, MailFacts, Reply, Target
from connectors.text import fallback_line, utf8_len


class TextOnly:
    """A new platform: a name and send_text, nothing else."""

    name = "pager"
    text_unit = "chars"

    def __init__(self, limit: int = 60, unit: str = "chars") -> None:
        self.text_limit, self.text_unit = limit, unit
        self.sent: list[tuple[str, str]] = []

    async def send_text(self, target: Target, text: str, key: str) -> None:
        self.sent.append((text, key))


def run(coro):
    return asyncio.run(coro)


def target(channel: str = "pager") -> Target:
    return Target(channel=channel, conversation_id="c1", user_id="u1")


def test_capabilities_are_checked_by_isinstance():
    from connectors.local import LocalConnector
    from connectors.wecom import WeComConnector

    term = TerminalConnector(lambda _: None)
    assert isinstance(term, TextSender) and not isinstance(term, (RichSender, HttpReceiver, BackgroundReceiver, FileFetcher, Diagnosable))
    wecom = WeComConnector([])
    assert all(isinstance(wecom, p) for p in (HttpReceiver, RichSender, FileFetcher, Diagnosable, Closable))
    assert not isinstance(wecom, Previewer)
    web = LocalConnector(None, None)  # type: ignore[arg-type]
    assert isinstance(web, Previewer) and isinstance(web, HttpReceiver)


def test_a_text_only_connector_gets_citations_numbered_buttons_and_parts_under_its_limit():
    pager = TextOnly(limit=60)
    chans = Channels([pager])
    reply = Reply(text="星图的实施周期一般为三到四周，复杂场景需要六到八周。" * 3 + "[1]",
                  citations=[Citation(n=1, doc_id="bc", title="星图竞品卡", version="3")],
                  buttons=[Button(key="confirm", label="确认", ref="p1", reply="1"), Button(key="reject", label="取消", ref="p1", reply="3")])
    run(chans.send(target(), reply, "k"))
    texts = [t for t, _ in pager.sent]
    assert len(texts) > 1 and all(len(t) <= 60 for t in texts)
    assert [k for _, k in pager.sent] == [f"k#{i}" for i in range(1, len(texts) + 1)]  # one idempotency key per part
    joined = "\n".join(texts)
    assert "[1] 星图竞品卡 v3" in joined and texts[-1].endswith("回复 1 确认 / 3 取消")
    one = TextOnly(limit=1000)
    run(Channels([one]).send(target(), Reply(text="好的"), "k2"))
    assert one.sent == [("好的", "k2")]


def test_a_byte_limit_is_counted_in_utf8_and_never_cuts_a_character():
    pager = TextOnly(limit=64, unit="bytes")
    run(Channels([pager]).send(target(), Reply(text="医疗行业客户关注追溯🏥" * 30), "k"))
    assert all(utf8_len(t) <= 64 for t, _ in pager.sent)
    assert "".join(t for t, _ in pager.sent) == "医疗行业客户关注追溯🏥" * 30


def test_what_a_connector_cannot_do_is_refused_or_neutral():
    chans = Channels([TextOnly(), TerminalConnector(lambda _: None)])
    msg = InboundMessage(channel="pager", conversation_id="c", sender_id="u", platform_msg_id="m", kind="file",
                         attachments=(Attachment(name="报价.pdf"),))
    with pytest.raises(CannotFetch, match="cannot fetch files"):
        run(chans.fetch(msg, msg.attachments[0]))
    assert chans.preview(msg) is None
    assert [c.ok for c in run(chans.doctor())] == [True, True]
    assert chans.routes(lambda m: None) == []  # type: ignore[arg-type, return-value]
    run(chans.start(lambda m: None))  # type: ignore[arg-type, return-value]
    run(chans.aclose())

    class Mute:
        name = "mute"

    with pytest.raises(TypeError, match="send_text"):
        Channels([Mute()])  # type: ignore[list-item]


def test_the_terminal_prints_the_text_rendering():
    out: list[str] = []
    term = TerminalConnector(out.append)
    run(Channels([term]).send(target("console"), Reply(text="要写入吗？", buttons=[Button(key="confirm", label="确认", ref="p")]), "k"))
    assert out == ["要写入吗？\n\n回复 1 确认"] and term.delivered.is_set()


def test_fallback_line_speaks_the_replys_language():
    zh = [Button(key="confirm", label="确认", ref="p", reply="1"), Button(key="reject", label="取消", ref="p", reply="3")]
    assert fallback_line(zh) == "回复 1 确认 / 3 取消"  # Chinese unless the reply is English
    assert fallback_line([Button(key="confirm", label="Confirm", ref="p")], "en") == "Reply 1 Confirm"
    assert fallback_line([Button(key="confirm", label="Confirm", ref="p")], "zh") == "回复 1 Confirm"


def test_typed_channel_facts_default_and_old_inbox_rows_still_load():
    plain = InboundMessage(channel="wecom", conversation_id="c", sender_id="u", platform_msg_id="m")
    assert (plain.auto_reply_forbidden, plain.from_outside, plain.mail) == ("", False, None)
    old = {"channel": "email", "tenant": "default", "conversation_id": "<r@c.cn>", "sender_id": "wang@c.cn", "platform_msg_id": "<m@c.cn>",
           "text": "休假中", "reply_context": {"mailbox": "default", "message_id": "<m@c.cn>", "references": ["<r@c.cn>"], "subject": "自动回复",
                                             "from": "wang@c.cn", "to": ["sales@s.cn"], "cc": [], "reply_to": [], "no_reply": "Auto-Submitted: auto-replied"}}
    msg = InboundMessage.model_validate_json(json.dumps(old))
    assert msg.auto_reply_forbidden == "Auto-Submitted: auto-replied" and msg.from_outside
    assert msg.mail == MailFacts(subject="自动回复", message_id="<m@c.cn>", references=("<r@c.cn>",), to=("sales@s.cn",))
    assert InboundMessage.model_validate_json(msg.model_dump_json()) == msg
    old_chat = {"channel": "console", "conversation_id": "c", "sender_id": "u", "platform_msg_id": "m", "reply_context": {}}
    assert InboundMessage.model_validate(old_chat).mail is None
