"""What the scheduler says: the morning digest, timely nudges, health coaching and manager alerts,
the store supervisor's daily summary. Each is a `Reply` of kind "nudge" with plain text (every
channel), markdown (where it renders) and the ids in `meta` (for cards and buttons later).
Chinese first; English for people whose language is en.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from bot.people.directory import Person
from connectors.message import Reply
from crm.day import DayItem, MyDay
from crm.health import RoleHealth, weakest
from crm.models import HealthDay, Opportunity, Task
from crm.stores import StoreSummary


@dataclass(frozen=True)
class ContentRef:
    """A playbook or battlecard a deal needs, supplied by the bot's content hook."""

    doc_id: str
    title: str
    version: str = ""
    url: str = ""


def _zh(p: Person) -> bool:
    return p.language != "en"


def _reply(text: str, markdown: str, meta: dict) -> Reply:
    return Reply(text=text, markdown=markdown, kind="nudge", meta=meta)


def digest(p: Person, day: MyDay) -> Reply:
    zh = _zh(p)
    sections = [("今天到期" if zh else "Due today", day.due_today), ("已逾期" if zh else "Overdue", day.overdue),
                ("今天的会面" if zh else "Meetings today", [m for m in day.meetings_today if m.kind == "activity"]),
                ("久未跟进的商机" if zh else "Deals gone quiet", day.stale_deals)]
    head = f"早上好，{p.name}！今天的安排：" if zh else f"Good morning, {p.name}! Your day:"
    text, md = [head], [f"**{head}**"]
    for title, items in sections:
        if not items:
            continue
        text.append(f"{title}（{len(items)}）" if zh else f"{title} ({len(items)})")
        md.append(f"**{title}**")
        for it in items[:8]:
            text.append(f"- {it.text}")
            md.append(f"- {it.text}")
    tail = "回复“完成 + 事项”或直接告诉我进展，我来更新 CRM。" if zh else "Tell me what got done and I will update the CRM."
    text.append(tail)
    md.append(f"> {tail}")
    return _reply("\n".join(text), "\n".join(md), {"nudge": "digest", "day": str(day.day), "items": {
        "due_today": _ids(day.due_today), "overdue": _ids(day.overdue), "stale_deals": _ids(day.stale_deals),
        "meetings_today": _ids(day.meetings_today)}})


def _ids(items: list[DayItem]) -> list[str]:
    return [i.id for i in items]


def overdue(p: Person, task: Task, account: str) -> Reply:
    where = f"（{account}）" if account and _zh(p) else f" ({account})" if account else ""
    text = (f"提醒：待办“{task.title}”{where}已到期还没完成。完成了告诉我一声；需要改期也可以直接说新的时间。" if _zh(p)
            else f"Reminder: “{task.title}”{where} is past due. Tell me when it is done, or give me a new date.")
    return _reply(text, text, {"nudge": "overdue", "task_id": task.id, "opportunity_id": task.opportunity_id})


def idle(p: Person, opp: Opportunity, days: int, reasons: list[str]) -> Reply:
    why = "；".join(reasons) if _zh(p) else "; ".join(reasons)
    text = (f"商机“{opp.name}”已经 {days} 天没有跟进了（{why}）。要不要今天约一次沟通？" if _zh(p)
            else f"“{opp.name}” has been idle for {days} days ({why}). Worth a call today?")
    return _reply(text, text, {"nudge": "idle", "opportunity_id": opp.id, "days": days})


def content(p: Person, opp: Opportunity, refs: list[ContentRef]) -> Reply:
    zh = _zh(p)
    head = (f"你的商机“{opp.name}”在和{opp.competitor}竞争，这些资料可能用得上：" if zh
            else f"Your deal “{opp.name}” is up against {opp.competitor}; these may help:")
    lines = [f"- 《{r.title}》{' ' + r.url if r.url else ''}" if zh else f"- {r.title}{' ' + r.url if r.url else ''}" for r in refs]
    md = [head] + [f"- [{r.title}]({r.url})" if r.url else f"- {r.title}" for r in refs]
    return _reply("\n".join([head] + lines), "\n".join(md), {"nudge": "content", "opportunity_id": opp.id, "docs": [r.doc_id for r in refs]})


