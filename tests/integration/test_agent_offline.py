"""The agent in offline mode (no model): a real product mode, tested through the agent's entry points
with the bundled knowledge and sample CRM on a real SQLite store."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from connectors.message import Action, InboundMessage

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 16, 30, tzinfo=SH)  # Wednesday
LOG = "今天拜访了华东医疗集团王总，关注价格，下周二再约"


class Chat:
    """One rep's conversation with the agent (what the router does for a text message)."""

    def __init__(self, cp, rep_id: str, conv: str = "t") -> None:
        self.cp, self.person, self.conv, self.n = cp, cp.directory.get("default", rep_id), conv, 0

    def say(self, text: str):
        self.n += 1
        msg = InboundMessage(channel="console", tenant="default", conversation_id=self.conv, sender_id=self.person.id,
                             text=text, platform_msg_id=f"{self.conv}-{self.n}", received_at=NOW)
        return self.cp.agent.handle(self.person, msg)

    def click(self, key: str, ref: str):
        return self.cp.agent.act(self.person, Action(key=key, ref=ref), f"console|default|{self.conv}", at=NOW)


def count(cp, model, **where) -> int:
    with Session(cp.engine) as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return s.execute(q).scalar()


def test_crm_log_is_proposed_then_written_once(copilot):
    from crm.models import Activity, Task

    chat = Chat(copilot, "zhangwei")
    before = count(copilot, Activity, account_id="acc-001")
    [reply] = chat.say(LOG)
    assert reply.kind == "confirm" and [b.key for b in reply.buttons] == ["confirm", "edit", "reject"]
    assert "华东医疗集团" in reply.text and "王建国" in reply.text
    assert "12-01" in reply.text  # 下周二 from Wednesday 25 Nov = Tuesday 1 Dec
    assert count(copilot, Activity, account_id="acc-001") == before  # nothing written before the yes
    pid = reply.buttons[0].ref
    [done] = chat.click("confirm", pid)
    assert "✓" in done.text
    [again] = chat.click("confirm", pid)  # the same button clicked twice
    assert "已经处理" in again.text
    [typed] = chat.say("1")  # and a typed "1" afterwards: nothing pending any more → not a confirmation
    assert count(copilot, Activity, account_id="acc-001") == before + 1
    with Session(copilot.engine) as s:
        act = s.execute(select(Activity).where(Activity.account_id == "acc-001").order_by(Activity.created_at.desc())).scalars().first()
        task = s.execute(select(Task).where(Task.source == f"pending:{pid}")).scalars().one()
    assert act.kind == "visit" and act.contact_id and "价格" in act.summary and act.rep_id == "zhangwei"
    assert task.due_at.astimezone(SH).date().isoformat() == "2026-12-01" and "再约" in task.title


def test_typed_confirmation_and_cancel(copilot):
    from crm.models import Activity

    chat = Chat(copilot, "zhangwei", "typed")
    before = count(copilot, Activity)
    chat.say(LOG)
    [cancel] = chat.say("3")
    assert "取消" in cancel.text and count(copilot, Activity) == before
    chat.say(LOG.replace("下周二", "周五"))
    [ok] = chat.say("确认")
    assert "✓" in ok.text and count(copilot, Activity) == before + 1


def test_edit_reply_corrects_the_proposal(copilot):
    from crm.models import Task

    chat = Chat(copilot, "zhangwei", "edit")
    [proposal] = chat.say(LOG)
    [prompt] = chat.say("2")
    assert "回复" in prompt.text
    [fixed] = chat.say("时间改成下周三下午两点")
    assert "12-02" in fixed.text and "14:00" in fixed.text
    chat.say("1")
    with Session(copilot.engine) as s:
        task = s.execute(select(Task).where(Task.source == f"pending:{proposal.buttons[0].ref}")).scalars().one()
    assert task.due_at.astimezone(SH).strftime("%m-%d %H:%M") == "12-02 14:00"


def test_ambiguous_account_asks_which_one(copilot):
    chat = Chat(copilot, "lina", "ambiguous")  # a 华东区 manager: both 华东医疗 accounts are her team's
    [ask] = chat.say("今天拜访了华东医疗，聊了UDI追溯，下周一再约")
    assert ask.kind == "confirm" and "华东医疗集团" in ask.text and "华东医疗器械有限公司" in ask.text
    [proposal] = chat.say("2")
    assert "华东医疗器械有限公司" in proposal.text and proposal.buttons[0].key == "confirm"


def test_a_rep_cannot_log_against_another_reps_account(copilot):
    chat = Chat(copilot, "wangfang", "scope")  # 华南区 rep
    [reply] = chat.say(LOG)
    assert reply.kind == "notice" and not reply.buttons


