"""What the scheduler says: the morning digest, timely nudges, health coaching and manager alerts,
the store supervisor's daily summary. Each is a `Reply` of kind "nudge" with plain text (every
channel), markdown (where it renders) and the ids in `meta` (for cards and buttons later).
The words are messages (prompts/messages.*.toml), in the recipient's language.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from bot.agent import facts
from bot.people.directory import Person
from bot.prompts import Prompts, ui_lang
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


def _reply(text: str, markdown: str, meta: dict) -> Reply:
    return Reply(text=text, markdown=markdown, kind="nudge", meta=meta)


def digest(m: Prompts, p: Person, day: MyDay) -> Reply:
    lang = ui_lang(p.language)
    sections = [(m.msg("digest_due_today", lang), day.due_today), (m.msg("digest_overdue", lang), day.overdue),
                (m.msg("digest_meetings", lang), [it for it in day.meetings_today if it.kind == "activity"]),
                (m.msg("digest_stale_deals", lang), day.stale_deals)]
    head = m.msg("digest_head", lang, name=p.name)
    text, md = [head], [f"**{head}**"]
    for title, items in sections:
        if not items:
            continue
        text.append(m.msg("digest_section", lang, title=title, count=len(items)))
        md.append(f"\n**{title}**")  # a blank line ends the list before: else the title joins its last item
        for it in items[:8]:
            line = facts.day_item(m, it, lang)
            text.append(f"- {line}")
            md.append(f"- {line}")
    tail = m.msg("digest_tail", lang)
    text.append(tail)
    md.append(f"\n> {tail}")
    return _reply("\n".join(text), "\n".join(md), {"nudge": "digest", "day": str(day.day), "items": {
        "due_today": _ids(day.due_today), "overdue": _ids(day.overdue), "stale_deals": _ids(day.stale_deals),
        "meetings_today": _ids(day.meetings_today)}})


def _ids(items: list[DayItem]) -> list[str]:
    return [i.id for i in items]


def overdue(m: Prompts, p: Person, task: Task, account: str) -> Reply:
    lang = ui_lang(p.language)
    where = m.msg("nudge_overdue_account", lang, account=account) if account else ""
    text = m.msg("nudge_overdue", lang, title=task.title, where=where)
    return _reply(text, text, {"nudge": "overdue", "task_id": task.id, "opportunity_id": task.opportunity_id})


def idle(m: Prompts, p: Person, opp: Opportunity, days: int, reasons: list[str]) -> Reply:
    lang = ui_lang(p.language)
    text = m.msg("nudge_idle", lang, name=opp.name, days=days, why=m.msg("clause_sep", lang).join(reasons))
    return _reply(text, text, {"nudge": "idle", "opportunity_id": opp.id, "days": days})


def content(m: Prompts, p: Person, opp: Opportunity, refs: list[ContentRef]) -> Reply:
    lang = ui_lang(p.language)
    head = m.msg("nudge_content_head", lang, name=opp.name, competitor=opp.competitor)
    lines = [m.msg("nudge_content_line", lang, title=r.title, url=" " + r.url if r.url else "") for r in refs]
    md = [head] + [f"- [{r.title}]({r.url})" if r.url else f"- {r.title}" for r in refs]
    return _reply("\n".join([head] + lines), "\n".join(md), {"nudge": "content", "opportunity_id": opp.id, "docs": [r.doc_id for r in refs]})


def health_coach(m: Prompts, p: Person, row: HealthDay, role: RoleHealth) -> Reply:
    """Tips per weak metric: the messages health_tip_<metric>."""
    lang = ui_lang(p.language)
    metrics = json.loads(row.metrics or "{}")
    tips = [m.msg(f"health_tip_{k}", lang) for k in weakest(metrics, role)]
    head = m.msg("health_coach_head", lang, name=p.name, streak=row.streak, score=row.score, target=role.threshold)
    text = "\n".join([head] + [f"{i}. {t}" for i, t in enumerate(tips, 1)])
    return _reply(text, text, {"nudge": "health_coach", "rep_id": row.rep_id, "streak": row.streak, "score": row.score})


def health_alert(m: Prompts, manager: Person, rep: Person, row: HealthDay, role: RoleHealth, tier: int) -> Reply:
    """The weak metrics are named by the messages health_metric_<metric>."""
    lang = ui_lang(manager.language)
    metrics = json.loads(row.metrics or "{}")
    weak = m.msg("list_sep", lang).join(m.msg(f"health_metric_{k}", lang) for k in weakest(metrics, role))
    esc = "" if tier <= 1 else m.msg("health_alert_escalated", lang)
    text = m.msg("health_alert", lang, rep=rep.name, streak=row.streak, threshold=role.threshold, score=row.score, since=row.streak_start,
                 escalated=esc, weak=weak or m.msg("health_alert_no_weak", lang))
    return _reply(text, text, {"nudge": "health_alert", "rep_id": rep.id, "tier": tier, "streak": row.streak,
                               "streak_start": str(row.streak_start), "score": row.score})


def store_summary(m: Prompts, p: Person, summary: StoreSummary) -> Reply:
    text = facts.store_report(m, summary, ui_lang(p.language))
    return _reply(text, text, {"nudge": "store_summary", "day": str(summary.day), "problems": len(summary.problems)})
