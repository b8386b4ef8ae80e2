"""The CRM API the agent uses, on SQLite and on PostgreSQL, over the bundled sample data."""
from __future__ import annotations

import threading
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from bot.agent.facts import day_item, reasons
from bot.prompts import Prompts
from bot.settings import PROMPTS_DIR
from crm.models import Activity, CrmWrite, StageChange, SyncDelivery, SyncEvent
from crm.service import CRM, CRMError, NotFound
from crm.sync.outbox import register_sinks
from tests.fakes.crm_db import db_url, engine, sample  # noqa: F401  (fixtures)

SH = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 25)
WORDS = Prompts(PROMPTS_DIR)  # crm returns facts; the bot words them from the catalogue


def count(engine, model, **where) -> int:  # noqa: F811
    with Session(engine) as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return s.execute(q).scalar()


@pytest.fixture
def crm(sample):  # noqa: F811
    return CRM(sample)


def ids(rows) -> list[str]:
    return [r.id for r in rows]


def test_accounts_named_in_free_text_most_specific_first(crm):
    assert ids(crm.find_accounts("default", "昨天拜访了华东医疗集团的王总")) == ["acc-001"]  # not 华东医疗器械 ("华东医疗" inside it)
    assert set(ids(crm.find_accounts("default", "华东医疗那边"))) == {"acc-001", "acc-002"}  # the shared alias is ambiguous
    assert ids(crm.find_accounts("default", "和苏州精工、鲜丰连锁都聊了")) == ["acc-003", "acc-004"]
    assert ids(crm.find_accounts("default", "BDA asked for SSO")) == ["acc-007"]
    assert crm.find_accounts("default", "BDAY party") == []  # ASCII aliases only as whole words
    assert ids(crm.find_accounts("default", "精工")) == ["acc-003"]  # the start of an alias
    assert crm.find_accounts("other-tenant", "华东医疗集团") == []


def test_contacts_by_full_name_and_honorific(crm):
    assert ids(crm.find_contacts("default", "王总说报价太高")) == ["con-001"]
    assert ids(crm.find_contacts("default", "刘主任关心等保")) == ["con-002"]
    assert ids(crm.find_contacts("default", "陈晓东回复了")) == ["con-003"]
    assert ids(crm.find_contacts("default", "孙经理要导出记录")) == ["con-004"]
    assert ids(crm.find_contacts("default", "Mr. Wang called back")) == ["con-001"]  # pinyin surname
    assert ids(crm.find_contacts("default", "Ms. Wong asked about the contract")) == ["con-011"]
    assert ids(crm.find_contacts("default", "Emily asked", ["acc-007"])) == ["con-011"]  # a given name, within the account
    assert crm.find_contacts("default", "王总", ["acc-003"]) == []
    assert crm.find_contacts("default", "这周工作很忙，小王总结了一下") == []  # 周工作 and 王总结 are words, not honorifics


def test_account_by_email_and_domain(crm):
    acc, con = crm.account_by_email("default", "WangJianGuo@hdmg.example.com")
    assert (acc.id, con.id) == ("acc-001", "con-001")
    acc, con = crm.account_by_email("default", "newperson@mail.hdmg.example.com")
    assert (acc.id, con) == ("acc-001", None)
    assert crm.account_by_email("default", "someone@qq.com") == (None, None)


def test_account_context_and_open_opportunities(crm):
    ctx = crm.account_context("default", "acc-001", limit=3)
    assert ctx.account.name == "华东医疗集团"
    assert ids(ctx.contacts) == ["con-001", "con-002"]
    assert set(ids(ctx.open_opportunities)) == {"opp-001", "opp-015"}
    assert ids(ctx.activities) == ["act-043", "act-037", "act-035"]  # newest first
    assert ids(ctx.open_tasks) == ["task-002", "task-003"]
    assert ids(crm.open_opportunities("default", "acc-003")) == ["opp-003"]  # the won one is closed
    with pytest.raises(NotFound):
        crm.account_context("default", "acc-999")


def test_my_day(crm):
    day = crm.my_day("default", "zhangwei", TODAY, "Asia/Shanghai")
    assert ids(day.due_today) == ["task-004"] and day_item(WORDS, day.due_today[0], "zh").startswith("18:00 确认苏州精工")
    assert day.due_today[0].code == "due" and day.due_today[0].params["time"] == "18:00"
    assert ids(day.overdue) == ["task-005", "task-006"] and day.overdue[0].days == 15
    assert day_item(WORDS, day.overdue[0], "zh").endswith(" · 逾期 15 天") and day_item(WORDS, day.overdue[0], "en").endswith(" · 15 days overdue")
    assert ids(day.stale_deals) == ["opp-015", "opp-012"] and "19 天" in day_item(WORDS, day.stale_deals[1], "zh")
    assert day_item(WORDS, day.stale_deals[1], "en").endswith(": idle for 19 days")
    tom = crm.my_day("default", "tom", date(2026, 11, 26), "Asia/Shanghai")
    assert ids(tom.due_today) == ["task-015"] and tom.overdue == [] and tom.stale_deals == []
    wf = crm.my_day("default", "wangfang", date(2026, 11, 26), "Asia/Shanghai")
    assert "task-014" in ids(wf.meetings_today)  # 上门拜访 is a meeting