_TIPS = {
    "activities": ("每次拜访、电话之后，直接跟我说一句，我来帮你记进 CRM。", "After each visit or call, tell me in one line and I will log it."),
    "touches": ("今天挑两位两周没联系的客户，打个电话或发条消息。", "Pick two customers you have not spoken to in two weeks and reach out today."),
    "on_time": ("先把今天到期的跟进做完；做不完就改个日期，别让它悄悄逾期。", "Finish today's follow-ups first; if one cannot be done, move its date."),
    "overdue": ("你有逾期的待办：回复“我的待办”，看看哪些可以完成或关掉。", "You have overdue tasks: ask me for “my tasks” and close what you can."),
    "intel": ("听到竞品的报价或动作，随手告诉我，我会记下来提醒团队。", "Heard about a competitor's price or move? Tell me and I will share it with the team."),
    "copilot": ("试试问我：“今天先跟进谁？”", "Try asking me: “who should I follow up with today?”"),
}
_METRIC = {"activities": ("活动记录", "activities logged"), "touches": ("客户触达", "customer touches"), "on_time": ("按时跟进", "on-time follow-ups"),
           "overdue": ("逾期待办", "overdue tasks"), "intel": ("竞品情报", "competitor intel"), "copilot": ("助手使用", "copilot use")}


def health_coach(p: Person, row: HealthDay, role: RoleHealth) -> Reply:
    zh = _zh(p)
    metrics = json.loads(row.metrics or "{}")
    tips = [_TIPS[m][0 if zh else 1] for m in weakest(metrics, role)]
    head = (f"{p.name}，最近 {row.streak} 个工作日你的跟进节奏偏慢（昨天 {row.score:.0f} 分，目标 {role.threshold:.0f}）。两个小建议：" if zh
            else f"{p.name}, your follow-up rhythm has been slow for {row.streak} working days ({row.score:.0f} yesterday, target {role.threshold:.0f}). Two ideas:")
    text = "\n".join([head] + [f"{i}. {t}" for i, t in enumerate(tips, 1)])
    return _reply(text, text, {"nudge": "health_coach", "rep_id": row.rep_id, "streak": row.streak, "score": row.score})


def health_alert(manager: Person, rep: Person, row: HealthDay, role: RoleHealth, tier: int) -> Reply:
    zh = _zh(manager)
    metrics = json.loads(row.metrics or "{}")
    weak = "、".join(_METRIC[m][0] for m in weakest(metrics, role)) if zh else ", ".join(_METRIC[m][1] for m in weakest(metrics, role))
    esc = "" if tier <= 1 else ("（升级提醒）" if zh else " (escalated)")
    text = (f"{rep.name} 已连续 {row.streak} 个工作日健康分低于 {role.threshold:.0f}（最近 {row.score:.0f} 分，自 {row.streak_start} 起）{esc}。"
            f"主要短板：{weak or '—'}。建议本周安排一次一对一辅导。" if zh
            else f"{rep.name} has been below {role.threshold:.0f} for {row.streak} working days (latest {row.score:.0f}, since {row.streak_start}){esc}. "
            f"Weakest: {weak or '-'}. Consider a one-to-one this week.")
    return _reply(text, text, {"nudge": "health_alert", "rep_id": rep.id, "tier": tier, "streak": row.streak,
                               "streak_start": str(row.streak_start), "score": row.score})


def store_summary(p: Person, summary: StoreSummary) -> Reply:
    text = summary.text()
    return _reply(text, text, {"nudge": "store_summary", "day": str(summary.day), "problems": len(summary.problems)})
