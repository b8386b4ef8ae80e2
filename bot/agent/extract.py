"""Rule-based extraction for offline mode: dates, times, amounts, stages, activity kinds.

Dates are resolved against the message time in the rep's time zone: 下周二, 明天下午三点, 12月3日,
后天上午10点半, next Tuesday, tomorrow 3pm. Amounts: 12万, ¥120,000, 1.5亿, 30k, 3000元.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
WEEKDAYS_ZH = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
WEEKDAYS_EN = {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
WEEKDAYS_EN.update({d[:3]: i for d, i in list(WEEKDAYS_EN.items())})


def cn_number(s: str) -> int | None:
    """'3', '三', '十', '十二', '二十', '二十五' -> int."""
    s = s.strip()
    if not s:
        return None
    if s.isdigit():
        return int(s)
    if "十" in s:
        head, _, tail = s.partition("十")
        tens = CN_DIGITS.get(head, 1) if head else 1
        ones = CN_DIGITS.get(tail, 0) if tail else 0
        return tens * 10 + ones
    if all(c in CN_DIGITS for c in s):
        n = 0
        for c in s:
            n = n * 10 + CN_DIGITS[c]
        return n
    return None


@dataclass(frozen=True)
class When:
    at: datetime  # local, tz-aware
    has_time: bool
    text: str  # the words it came from


_NUM = r"[0-9零〇一二两三四五六七八九十]{1,3}"
_TIME_ZH = re.compile(rf"(凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|晚)?\s*({_NUM})\s*[点點时:：]\s*(半|一刻|三刻|({_NUM})\s*分?)?")
_TIME_COLON = re.compile(r"(?<!\d)([01]?\d|2[0-3]):([0-5]\d)(?!\d)")
_TIME_EN = re.compile(r"\b(1[0-2]|0?[1-9])(?::([0-5]\d))?\s*(am|pm)\b", re.I)
_REL_DAY = re.compile(r"(前天|昨天|昨晚|今天|今日|明天|明日|大后天|后天|今晚|明早|明晚)")
_WEEK_ZH = re.compile(r"(下下|下|本|这|这个|下个)?\s*(?:周|星期|礼拜)([一二三四五六日天末])")
_DATE_ZH = re.compile(rf"(?:({_NUM})\s*月\s*)?({_NUM})\s*[日号號](?!子)")
_DATE_ISO = re.compile(r"(?<!\d)(20\d\d)[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_IN_DAYS = re.compile(rf"({_NUM})\s*天(?:后|以后|之后)|in\s+(\d+)\s+days?", re.I)
_REL_EN = re.compile(r"\b(yesterday|today|tonight|day after tomorrow|tomorrow)\b", re.I)
_WEEK_EN = re.compile(r"\b(next|this|on)?\s*(monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|wed|thu|fri|sat|sun)\b", re.I)
_NEXT_WEEK = re.compile(r"下周|下星期|下礼拜|next week", re.I)


def _time_of(text: str) -> tuple[time | None, str]:
    m = _TIME_ZH.search(text)
    if m:
        hour = cn_number(m.group(2))
        if hour is not None and hour <= 24:
            minute = 0
            if m.group(3) == "半":
                minute = 30
            elif m.group(3) == "一刻":
                minute = 15
            elif m.group(3) == "三刻":
                minute = 45
            elif m.group(4):
                minute = cn_number(m.group(4)) or 0
            part = m.group(1) or ""
            if part in ("下午", "傍晚", "晚上", "晚") and hour < 12:
                hour += 12
            elif part == "中午" and hour < 6:
                hour += 12
            if hour < 24 and minute < 60:
                return time(hour, minute), m.group(0)
    m = _TIME_EN.search(text)
    if m:
        hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
        return time(hour, int(m.group(2) or 0)), m.group(0)
    m = _TIME_COLON.search(text)
    if m:
        return time(int(m.group(1)), int(m.group(2))), m.group(0)
    return None, ""


def _next_weekday(today: date, weekday: int, *, next_week: bool = False, this_week: bool = False) -> date:
    monday = today - timedelta(days=today.weekday())
    if next_week:
        return monday + timedelta(days=7 + weekday)
    if this_week:
        return monday + timedelta(days=weekday)
    delta = (weekday - today.weekday()) % 7
    return today + timedelta(days=delta or 7)


def _date_of(text: str, today: date) -> tuple[date | None, str]:
    m = _DATE_ISO.search(text)
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3))), m.group(0)
        except ValueError:
            pass
    m = _REL_DAY.search(text)
    if m:
        word = m.group(1)
        days = {"前天": -2, "昨天": -1, "昨晚": -1, "今天": 0, "今日": 0, "今晚": 0, "明天": 1, "明日": 1, "明早": 1, "明晚": 1,
                "后天": 2, "大后天": 3}[word]
        return today + timedelta(days=days), word
    m = _WEEK_ZH.search(text)
    if m:
        prefix = m.group(1) or ""
        wd = WEEKDAYS_ZH[m.group(2)]
        if prefix == "下下":
            return _next_weekday(today, wd, next_week=True) + timedelta(days=7), m.group(0)
        return _next_weekday(today, wd, next_week=prefix in ("下", "下个"), this_week=prefix in ("本", "这", "这个")), m.group(0)
    m = _DATE_ZH.search(text)
    if m:
        month = cn_number(m.group(1)) if m.group(1) else today.month
        day = cn_number(m.group(2))
        if month and day:
            try:
                d = date(today.year, month, day)
                if d < today - timedelta(days=30):  # "1月5日" said in December is next year's
                    d = date(today.year + 1, month, day)
                return d, m.group(0)
            except ValueError:
                pass
    m = _IN_DAYS.search(text)
    if m:
        n = cn_number(m.group(1)) if m.group(1) else int(m.group(2))
        if n is not None:
            return today + timedelta(days=n), m.group(0)
    m = _REL_EN.search(text)
    if m:
        word = m.group(1).lower()
        return today + timedelta(days={"yesterday": -1, "today": 0, "tonight": 0, "tomorrow": 1, "day after tomorrow": 2}[word]), m.group(0)
    m = _WEEK_EN.search(text)
    if m:
        wd = WEEKDAYS_EN[m.group(2).lower()]
        prefix = (m.group(1) or "").lower()
        if prefix == "next":  # "next Tuesday": the Tuesday of next week, like 下周二
            return _next_weekday(today, wd, next_week=True), m.group(0)
        return _next_weekday(today, wd, this_week=prefix == "this"), m.group(0)
    if _NEXT_WEEK.search(text):
        return _next_weekday(today, 0, next_week=True), _NEXT_WEEK.search(text).group(0)
    return None, ""


def parse_when(text: str, now: datetime, default_time: time = time(10, 0)) -> When | None:
    """The first date (and time) mentioned, resolved against `now` (tz-aware, the rep's local time)."""
    d, dtext = _date_of(text, now.date())
    t, ttext = _time_of(text)
    if d is None and t is None:
        return None
    d = d or now.date()
    at = datetime.combine(d, t or default_time, tzinfo=now.tzinfo)
    return When(at, t is not None, (dtext + ttext) or ttext)


def split_clauses(text: str) -> list[str]:
    return [c.strip() for c in re.split(r"[，,。；;！!？?\n]|\s+and\s+|然后|并且", text) if c.strip()]


# amounts ---------------------------------------------------------------------------------------
_AMOUNT = re.compile(
    r"(?:[¥￥]|RMB\s*|CNY\s*|人民币\s*|USD\s*|\$)?\s*(\d+(?:,\d{3})*(?:\.\d+)?)\s*(亿|万|千|k|K|w|W|m|M)?\s*(元|块|美元|美金|刀)?",
)


def parse_amount(text: str) -> tuple[float, str] | None:
    """(amount, currency) when the text names money: needs a currency mark or a unit (万/k/元)."""
    for m in _AMOUNT.finditer(text):
        raw, unit, cur = m.group(1), m.group(2), m.group(3)
        prefix = m.group(0)[: m.start(1) - m.start(0)].strip()
        if not (unit or cur or prefix):
            continue
        value = float(raw.replace(",", ""))
        value *= {"亿": 1e8, "万": 1e4, "w": 1e4, "W": 1e4, "千": 1e3, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}.get(unit or "", 1)
        currency = "USD" if (cur in ("美元", "美金", "刀") or prefix in ("$", "USD")) else "CNY"
        if value > 0:
            return value, currency
    return None


# stages and kinds --------------------------------------------------------------------------------
STAGE_WORDS = [
    ("won", r"赢单|签约了|签了合同|签合同了|已签约|成交了|拿下了|closed won|\bwon\b|signed"),
    ("lost", r"输单|丢单|丢了|没拿下|选了别家|closed lost|\blost\b"),
    ("negotiation", r"商务谈判|谈判|议价|砍价|谈价格|合同条款|negotiat"),
    ("proposal", r"报价|方案|投标|proposal|quote"),
    ("qualified", r"需求确认|确认需求|有预算|qualified"),
]  # their display names are messages: stage_<name> in prompts/messages.*.toml


def parse_stage(text: str) -> str | None:
    for stage, rx in STAGE_WORDS:
        if re.search(rx, text, re.I):
            return stage
    return None


KIND_WORDS = [
    ("visit", r"拜访|上门|见了|见面|面谈|去了|visit|met with|\bmet\b"),
    ("call", r"电话|通话|打给|致电|call"),
    ("meeting", r"开会|会议|演示|demo|meeting|视频会"),
    ("email", r"邮件|email|e-mail"),
    ("chat", r"微信|企微|钉钉|聊了|chat|wechat"),
]


def parse_kind(text: str) -> str | None:
    for kind, rx in KIND_WORDS:
        if re.search(rx, text, re.I):
            return kind
    return None


_FOLLOW = re.compile(r"再约|再联系|再跟进|跟进|回访|约[了个]?|见面|拜访|发送|发给|寄|提交|准备|follow[ -]?up|call back|send|schedule|meet", re.I)


def next_step(text: str, now: datetime) -> tuple[str, When | None]:
    """The clause that names the next step and its date: a clause with a date after today, else a
    clause with a follow-up verb that does not talk about today."""
    clauses = [(c, parse_when(c, now)) for c in split_clauses(text)]
    for c, w in clauses:
        if w is not None and w.at.date() > now.date():
            return c, w
    for c, w in reversed(clauses):
        if _FOLLOW.search(c) and not re.search(r"今天|昨天|today|yesterday", c, re.I) and not parse_kind_past(c):
            return c, w
    return "", None


def occurred_at(text: str, now: datetime) -> datetime:
    """When the logged activity happened: a date in a clause about the past or today, else now."""
    for c in split_clauses(text):
        w = parse_when(c, now)
        if w is not None and w.at.date() <= now.date():
            return w.at if w.has_time else now.replace(year=w.at.year, month=w.at.month, day=w.at.day)
    return now


def parse_kind_past(clause: str) -> bool:
    return bool(re.search(r"了|过|visited|met|called|had", clause))


_TOPIC = re.compile(r"(?:关注|关心|在意|担心|问了|问到|问|纠结|顾虑|异议|concerned about|worried about|asked about|interested in)\s*([^，,。；;]+)", re.I)


def topics(text: str) -> list[str]:
    return [m.group(1).strip() for m in _TOPIC.finditer(text)]
