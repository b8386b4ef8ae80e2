"""Offline extraction: dates against the message time in the rep's time zone, amounts, stages."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.agent.extract import cn_number, next_step, occurred_at, parse_amount, parse_kind, parse_stage, parse_when, topics

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 16, 30, tzinfo=SH)  # a Wednesday afternoon


@pytest.mark.parametrize("text,expected,has_time", [
    ("下周二再约", "2026-12-01 10:00", False),
    ("明天下午三点开会", "2026-11-26 15:00", True),
    ("后天上午10点半见", "2026-11-27 10:30", True),
    ("周五给报价", "2026-11-27 10:00", False),
    ("这周一", "2026-11-23 10:00", False),
    ("12月3日演示", "2026-12-03 10:00", False),
    ("1月5号签约", "2027-01-05 10:00", False),
    ("三天后回访", "2026-11-28 10:00", False),
    ("next Tuesday", "2026-12-01 10:00", False),
    ("tomorrow 3pm", "2026-11-26 15:00", True),
    ("晚上8点电话", "2026-11-25 20:00", True),
    ("2026-12-15 14:00 kickoff", "2026-12-15 14:00", True),
])
def test_dates_resolve_against_the_message_time(text, expected, has_time):
    w = parse_when(text, NOW)
    assert w is not None and w.at.strftime("%Y-%m-%d %H:%M") == expected and w.has_time is has_time
    assert w.at.tzinfo is SH


def test_no_date_is_none():
    assert parse_when("客户关注价格", NOW) is None


def test_date_resolution_uses_the_reps_time_zone():
    late_utc_evening = datetime(2026, 11, 25, 17, 0, tzinfo=ZoneInfo("UTC")).astimezone(SH)  # 01:00 on the 26th in Shanghai
    assert parse_when("明天", late_utc_evening).at.date().isoformat() == "2026-11-27"


@pytest.mark.parametrize("text,expected", [
    ("报价 12万", (120000.0, "CNY")), ("¥120,000", (120000.0, "CNY")), ("预算1.5亿", (150000000.0, "CNY")),
    ("30k", (30000.0, "CNY")), ("3000元", (3000.0, "CNY")), ("$45,000", (45000.0, "USD")), ("20万美元", (200000.0, "USD")),
])
def test_amounts(text, expected):
    assert parse_amount(text) == expected


def test_plain_numbers_are_not_amounts():
    assert parse_amount("下周二 3 个人来") is None


def test_stage_kind_topic_and_next_step():
    text = "今天拜访了华东医疗王总，关注价格，下周二再约"
    assert parse_kind(text) == "visit"
    assert topics(text) == ["价格"]
    clause, when = next_step(text, NOW)
    assert clause == "下周二再约" and when.at.date().isoformat() == "2026-12-01"
    assert occurred_at(text, NOW) == NOW
    assert occurred_at("昨天下午两点给王总打了电话", NOW).strftime("%m-%d %H:%M") == "11-24 14:00"
    assert next_step("met Mr. Wang today, he asked about pricing, follow up next Tuesday", NOW)[1].at.day == 1
    assert parse_stage("已经进入商务谈判") == "negotiation"
    assert parse_stage("客户签了合同") == "won"
    assert parse_stage("随便聊聊") is None
    assert cn_number("二十五") == 25 and cn_number("十") == 10
