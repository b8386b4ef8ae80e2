"""Every reply carries its reader's language (Reply.lang: the question's, else the person's), and the
channels label it in that language: the agent in offline mode, with the bundled knowledge and sample CRM."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from connectors.message import Action, InboundMessage
from connectors.wecom.render import render as wecom_render

NOW = datetime(2026, 11, 25, 16, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


def ask(cp, rep_id: str, text: str, n: int = 1):
    person = cp.directory.get("default", rep_id)
    msg = InboundMessage(channel="console", tenant="default", conversation_id=f"lang-{rep_id}", sender_id=rep_id, text=text,
                         platform_msg_id=f"lang-{rep_id}-{n}", received_at=NOW)
    return cp.agent.handle(person, msg)


def markdown(reply) -> str:
    return "\n".join(m["markdown"]["content"] for m in wecom_render(reply, markdown=True, seed="s") if m["msgtype"] == "markdown")


def test_answers_are_labelled_in_the_questions_language(copilot):
    [zh] = ask(copilot, "zhangwei", "我们和星图在实施周期上怎么比？")
    [en] = ask(copilot, "zhangwei", "How is NorthPeak priced?", 2)
    assert zh.lang == "zh" and en.lang == "en"
    assert zh.citations and "> **来源**" in markdown(zh) and "Sources" not in markdown(zh)
    assert en.citations and "> **Sources**" in markdown(en) and "来源" not in markdown(en)


def test_a_bare_command_and_a_click_take_the_persons_language(copilot):
    [todo] = ask(copilot, "zhangwei", "/todo")
    assert todo.lang == "zh"
    [proposal] = ask(copilot, "zhangwei", "今天拜访了华东医疗集团王总，关注价格，下周二再约", 2)
    assert proposal.lang == "zh" and proposal.buttons
    card = wecom_render(proposal, markdown=False, seed="s")[-1]["template_card"]
    assert card["main_title"]["title"] == "请确认"
    person = copilot.directory.get("default", "zhangwei")
    [done] = copilot.agent.act(person, Action(key="reject", ref=proposal.buttons[0].ref), "console|default|lang-zhangwei", at=NOW)
    assert done.lang == "zh"