def test_writes_are_idempotent_and_go_through_the_outbox(crm, sample):  # noqa: F811
    register_sinks(sample, ["webhook", "hubspot"])
    before = count(sample, SyncEvent)
    kw = dict(account_id=None, contact_id="con-001", opportunity_id="opp-001", rep_id="zhangwei", kind="visit",
              occurred_at=datetime(2026, 11, 25, 15, 0, tzinfo=SH), summary="王总同意分两期付款", source="console|default|c1|m1",
              idempotency_key="msg-1:log", actor="zhangwei")
    first = crm.log_activity("default", **kw)
    again = crm.log_activity("default", **{**kw, "summary": "changed on retry"})
    assert again.id == first.id and again.summary == "王总同意分两期付款" and again.occurred_at == first.occurred_at
    assert first.account_id == "acc-001"  # taken from the contact and checked against the deal
    assert count(sample, Activity, id=first.id) == 1
    assert count(sample, SyncEvent) == before + 1
    ev = count(sample, SyncEvent, entity_id=first.id)
    assert ev == 1 and count(sample, SyncDelivery, status="pending") == 2 * (before + 1) - 2 * before  # one per sink
    with Session(sample) as s:
        w = s.get(CrmWrite, ("default", "msg-1:log"))
    assert (w.actor, w.source, w.op) == ("zhangwei", "console|default|c1|m1", "log_activity")
    with pytest.raises(CRMError, match="already used"):
        crm.create_task("default", rep_id="zhangwei", account_id="acc-001", opportunity_id=None, title="x", due_at=None,
                        source="", idempotency_key="msg-1:log", actor="zhangwei")


def test_a_refused_write_leaves_nothing_behind(crm, sample):  # noqa: F811
    before = (count(sample, Activity), count(sample, SyncEvent), count(sample, CrmWrite))
    with pytest.raises(CRMError, match="belongs to account"):
        crm.log_activity("default", account_id="acc-003", contact_id="con-001", opportunity_id=None, rep_id="zhangwei", kind="call",
                         occurred_at=datetime(2026, 11, 25, 9, tzinfo=SH), summary="x", source="", idempotency_key="bad-1", actor="zhangwei")
    with pytest.raises(NotFound):
        crm.create_task("default", rep_id="nobody", account_id=None, opportunity_id=None, title="x", due_at=None, source="",
                        idempotency_key="bad-2", actor="x")
    with pytest.raises(CRMError, match="time zone"):
        crm.log_store_visit("default", store_id="store-001", rep_id="wangfang", visited_at=datetime(2026, 11, 25, 9), display_ok=True,
                            stock_issues="", competitor_promo="", order_amount=1, notes="", source="", idempotency_key="bad-3", actor="x")
    assert (count(sample, Activity), count(sample, SyncEvent), count(sample, CrmWrite)) == before


