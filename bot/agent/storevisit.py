"""Store visits (门店销售) from plain words: store, shelf/display, stock issues, competitor promotions,
order amount — proposed, then written after the rep confirms."""
from __future__ import annotations

import re
from datetime import datetime

from bot.agent import extract as ex
from bot.agent.crmlog import confirm_buttons
from bot.agent.pending import Pending, PendingStore
from bot.people.directory import Person
from bot.prompts import Prompts, ui_lang
from connectors.message import Reply
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
    def __init__(self, crm: CRM, pending: PendingStore, prompts: Prompts) -> None:
        self.crm = crm
        self.pending = pending
        self.prompts = prompts

    def propose(self, person: Person, text: str, conversation_key: str, now: datetime, key: str) -> Reply | None:
        stores = self.crm.find_stores(person.tenant, text)
        if not stores:
            return None
        lang = ui_lang(person.language)
        if len(stores) > 1 and len({s.id for s in stores}) > 1 and stores[0].name not in text:
            names = "、".join(s.name for s in stores[:5])
            return Reply(text=self.prompts.msg("store_which", lang, names=names), kind="notice")
        store = stores[0]
        fields = parse_visit(text)
        payload = {"store_id": store.id, "store": store.name, "visited_at": ex.occurred_at(text, now).isoformat(), **fields, "text": text}
        p = self.pending.create(tenant=person.tenant, rep_id=person.id, conversation_key=conversation_key, kind="store_visit",
                                payload=payload, key=key)
        return self.render(p.id, payload, lang)

    def render(self, pid: str, pl: dict, lang: str) -> Reply:
        m = self.prompts
        display = m.msg("store_display_unknown" if pl["display_ok"] is None else "store_display_ok" if pl["display_ok"] else "store_display_problem", lang)
        amount = f"¥{pl['order_amount']:,.0f}" if pl["order_amount"] else "—"
        none = m.msg("store_none", lang)
        text = m.msg("store_proposal", lang, store=pl["store"], display=display, stock=pl["stock_issues"] or none,
                     promo=pl["competitor_promo"] or none, amount=amount) + "\n" + m.msg("reply_confirm_edit_cancel", lang)
        return Reply(text=text, kind="confirm", buttons=confirm_buttons(m, pid, lang), meta={"pending": pid})

    def confirm(self, person: Person, p: Pending) -> Reply:
        lang = ui_lang(person.language)
        if not self.pending.claim(p.id):
            return Reply(text=self.prompts.msg("store_already_handled", lang), kind="notice")
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
        return Reply(text=self.prompts.msg("store_saved", lang, id=v.id), kind="notice")
