"""The proactive scheduler with a frozen clock: the 3-consecutive-days rule, quiet hours, the morning
digest sent once, one leader among instances and no double nudges, the store supervisor's summary."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select
from sqlmodel import Session

from bot.app import build_app
from bot.ops.metrics import Metrics
from bot.people.directory import Directory
from bot.pipeline.channels import Channels
from bot.pipeline.outbox import Outbox
from bot.pipeline.tables import OutboundRow
from bot.proactive.nudges import ContentRef
from bot.proactive.scheduler import NudgeConfig, Scheduler
from bot.prompts import Prompts
from bot.settings import PROMPTS_DIR
from connectors.message import Reply, Target
from crm.health import HealthConfig
from crm.models import NudgeLog
from crm.service import CRM
from tests.fakes.crm_db import db_url, engine, load_sample  # noqa: F401  (fixtures)

SH = ZoneInfo("Asia/Shanghai")


def at(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def make_scheduler(engine, owner: str = "a", content=None) -> Scheduler:  # noqa: F811
    outbox = Outbox(engine, Channels([]), Metrics())  # not started: rows stay queued for the assertions
    return Scheduler(engine, outbox, Directory(engine), CRM(engine), "default", "Asia/Shanghai", owner=owner, prompts=Prompts(PROMPTS_DIR),
                     cfg=NudgeConfig(), health=HealthConfig(), content=content)


def run(sched: Scheduler, when: datetime) -> dict | None:
    with time_machine.travel(when, tick=False):
        return sched.run_once()


def outbound(engine, like: str = "nudge:%") -> list[OutboundRow]:  # noqa: F811
    with Session(engine) as s:
        return list(s.execute(select(OutboundRow).where(OutboundRow.dedupe_key.like(like)).order_by(OutboundRow.id)).scalars())


def texts(rows: list[OutboundRow]) -> list[str]:
    return [Reply.model_validate_json(r.reply).text for r in rows]


def test_three_consecutive_days_alert_once_per_streak(engine):  # noqa: F811
    d = Directory(engine)
    d.add("boss", "周明", "manager", team="销售管理部")
    d.add("mia", "李娜", "manager", team="华东区", manager_id="boss")
    d.add("alice", "张伟", "rep", team="华东区", manager_id="mia")
    sched = make_scheduler(engine)

    def health_alerts() -> list[tuple[str, str, str]]:
        with Session(engine) as s:
            return sorted((n.kind, n.recipient, n.period) for n in s.execute(select(NudgeLog).where(NudgeLog.kind.like("health_%"))).scalars())

    run(sched, at(2026, 12, 1, 9))  # scores Mon 11-30: the first day of a streak
    run(sched, at(2026, 12, 2, 9))  # Tue: day two
    assert health_alerts() == []
    run(sched, at(2026, 12, 3, 9))  # Wed: day three -> the rep is coached, the manager alerted
    assert health_alerts() == [("health_manager", "mia", "2026-11-30/t1"), ("health_rep", "alice", "2026-11-30/t1")]
    coach, alert = texts(outbound(engine, "nudge:default:health_rep:%")), texts(outbound(engine, "nudge:default:health_manager:%"))
    assert "3 个工作日" in coach[0] and "张伟 已连续 3 个工作日" in alert[0]
    run(sched, at(2026, 12, 3, 15))  # later the same day: nothing new
    run(sched, at(2026, 12, 4, 9))  # Thu: day four of the same streak: no second alert
    assert len(health_alerts()) == 2
    _good_day(engine, "alice", at(2026, 12, 4, 10))  # Fri: a good day breaks the streak
    run(sched, at(2026, 12, 7, 9))  # Mon scores Fri: above the threshold
    for day in (8, 9):
        run(sched, at(2026, 12, day, 9))
    assert len(health_alerts()) == 2  # the new streak is two days old
    run(sched, at(2026, 12, 10, 9))  # Thu scores Wed: day three of a new streak -> alerts again
    assert health_alerts() == [("health_manager", "mia", "2026-11-30/t1"), ("health_manager", "mia", "2026-12-07/t1"),
                               ("health_rep", "alice", "2026-11-30/t1"), ("health_rep", "alice", "2026-12-07/t1")]
    assert len(outbound(engine, "nudge:default:health_%")) == 4
    assert not any(k == "health_manager2" for k, _, _ in health_alerts())  # the second tier needs six days


def _good_day(engine, rep_id: str, when: datetime) -> None:  # noqa: F811
    """Customer work worth full marks: accounts, contacts and calls, with competitor intel."""
    from crm.models import Account, Contact

    crm = CRM(engine)
    with Session(engine) as s:
        if s.get(Account, ("default", "acc-x")) is None:
            s.add(Account(tenant="default", id="acc-x", name="测试客户", owner_id=rep_id))
            s.add(Contact(tenant="default", id="con-x", account_id="acc-x", name="王建国", title="总监"))
            s.commit()
    for i in range(3):
        crm.log_activity("default", account_id="acc-x", contact_id="con-x" if i else None, opportunity_id=None, rep_id=rep_id,
                         kind="call", occurred_at=when.replace(hour=when.hour + i), summary="回访，客户提到星图软件在报价",
                         source=f"console|default|c|{when:%d}-{i}", idempotency_key=f"good-{when:%m%d}-{i}", actor=rep_id)


@pytest.fixture
def sample_engine(engine):  # noqa: F811
    load_sample(engine)
    d = Directory(engine)
    for rep in d.list():
        d.link(rep.id, "console", rep.id)
    return engine


def battlecards(p, opp) -> list[ContentRef]:
    return [ContentRef("bc-xingtu", "竞品对比卡：星图软件", "3")] if "星图" in opp.competitor else []


def test_quiet_hours_and_the_morning_digest_sent_once(sample_engine):
    engine = sample_engine  # noqa: F811 - a local name, not the fixture
    sched = make_scheduler(engine, content=battlecards)
    assert run(sched, at(2026, 11, 25, 22)) == {}  # after 20:00: nothing, though task-004 fell due at 18:00
    assert outbound(engine) == []
    sent = run(sched, at(2026, 11, 26, 8, 40))  # the window has opened; the digest is not due yet
    assert "digest" not in sent and sent["overdue"] >= 1
    overdue = {r.dedupe_key for r in outbound(engine, "nudge:default:overdue:%")}
    assert "nudge:default:overdue:task-004:2026-11-25T10:00+00:00" in overdue
    assert sent["idle"] >= 2 and sent["content"] >= 2  # quiet deals and battlecards for deals against 星图
    sent = run(sched, at(2026, 11, 26, 8, 50))
    assert sent["digest"] >= 4
    digests = outbound(engine, "nudge:default:digest:%")
    zw = [r for r in digests if r.dedupe_key == "nudge:default:digest:zhangwei:2026-11-26"]
    assert len(zw) == 1 and Target.model_validate_json(zw[0].target).conversation_id == "web-zhangwei"
    text = Reply.model_validate_json(zw[0].reply).text
    assert "早上好，张伟" in text and "提交华东医疗集团最终报价" not in text and "电话跟进鼎盛医药报价反馈" in text
    [tom] = [r for r in digests if ":tom:" in r.dedupe_key]
    assert "Good morning, Tom Chen" in texts([tom])[0]
    assert Reply.model_validate_json(tom.reply).lang == "en" and Reply.model_validate_json(zw[0].reply).lang == "zh"  # what the channels label
    before = len(outbound(engine))
    assert run(sched, at(2026, 11, 26, 9, 30)) == {}  # everything already said is not said again
    assert len(outbound(engine)) == before


def test_one_leader_and_no_double_nudges_across_instances(copilot):
    other = build_app(copilot.settings)  # a second instance on the same data directory
    try:
        a, b = copilot.scheduler, other.scheduler
        when = at(2026, 11, 26, 9)
        results = [run(a, when), run(b, when)]
        assert results[1] is None and results[0]  # b is not the leader while a's lease holds
        n = len(outbound(copilot.engine))
        with time_machine.travel(when, tick=False):
            b.tick()  # even a second pass that ran anyway (a lapsed lease mid-pass) sends nothing twice
            a.tick()
        assert len(outbound(copilot.engine)) == n
        with Session(copilot.engine) as s:
            dup = s.execute(select(OutboundRow.dedupe_key).group_by(OutboundRow.dedupe_key).having(func.count() > 1)).all()
        assert dup == []
        assert run(b, at(2026, 11, 26, 9, 1)) is None
        assert run(b, at(2026, 11, 26, 9, 5)) is not None  # a stopped renewing: its lease lapsed, b took over
        assert run(a, at(2026, 11, 26, 9, 6)) is None
        content = [r for r in outbound(copilot.engine, "nudge:default:content:%")]
        assert any("bc-xingtu" in r.reply for r in content)  # the real battlecard hook
    finally:
        other.close()


def test_store_supervisor_gets_the_daily_summary(sample_engine):
    engine = sample_engine  # noqa: F811 - a local name, not the fixture
    crm = CRM(engine)
    crm.log_store_visit("default", store_id="store-003", rep_id="wangfang", visited_at=at(2026, 11, 25, 10), display_ok=False,
                        stock_issues="鲜奶缺货；酸奶未上架", competitor_promo="对面超市酸奶买一送一", order_amount=5000, notes="",
                        source="m1", idempotency_key="v1", actor="wangfang")
    crm.log_store_visit("default", store_id="store-001", rep_id="wangfang", visited_at=at(2026, 11, 25, 14), display_ok=True,
                        stock_issues="", competitor_promo="", order_amount=12500, notes="", source="m2", idempotency_key="v2", actor="wangfang")
    sched = make_scheduler(engine)
    run(sched, at(2026, 11, 25, 17))
    assert outbound(engine, "nudge:default:store_summary:%") == []  # before 18:00
    run(sched, at(2026, 11, 25, 18, 5))
    [row] = outbound(engine, "nudge:default:store_summary:zhaoqiang:%")
    text = Reply.model_validate_json(row.reply).text
    assert "2 次拜访" in text and "南山店：陈列不合格（近14天第2次）" in text  # failed on Nov 20 too: it came back
    assert "南山店：鲜奶缺货" in text and "订单偏低 ¥5,000" in text and "对面超市酸奶买一送一" in text
    assert text.index("陈列不合格") < text.index("竞品动态")
    assert outbound(engine, "nudge:default:store_summary:lina:%") == []  # no visits to her stores today