def test_concurrent_calls_with_one_key_make_one_write(crm, sample):  # noqa: F811
    results, errors = [], []

    def call() -> None:
        try:
            results.append(crm.create_task("default", rep_id="lijun", account_id="acc-002", opportunity_id="opp-002", title="发送报价",
                                           due_at=datetime(2026, 11, 27, 18, tzinfo=SH), source="m9", idempotency_key="race", actor="lijun"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({r.id for r in results}) == 1
    assert count(sample, SyncEvent, entity_id=results[0].id) == 1


def test_update_opportunity_and_complete_task(crm, sample):  # noqa: F811
    opp = crm.update_opportunity("default", "opp-002", {"stage": "negotiation", "amount": "380000", "close_date": "2027-01-20",
                                                        "next_step": " 约陈总面谈 "}, idempotency_key="u1", actor="lijun", source="m2")
    assert (opp.stage, opp.amount, str(opp.close_date), opp.next_step) == ("negotiation", 380000.0, "2027-01-20", "约陈总面谈")
    assert opp.stage_changed_at.year == datetime.now().year or opp.stage_changed_at > datetime(2026, 11, 24, tzinfo=SH)
    assert count(sample, StageChange, opportunity_id="opp-002", from_stage="proposal", to_stage="negotiation") == 1
    same = crm.update_opportunity("default", "opp-002", {"stage": "won"}, idempotency_key="u1", actor="lijun", source="m2")
    assert same.stage == "negotiation"  # the first result, not a second write
    for bad, msg in (({"stage": "closed"}, "stage must be"), ({"owner_id": "x"}, "cannot change"), ({"amount": "lots"}, "number"),
                     ({"close_date": "next week"}, "close_date")):
        with pytest.raises(CRMError, match=msg):
            crm.update_opportunity("default", "opp-002", bad, idempotency_key=f"bad-{msg}", actor="lijun", source="")
    task = crm.complete_task("default", "task-007", idempotency_key="c1", actor="lijun")
    assert task.done and task.done_at is not None


def test_store_visit_and_find_stores(crm):
    assert ids(crm.find_stores("default", "今天去了天河店，陈列没问题")) == ["store-001"]
    assert ids(crm.find_stores("default", "深圳南山店鲜奶又多了")) == ["store-003"]
    assert ids(crm.find_stores("default", "鲜丰超市上海徐汇店")) == ["store-006"]
    v = crm.log_store_visit("default", store_id="store-002", rep_id="wangfang", visited_at=datetime(2026, 11, 25, 10, tzinfo=SH),
                            display_ok=False, stock_issues="鸡蛋缺货", competitor_promo="竞品鸡蛋特价", order_amount=9800.0,
                            notes="", source="m5", idempotency_key="sv1", actor="wangfang")
    assert v.id.startswith("sv-") and v.display_ok is False and v.order_amount == 9800.0


def test_scores_explain_themselves(crm):
    quiet = crm.score_opportunity("default", "opp-012", TODAY)  # proposal, last contact Nov 6, two overdue tasks
    assert [r.code for r in quiet.reasons[:2]] == ["recency", "stage_age"] and quiet.reasons[0].params == {"n": 19}
    assert reasons(WORDS, quiet.reasons, "en")[:2] == ["no contact for 19 days", "stage age 2.8x typical"]
    assert "2 overdue tasks" in reasons(WORDS, quiet.reasons, "en") and "19 天未联系" in reasons(WORDS, quiet.reasons, "zh")
    hot = crm.score_opportunity("default", "opp-001", TODAY)  # negotiation, touched 5 days ago, next step set
    assert hot.value > quiet.value + 40 and all(r.impact >= 0 for r in hot.reasons)
    won = crm.score_opportunity("default", "opp-004", TODAY)
    assert won.value == 100 and reasons(WORDS, won.reasons, "zh") == ["已赢单"] and reasons(WORDS, won.reasons, "en") == ["won"]
    ranked = crm.score_many("default", TODAY, rep_id="zhangwei")
    assert [o.id for o, _ in ranked] == ["opp-001", "opp-003", "opp-012", "opp-015"]  # best first


def test_the_store_report_and_hubspot_notes_are_worded_in_the_readers_language(crm):
    from bot.agent.facts import store_report
    from crm.stores import supervisor_summary
    from crm.sync import IdMap
    from crm.sync.hubspot import HubSpotSink

    crm.log_store_visit("default", store_id="store-003", rep_id="wangfang", visited_at=datetime(2026, 11, 25, 10, tzinfo=SH), display_ok=False,
                        stock_issues="鲜奶缺货", competitor_promo="对面超市酸奶买一送一", order_amount=5000, notes="", source="m1",
                        idempotency_key="v1", actor="wangfang")
    summary = supervisor_summary(crm.engine, "default", "zhaoqiang", TODAY, "Asia/Shanghai")
    assert [p.code for p in summary.problems][:1] == ["display_again"] and summary.problems[0].params == {"times": 2, "days": 14}
    zh, en = store_report(WORDS, summary, "zh"), store_report(WORDS, summary, "en")
    assert zh.startswith("【门店日报】11月25日：1 次拜访，1 家门店，订单合计 ¥5,000") and "南山店：陈列不合格（近14天第2次）" in zh
    assert en.startswith("Store report Nov 25: 1 visit, 1 store, orders ¥5,000") and "1. 南山店: display not to plan (2x in 14 days)" in en
    assert "Competitor activity:\n- 南山店: 对面超市酸奶买一送一" in en and "低" not in en
    visit = {"id": "sv-1", "store_id": "store-003", "display_ok": False, "stock_issues": "鲜奶缺货", "order_amount": 5000, "visited_at": "2026-11-25T02:00:00Z"}
    for lang, body in (("zh", "门店拜访 store-003\n陈列不合格\n缺货/库存：鲜奶缺货\n订单金额：5000"),
                       ("en", "Store visit store-003\nDisplay not to plan\nStock issues: 鲜奶缺货\nOrder amount: 5000")):
        sink = HubSpotSink("pat", IdMap(crm.engine, "hubspot"), labels=WORDS.catalogue(lang))
        assert sink._properties("default", "store_visit", visit)["hs_note_body"] == body
    with pytest.raises(ValueError, match="hubspot_visit"):
        HubSpotSink("pat", IdMap(crm.engine, "hubspot"), labels={})
