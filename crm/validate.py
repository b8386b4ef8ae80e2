"""Turning one imported row (strings from a CSV, or cells from a sheet) into a CRM record, or into the
list of what is wrong with it in words an admin can fix ("bad date '2026-13-01' in close_date").

`Known` carries the ids that exist (in the database, or earlier in the same import), so a
contact may reference an account from the accounts file imported just before it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import SQLModel

from crm.models import ACTIVITY_KINDS, STAGES, Account, Activity, Contact, Opportunity, Rep, Store, StoreVisit, Task

ROLES = ("rep", "manager", "enablement", "admin")  # the same as bot.settings.ROLES: crm may not import bot
COLUMNS: dict[str, list[str]] = {  # the bundled CSVs' headers: export writes them, import reads them
    "reps": ["id", "name", "role", "team", "email", "manager_id", "timezone", "language"],
    "accounts": ["id", "name", "aliases", "industry", "region", "owner_id", "domain", "tier"],
    "contacts": ["id", "account_id", "name", "title", "email", "phone", "language"],
    "opportunities": ["id", "account_id", "name", "stage", "amount", "currency", "close_date", "owner_id", "created_at",
                      "stage_changed_at", "next_step", "competitor"],
    "activities": ["id", "account_id", "contact_id", "opportunity_id", "rep_id", "kind", "occurred_at", "summary"],
    "tasks": ["id", "rep_id", "account_id", "opportunity_id", "title", "due_at", "done"],
    "stores": ["id", "name", "account_id", "region", "address", "supervisor_id"],
    "store_visits": ["id", "store_id", "rep_id", "visited_at", "display_ok", "stock_issues", "competitor_promo", "order_amount", "notes"],
}
KINDS = tuple(COLUMNS)  # also the order to import in: what is referenced comes first
MODELS: dict[str, type[SQLModel]] = {"reps": Rep, "accounts": Account, "contacts": Contact, "opportunities": Opportunity,
                                     "activities": Activity, "tasks": Task, "stores": Store, "store_visits": StoreVisit}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE, _FALSE = {"true", "yes", "y", "1", "是", "对", "合格", "ok"}, {"false", "no", "n", "0", "否", "不合格"}


@dataclass
class Known:
    ids: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})


class Row:
    """One row's cells with typed getters that collect errors instead of raising."""

    def __init__(self, cells: dict[str, Any], tz: str) -> None:
        self.cells = {str(k).strip().lower(): v for k, v in cells.items() if k is not None}
        self.tz = tz
        self.errors: list[str] = []

    def s(self, name: str, required: bool = False, default: str = "") -> str:
        v = self.cells.get(name)
        out = default if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)).strip()
        if required and not out:
            self.errors.append(f"{name} is empty")
        return out or default

    def dt(self, name: str, required: bool = False) -> datetime | None:
        v = self.cells.get(name)
        if isinstance(v, datetime):  # a spreadsheet date cell: local time
            return v if v.tzinfo else v.replace(tzinfo=ZoneInfo(self.tz))
        if isinstance(v, date):
            return datetime.combine(v, time(), ZoneInfo(self.tz))
        raw = self.s(name, required)
        if not raw:
            return None
        try:
            d = datetime.fromisoformat(raw.replace("/", "-"))
        except ValueError:
            self.errors.append(f"bad date {raw!r} in {name} (use 2026-11-25T18:00:00+08:00 or 2026-11-25 18:00)")
            return None
        return d if d.tzinfo else d.replace(tzinfo=ZoneInfo(self.tz))

    def day(self, name: str) -> date | None:
        v = self.cells.get(name)
        if isinstance(v, datetime):
            return v.date()
        if isinstance(v, date):
            return v
        raw = self.s(name)
        if not raw:
            return None
        try:
            return date.fromisoformat(raw.replace("/", "-")[:10])
        except ValueError:
            self.errors.append(f"bad date {raw!r} in {name} (use YYYY-MM-DD)")
            return None

    def num(self, name: str, required: bool = False) -> float | None:
        raw = self.s(name, required).replace(",", "").replace("，", "").lstrip("¥￥$")
        if not raw:
            return None
        try:
            v = float(raw)
        except ValueError:
            self.errors.append(f"{name} must be a number, not {self.s(name)!r}")
            return None
        if v < 0:
            self.errors.append(f"{name} cannot be negative")
        return v

    def flag(self, name: str) -> bool | None:
        raw = self.s(name).lower()
        if not raw:
            return None
        if raw in _TRUE or raw in _FALSE:
            return raw in _TRUE
        self.errors.append(f"{name} must be true or false, not {raw!r}")
        return None

    def one_of(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        v = self.s(name, default=default).lower()
        if v not in allowed:
            self.errors.append(f"{name} must be one of {', '.join(allowed)}, not {v!r}")
        return v

    def ref(self, name: str, kind: str, known: Known, what: str, required: bool = False) -> str:
        v = self.s(name, required)
        if v and v not in known.ids[kind]:
            self.errors.append(f"unknown {what} {v!r} in {name}")
        return v


def _rep(r: Row, k: Known, tenant: str) -> dict:
    tz = r.s("timezone", default="Asia/Shanghai")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        r.errors.append(f"unknown time zone {tz!r}")
    email = r.s("email")
    if email and not _EMAIL.match(email):
        r.errors.append(f"bad email {email!r}")
    return dict(id=r.s("id", True), tenant=tenant, name=r.s("name", True), role=r.one_of("role", ROLES, "rep"), team=r.s("team"),
                email=email, manager_id=r.ref("manager_id", "reps", k, "manager"), timezone=tz, language=r.s("language", default="zh"))


def _account(r: Row, k: Known, tenant: str) -> dict:
    return dict(tenant=tenant, id=r.s("id", True), name=r.s("name", True), aliases=r.s("aliases"), industry=r.s("industry"),
                region=r.s("region"), owner_id=r.ref("owner_id", "reps", k, "owner"), domain=r.s("domain").lower(), tier=r.s("tier"))


def _contact(r: Row, k: Known, tenant: str) -> dict:
    email = r.s("email").lower()
    if email and not _EMAIL.match(email):
        r.errors.append(f"bad email {email!r}")
    return dict(tenant=tenant, id=r.s("id", True), account_id=r.ref("account_id", "accounts", k, "account", True), name=r.s("name", True),
                title=r.s("title"), email=email, phone=r.s("phone"), language=r.s("language", default="zh"))


def _opportunity(r: Row, k: Known, tenant: str) -> dict:
    out = dict(tenant=tenant, id=r.s("id", True), account_id=r.ref("account_id", "accounts", k, "account", True), name=r.s("name", True),
               stage=r.one_of("stage", STAGES, "lead"), amount=r.num("amount") or 0.0, currency=r.s("currency", default="CNY").upper(),
               close_date=r.day("close_date"), owner_id=r.ref("owner_id", "reps", k, "owner"), next_step=r.s("next_step"),
               competitor=r.s("competitor"))
    if not re.fullmatch(r"[A-Z]{3}", out["currency"]):
        r.errors.append(f"currency must be a 3-letter code such as CNY, not {out['currency']!r}")
    for name in ("created_at", "stage_changed_at"):
        v = r.dt(name)
        if v is not None:
            out[name] = v
    if "created_at" in out and "stage_changed_at" not in out:
        out["stage_changed_at"] = out["created_at"]
    return out


def _activity(r: Row, k: Known, tenant: str) -> dict:
    return dict(tenant=tenant, id=r.s("id", True), account_id=r.ref("account_id", "accounts", k, "account", True),
                contact_id=r.ref("contact_id", "contacts", k, "contact"), opportunity_id=r.ref("opportunity_id", "opportunities", k, "opportunity"),
                rep_id=r.ref("rep_id", "reps", k, "rep", True), kind=r.one_of("kind", ACTIVITY_KINDS, "visit"),
                occurred_at=r.dt("occurred_at", True), summary=r.s("summary"))


def _task(r: Row, k: Known, tenant: str) -> dict:
    done = bool(r.flag("done"))
    due = r.dt("due_at")
    return dict(tenant=tenant, id=r.s("id", True), rep_id=r.ref("rep_id", "reps", k, "rep", True), account_id=r.ref("account_id", "accounts", k, "account"),
                opportunity_id=r.ref("opportunity_id", "opportunities", k, "opportunity"), title=r.s("title", True), due_at=due,
                done=done, done_at=due if done else None)  # an imported done task counts as done on time


def _store(r: Row, k: Known, tenant: str) -> dict:
    return dict(tenant=tenant, id=r.s("id", True), name=r.s("name", True), account_id=r.ref("account_id", "accounts", k, "account"),
                region=r.s("region"), address=r.s("address"), supervisor_id=r.ref("supervisor_id", "reps", k, "supervisor"))


def _store_visit(r: Row, k: Known, tenant: str) -> dict:
    return dict(tenant=tenant, id=r.s("id", True), store_id=r.ref("store_id", "stores", k, "store", True), rep_id=r.ref("rep_id", "reps", k, "rep", True),
                visited_at=r.dt("visited_at", True), display_ok=r.flag("display_ok"), stock_issues=r.s("stock_issues"),
                competitor_promo=r.s("competitor_promo"), order_amount=r.num("order_amount"), notes=r.s("notes"))


PARSERS: dict[str, Callable[[Row, Known, str], dict]] = {
    "reps": _rep, "accounts": _account, "contacts": _contact, "opportunities": _opportunity, "activities": _activity,
    "tasks": _task, "stores": _store, "store_visits": _store_visit}
