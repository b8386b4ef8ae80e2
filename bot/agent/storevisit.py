"""Store visits (门店销售) from plain words: store, shelf/display, stock issues, competitor promotions,
order amount — proposed, then written after the rep confirms."""
from __future__ import annotations

import re
from datetime import datetime

from bot.agent import extract as ex
from bot.agent.crmlog import confirm_buttons
from bot.people.directory import Person
from connectors.message import Reply
from bot.agent.pending import Pending, PendingStore
from crm.service import CRM

DISPLAY_OK = re.compile(r"陈列|货架|排面|display|shelf", re.I)
DISPLAY_BAD = re.compile(r"乱|不规范|不到位|差|有问题|缺|空|messy|poor|bad|empty", re.I)
STOCK = re.compile(r"缺货|断货|没货|库存不足|卖空|补货|out of stock|stock ?out|low stock", re.I)
PROMO = re.compile(r"促销|买一送一|打折|折扣|特价|堆头|满减|赠品|promo|discount|bogo", re.I)
ORDER = re.compile(r"下单|订货|订单|进货|补单|order", re.I)


def parse_visit(text: str) -> dict:
    clauses = ex.split_clauses(text)
    display = None
    stock, promo, notes = [], [], []
    amount = None
    for c in clauses:
        if ORDER.search(c) and ex.parse_amount(c):
            amount = ex.parse_amount(c)[0]
        elif STOCK.search(c):
            stock.append(c)
        elif PROMO.search(c):
            promo.append(c)
        elif DISPLAY_OK.search(c):
            display = not DISPLAY_BAD.search(c)
        else:
            notes.append(c)
    return {"display_ok": display, "stock_issues": "；".join(stock), "competitor_promo": "；".join(promo),
            "order_amount": amount, "notes": "；".join(notes)}


class StoreVisits:
    def __init__(self, crm: CRM, pending: PendingStore) -> None:
        self.crm = crm
        self.pending = pending

    def propose(self, person: Person, text: str, conversation_key: str, now: datetime, key: str) -> Reply | None:
        stores = self.crm.find_stores(person.tenant, text)
        if not stores:
            return None
        zh = person.language != "en"
        if len(stores) > 1 and len({s.id for s in stores}) > 1 and stores[0].name not in text:
            names = "、".join(s.name for s in stores[:5])
            return Reply(text=f"是哪家门店？{names}" if zh else f"Which store? {names}", kind="notice")
        store = stores[0]
        fields = parse_visit(text)
        payload = {"store_id": store.id, "store": store.name, "visited_at": ex.occurred_at(text, now).isoformat(), **fields, "text": text}
        p = self.pending.create(tenant=person.tenant, rep_id=person.id, conversation_key=conversation_key, kind="store_visit",
                                payload=payload, key=key)
        return self.render(p.id, payload, zh)

    @staticmethod
    def render(pid: str, pl: dict, zh: bool) -> Reply:
        yes, no, unknown = ("正常", "有问题", "未检查") if zh else ("OK", "problem", "not checked")
        display = unknown if pl["display_ok"] is None else (yes if pl["display_ok"] else no)
        amount = f"¥{pl['order_amount']:,.0f}" if pl["order_amount"] else "—"
        if zh:
            lines = [f"巡店记录（{pl['store']}）：", f"• 陈列：{display}", f"• 缺货：{pl['stock_issues'] or '无'}",
                     f"• 竞品促销：{pl['competitor_promo'] or '无'}", f"• 订单：{amount}", "回复 1 确认 / 2 修改 / 3 取消"]
        else:
            lines = [f"Store visit ({pl['store']}):", f"• Display: {display}", f"• Stock issues: {pl['stock_issues'] or 'none'}",
                     f"• Competitor promotions: {pl['competitor_promo'] or 'none'}", f"• Order: {amount}", "Reply 1 to confirm, 2 to edit, 3 to cancel"]
        return Reply(text="\n".join(lines), kind="confirm", buttons=confirm_buttons(pid, zh), meta={"pending": pid})

    def confirm(self, person: Person, p: Pending) -> Reply:
        zh = person.language != "en"
        if not self.pending.claim(p.id):
            return Reply(text="这条巡店记录已经处理过了。" if zh else "Already handled.", kind="notice")
        pl = p.payload
        try:
            v = self.crm.log_store_visit(person.tenant, store_id=pl["store_id"], rep_id=person.id,
                                         visited_at=datetime.fromisoformat(pl["visited_at"]), display_ok=pl["display_ok"],
                                         stock_issues=pl["stock_issues"], competitor_promo=pl["competitor_promo"],
                                         order_amount=pl["order_amount"], notes=pl["notes"], source=f"pending:{p.id}",
                                         idempotency_key=f"{p.id}:visit", actor=person.id)
        except Exception:
            self.pending.finish(p.id, "pending")
            raise
        self.pending.finish(p.id, "done", {"visit": v.id})
        return Reply(text=f"巡店记录已保存 ✓ {v.id}" if zh else f"Store visit saved ✓ {v.id}", kind="notice")
