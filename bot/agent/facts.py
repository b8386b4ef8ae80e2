"""The CRM's facts in words: crm/ returns codes and parameters (a day's items, a deal score's reasons, a
store report's problems); these put them into a person's language through the message catalogue.
"""
from __future__ import annotations

from typing import Mapping

from bot.prompts import Prompts
from crm.day import DayItem
from crm.scoring import Reason
from crm.stores import Problem, StoreSummary


def counted(m: Prompts, key: str, lang: str, params: Mapping[str, object]) -> str:
    """The message `key`, or `key`_one when it counts one thing (params["n"] == 1) and the catalogue has it."""
    one = f"{key}_one"
    return m.msg(one if params.get("n") == 1 and m.has(one) else key, lang, **params)


def day_item(m: Prompts, item: DayItem, lang: str) -> str:
    """"18:00 确认报价（苏州精工）", "Quote review (Suzhou) · 3 days overdue", "华东医疗二期：19 天没有跟进"."""
    account = str(item.params.get("account") or "")
    where = m.msg("day_item_where", lang, account=account) if account else ""
    return m.msg(f"day_item_{item.code}", lang, **{**item.params, "where": where})


def reason(m: Prompts, r: Reason, lang: str) -> str:
    """A deal score's reason: "no contact for 19 days", "19 天未联系"."""
    return counted(m, r.key, lang, r.params)


def reasons(m: Prompts, rs: list[Reason], lang: str) -> list[str]:
    return [reason(m, r, lang) for r in rs]


def problem(m: Prompts, p: Problem, lang: str) -> str:
    return m.msg(f"store_report_{p.code}", lang, **p.params)


def store_report(m: Prompts, s: StoreSummary, lang: str) -> str:
    """A store supervisor's daily summary: the day's visits, the key problems, competitor activity, the
    stores nobody visited lately."""
    visits = counted(m, "store_report_visits", lang, {"n": s.visits})
    stores = counted(m, "store_report_stores", lang, {"n": len(s.stores_visited)})
    lines = [m.msg("store_report_head", lang, day=s.day, visits=visits, stores=stores, total=s.order_total)]
    key = [p for p in s.problems if p.kind != "competitor"]
    comp = [p for p in s.problems if p.kind == "competitor"]
    if key:
        lines.append(m.msg("store_report_key", lang))
        lines += [m.msg("store_report_key_line", lang, i=i, store=p.store, text=problem(m, p, lang)) for i, p in enumerate(key, 1)]
    if comp:
        lines.append(m.msg("store_report_competitors", lang))
        lines += [m.msg("store_report_competitor_line", lang, store=p.store, text=problem(m, p, lang)) for p in comp]
    if not key and not comp:
        lines.append(m.msg("store_report_no_problems", lang))
    if s.not_visited:
        lines.append(m.msg("store_report_not_visited", lang, stores=m.msg("list_sep", lang).join(s.not_visited)))
    return "\n".join(lines)