def test_comparison_table_cites_every_cell(copilot):
    chat = Chat(copilot, "zhangwei", "cmp")
    [reply] = chat.say("我们和星图在实施周期上怎么比？")
    assert reply.markdown.count("|") > 20
    rows = [r for r in reply.markdown.splitlines() if r.startswith("| ") and "---" not in r]
    assert rows[0].startswith("| 维度") and rows[1].startswith("| 交付周期")  # the asked aspect first
    assert {c.doc_id for c in reply.citations} == {"prod-scm-cloud", "bc-xingtu"}
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert all(c == "—" or c.endswith(("[1]", "[2]")) for c in cells), row
    assert "4–6 个月" in reply.markdown


def test_draft_is_grounded_and_never_sent_without_approval(copilot):
    from bot.pipeline.tables import OutboundRow
    from crm.models import Activity

    chat = Chat(copilot, "zhangwei", "draft")
    [draft] = chat.say("/draft 华东医疗集团")
    assert draft.kind == "draft" and "王建国" in draft.text and "张伟" in draft.text
    assert draft.meta["variant"].startswith("template:")
    assert count(copilot, OutboundRow, channel="email") == 0
    [no_channel] = chat.click("confirm", draft.buttons[0].ref)  # no email channel configured here
    assert "邮件通道" in no_channel.text and count(copilot, OutboundRow, channel="email") == 0
    [gone] = chat.click("reject", draft.buttons[0].ref)
    assert "放弃" in gone.text
    assert count(copilot, Activity, source=f"pending:{draft.buttons[0].ref}") == 0


def test_my_day_and_why_and_feedback(copilot):
    from rag.store import Feedback

    chat = Chat(copilot, "zhangwei", "day")
    [day] = chat.say("/todo")
    assert "逾期" in day.text or "到期" in day.text or "停滞" in day.text
    [ans] = chat.say("蓝海支持 UDI 吗？")
    assert ans.grounded and ans.citations
    [why] = chat.say("/why")
    assert "依据" in why.text and ans.citations[0].title in why.text
    chat.say("👎")
    assert count(copilot, Feedback) >= 1


@pytest.mark.parametrize("question", ["折扣审批的规则是什么？七折以下谁批？", "What discount needs VP approval?"])
def test_managers_only_content_never_reaches_a_rep(copilot, question):
    rep = Chat(copilot, "zhangwei", "perm-rep").say(question)[0]
    manager = Chat(copilot, "lina", "perm-mgr").say(question)[0]
    assert "pricing-discount-approval" not in [c.doc_id for c in rep.citations]
    assert "VP" not in rep.text or "审批" not in rep.text
    assert "pricing-discount-approval" in [c.doc_id for c in manager.citations] or not manager.grounded


def test_team_restricted_content(copilot):
    south = Chat(copilot, "wangfang", "team-s").say("华东区重点客户的报价口径是什么？")[0]
    east = Chat(copilot, "zhangwei", "team-e").say("华东区重点客户的报价口径是什么？")[0]
    assert "pricing-huadong-strategy" not in [c.doc_id for c in south.citations]
    assert "pricing-huadong-strategy" in [c.doc_id for c in east.citations]


def test_store_visit_from_plain_words(copilot):
    from crm.models import StoreVisit

    chat = Chat(copilot, "zhaoqiang", "store")
    with Session(copilot.engine) as s:
        from crm.models import Store

        store = s.execute(select(Store)).scalars().first()
    before = count(copilot, StoreVisit)
    [proposal] = chat.say(f"今天巡店{store.name}，陈列正常，酸奶缺货，蓝海在做买一送一，下单3200元")
    assert "酸奶缺货" in proposal.text and "买一送一" in proposal.text and "3,200" in proposal.text
    chat.say("1")
    assert count(copilot, StoreVisit) == before + 1


def test_group_messages_never_carry_crm_data_or_manager_content(copilot):
    manager = copilot.directory.get("default", "lina")

    def group(text: str, n: int):
        msg = InboundMessage(channel="console", conversation_id="grp", sender_id="lina", text=text, platform_msg_id=f"g{n}",
                             received_at=NOW, is_group=True)
        return copilot.agent.handle(manager, msg)

    [log] = group(LOG, 1)
    assert "单聊" in log.text and not log.buttons
    [ans] = group("折扣低于七折需要谁审批？", 2)
    assert "pricing-discount-approval" not in [c.doc_id for c in ans.citations]


def test_draft_variants_are_measured(copilot):
    from bot.agent.draft import variant_report

    chat = Chat(copilot, "zhangwei", "ab")
    [d1] = chat.say("/draft 华东医疗集团")
    chat.click("reject", d1.buttons[0].ref)
    [d2] = chat.say("/draft 华东医疗集团 用微信")
    chat.say("2")
    chat.say("王总您好，上次提到的三年期报价我们已经准备好了，本周方便电话沟通吗？")
    chat.say("1")
    [row] = [r for r in variant_report(copilot.engine, "default") if r["proposed"] >= 2]
    assert row["rejected"] == 1 and row["sent_edited"] == 1 and row["sent_unchanged"] == 0
