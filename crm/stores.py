"""The store sales template (门店销售): a supervisor's daily summary of the key problems across the
visits to their stores.

Visits are logged from structured fields (display OK, stock issues, competitor promotions seen,
order amount, notes: the agent extracts them from a rep's plain words). The summary ranks what
needs the supervisor: problems that came back at the same store first, then failed displays,
stock problems, orders well below the store's usual, then competitor activity. Each problem is a code
and its parameters; bot/ words the summary from the message catalogue (store_report_*).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm.day import day_bounds
from crm.models import Store, StoreVisit

ORDER_DROP = 0.8  # an order below 80% of the store's average over USUAL_DAYS is worth a look
USUAL_DAYS = 90
_ITEMS = re.compile(r"[；;。\n]+")
_RANK = {"repeat": 0, "display": 1, "stock": 2, "order_drop": 3, "competitor": 4}


@dataclass(frozen=True)
class Problem:
    kind: str  # repeat | display | stock | order_drop | competitor
    store_id: str
    store: str
    code: str  # display | display_again | stock | stock_again | order_drop | competitor (message store_report_<code>)
    params: dict[str, object]  # item (the rep's words), times and days (a repeat), amount and usual (an order)
    visit_id: str
    rep_id: str


@dataclass
class StoreSummary:
    supervisor_id: str
    day: date
    visits: int = 0
    stores_visited: list[str] = field(default_factory=list)
    order_total: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    not_visited: list[str] = field(default_factory=list)  # their stores nobody visited in the look-back window


def _short(store: Store) -> str:
    city = store.address.split("市", 1)[0] if "市" in store.address[:6] else ""
    return store.name[store.name.find(city) + len(city):] if city and city in store.name else store.name


def supervisor_summary(engine: Engine, tenant: str, supervisor_id: str, day: date, tz: str, *,
                       lookback_days: int = 14) -> StoreSummary:
    start, end = day_bounds(day, tz)
    since = day_bounds(day - timedelta(days=lookback_days), tz)[0]
    usual_since = day_bounds(day - timedelta(days=USUAL_DAYS), tz)[0]
    out = StoreSummary(supervisor_id, day)
    with Session(engine) as s:
        stores = {st.id: st for st in s.execute(select(Store).where(Store.tenant == tenant, Store.supervisor_id == supervisor_id)).scalars()}
        visits = list(s.execute(select(StoreVisit).where(StoreVisit.tenant == tenant, StoreVisit.store_id.in_(stores),
                                                         StoreVisit.visited_at >= min(since, usual_since), StoreVisit.visited_at < end)
                                .order_by(StoreVisit.visited_at)).scalars())
    today = [v for v in visits if v.visited_at >= start]
    earlier = [v for v in visits if v.visited_at < start]
    out.visits = len(today)
    out.stores_visited = sorted({_short(stores[v.store_id]) for v in today})
    out.order_total = sum(v.order_amount or 0 for v in today)
    recent_ids = {v.store_id for v in visits if v.visited_at >= since}
    out.not_visited = sorted(_short(st) for sid, st in stores.items() if sid not in recent_ids)
    for v in today:
        st = stores[v.store_id]
        name = _short(st)
        before = [e for e in earlier if e.store_id == v.store_id]
        recent = [e for e in before if e.visited_at >= since]

        def add(kind: str, code: str, params: dict[str, object], v: StoreVisit = v, name: str = name) -> None:
            out.problems.append(Problem(kind, v.store_id, name, code, params, v.id, v.rep_id))

        if v.display_ok is False:
            again = sum(e.display_ok is False for e in recent)
            if again:
                add("repeat", "display_again", {"times": again + 1, "days": lookback_days})
            else:
                add("display", "display", {})
        for item in (i.strip() for i in _ITEMS.split(v.stock_issues or "") if i.strip()):
            seen = any(_same_item(item, e.stock_issues) for e in recent)
            add("repeat" if seen else "stock", "stock_again" if seen else "stock", {"item": item})
        usual = [e.order_amount for e in before if e.order_amount]
        if v.order_amount is not None and usual and v.order_amount < ORDER_DROP * (sum(usual) / len(usual)):
            add("order_drop", "order_drop", {"amount": v.order_amount, "usual": sum(usual) / len(usual)})
        if (v.competitor_promo or "").strip():
            add("competitor", "competitor", {"item": v.competitor_promo.strip()})
    out.problems.sort(key=lambda p: (_RANK[p.kind], p.store))
    return out


def _same_item(item: str, earlier: str) -> bool:
    """The same product came up before: compare what precedes the first bracket or verb (鲜奶缺货 ~ 鲜奶过量)."""
    head = re.split(r"[（(缺断过未报]", item, maxsplit=1)[0].strip()
    return len(head) >= 2 and head in (earlier or "")


def supervisors_for(engine: Engine, tenant: str) -> list[str]:
    with Session(engine) as s:
        return sorted({sid for sid in s.execute(select(Store.supervisor_id).where(Store.tenant == tenant, Store.supervisor_id != "")).scalars()})

