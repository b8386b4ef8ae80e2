"""HubSpot sink (CRM API v3): accounts -> companies, contacts -> contacts, opportunities -> deals,
activities and store visits -> notes, tasks -> tasks, each associated with its company, contact
and deal.

Idempotent on re-delivery: the external id of every record is kept in `IdMap`; a record whose id
was lost (a crash between HubSpot's answer and our write) is found again through the unique
`copilot_id` property this sink creates on companies, contacts and deals, or, for a contact, by
the email HubSpot reports as taken (409). A record whose company HubSpot has not seen yet is
preceded by that company. Stores have no HubSpot object: their visits become notes on the account.
People read those notes: their words come from the message catalogue (`labels`, the hubspot_* messages of
one language, handed in by the bot; this package imports nothing of it).
"""
from __future__ import annotations

import asyncio
import re
from typing import Mapping

import aiohttp

from crm.match import surname
from crm.sync import IdMap, Lookup, SyncError
from crm.sync.outbox import Claimed

NOTE_LABELS = ("hubspot_visit", "hubspot_display_ok", "hubspot_display_bad", "hubspot_display_unchecked", "hubspot_field",
               "hubspot_stock", "hubspot_promo", "hubspot_order", "hubspot_notes")  # the messages a store-visit note needs

OBJECT = {"account": "companies", "contact": "contacts", "opportunity": "deals", "activity": "notes", "store_visit": "notes", "task": "tasks"}
UNIQUE_PROPERTY = "copilot_id"
GROUP = {"companies": "companyinformation", "contacts": "contactinformation", "deals": "dealinformation"}
# HubSpot-defined association type ids (unlabeled), from -> to
ASSOCIATION = {("contacts", "companies"): 279, ("deals", "companies"): 341, ("deals", "contacts"): 3, ("notes", "companies"): 190,
               ("notes", "contacts"): 202, ("notes", "deals"): 214, ("tasks", "companies"): 192, ("tasks", "contacts"): 204,
               ("tasks", "deals"): 216}
# our stages -> the stages of HubSpot's default sales pipeline (override with [crm_sync.hubspot] stages)
STAGES = {"lead": "appointmentscheduled", "qualified": "qualifiedtobuy", "proposal": "presentationscheduled",
          "negotiation": "contractsent", "won": "closedwon", "lost": "closedlost"}
_EXISTING = re.compile(r"Existing ID:\s*(\d+)")


class HubSpotSink:
    def __init__(self, token: str, ids: IdMap, *, labels: Mapping[str, str], base_url: str = "https://api.hubapi.com",
                 name: str = "hubspot", pipeline: str = "default", stages: dict[str, str] | None = None, timeout: float = 15.0) -> None:
        if not token:
            raise ValueError("HubSpot needs a private app access token")
        missing = [k for k in NOTE_LABELS if k not in labels]
        if missing:
            raise ValueError(f"HubSpot notes need the messages {', '.join(missing)}")
        self.labels = {k: labels[k] for k in NOTE_LABELS}
        self.token, self.ids, self.name = token, ids, name
        self.base = base_url.rstrip("/")
        self.pipeline, self.stages = pipeline, {**STAGES, **(stages or {})}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._properties_ready = False

    # the sink contract ---------------------------------------------------------------------------
    async def deliver(self, event: Claimed, lookup: Lookup) -> None:
        if event.entity == "store":
            return  # no HubSpot object; its visits land on the account
        if not self._properties_ready:
            await self._ensure_properties()
        await self._upsert(event.tenant, event.entity, event.payload, lookup, depth=0)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # records -------------------------------------------------------------------------------------
    async def _upsert(self, tenant: str, entity: str, data: dict, lookup: Lookup, depth: int) -> str:
        obj = OBJECT[entity]
        props = self._properties(tenant, entity, data)
        links = await self._links(tenant, entity, data, lookup, depth)
        ext = await asyncio.to_thread(self.ids.get, tenant, entity, data["id"])
        if ext is None and obj in GROUP:
            ext = await self._search(obj, props[UNIQUE_PROPERTY])
        if ext is not None:
            try:
                await self._request("PATCH", f"/crm/v3/objects/{obj}/{ext}", {"properties": props})
                await self._associate(obj, ext, links)
            except SyncError as exc:
                if exc.status != 404 or exc.method != "PATCH":
                    raise
                ext = None  # deleted in HubSpot since: create it again
        if ext is None:
            ext = await self._create(obj, props, links)
        await asyncio.to_thread(self.ids.put, tenant, entity, data["id"], ext)
        return ext

    async def _create(self, obj: str, props: dict, links: list[tuple[str, str]]) -> str:
        body = {"properties": props, "associations": [
            {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": ASSOCIATION[(obj, to_obj)]}]}
            for to_obj, to_id in links]}
        try:
            return str((await self._request("POST", f"/crm/v3/objects/{obj}", body))["id"])
        except SyncError as exc:
            if exc.status != 409:
                raise
            # Already there: made by a concurrent delivery (a child sending its parent first), or a contact
            # whose email HubSpot knows. Search can lag behind a create, so an unresolved 409 is retried.
            m = _EXISTING.search(str(exc)) if obj == "contacts" else None
            ext = m.group(1) if m else await self._search(obj, props[UNIQUE_PROPERTY]) if obj in GROUP else None
            if ext is None:
                raise SyncError(str(exc), retryable=True) from None
            await self._request("PATCH", f"/crm/v3/objects/{obj}/{ext}", {"properties": props})
            await self._associate(obj, ext, links)
            return ext

    async def _associate(self, obj: str, ext: str, links: list[tuple[str, str]]) -> None:
        for to_obj, to_id in links:  # associating twice is a no-op, so re-delivery is safe
            await self._request("PUT", f"/crm/v4/objects/{obj}/{ext}/associations/default/{to_obj}/{to_id}")

    async def _links(self, tenant: str, entity: str, data: dict, lookup: Lookup, depth: int) -> list[tuple[str, str]]:
        """External ids of the records this one belongs to; parents HubSpot lacks are sent first."""
        refs: list[tuple[str, str]] = []
        if entity == "store_visit":
            store = await lookup(tenant, "store", data.get("store_id", ""))
            if store and store.get("account_id"):
                refs.append(("account", store["account_id"]))
        else:
            refs += [(e, data.get(f)) for e, f in (("account", "account_id"), ("contact", "contact_id"), ("opportunity", "opportunity_id"))
                     if data.get(f) and f in data and entity != e]
        out = []
        for ref_entity, ref_id in refs:
            if (OBJECT[entity], OBJECT[ref_entity]) not in ASSOCIATION:
                continue
            ext = await asyncio.to_thread(self.ids.get, tenant, ref_entity, ref_id)
            if ext is None and depth < 2:
                parent = await lookup(tenant, ref_entity, ref_id)
                if parent is not None:
                    ext = await self._upsert(tenant, ref_entity, parent, lookup, depth + 1)
            if ext is not None:
                out.append((OBJECT[ref_entity], ext))
        return out

    def _properties(self, tenant: str, entity: str, d: dict) -> dict:
        key = {UNIQUE_PROPERTY: f"{tenant}:{d['id']}"}
        if entity == "account":
            return {**key, "name": d["name"], "domain": d.get("domain", "")}
        if entity == "contact":
            first, last = _split_name(d["name"])
            return {**key, "firstname": first, "lastname": last, "email": d.get("email", ""), "jobtitle": d.get("title", ""),
                    "phone": d.get("phone", "")}
        if entity == "opportunity":
            return {**key, "dealname": d["name"], "amount": str(d.get("amount") or 0), "deal_currency_code": d.get("currency", "CNY"),
                    "pipeline": self.pipeline, "dealstage": self.stages.get(d.get("stage", "lead"), self.stages["lead"]),
                    **({"closedate": f"{d['close_date']}T00:00:00Z"} if d.get("close_date") else {})}
        if entity == "activity":
            body = f"[{d.get('kind', '')}] {d.get('summary', '')}\n— {d.get('rep_id', '')}"
            return {"hs_timestamp": d["occurred_at"], "hs_note_body": body}
        if entity == "store_visit":
            w = self.labels
            display = "hubspot_display_ok" if d.get("display_ok") else "hubspot_display_bad" if d.get("display_ok") is False else "hubspot_display_unchecked"
            parts = [w["hubspot_visit"].format(store=d.get("store_id", "")), w[display]]
            parts += [w["hubspot_field"].format(label=w[label], value=d[k]) for k, label in (
                ("stock_issues", "hubspot_stock"), ("competitor_promo", "hubspot_promo"), ("order_amount", "hubspot_order"), ("notes", "hubspot_notes"))
                if d.get(k) not in (None, "")]
            return {"hs_timestamp": d["visited_at"], "hs_note_body": "\n".join(parts)}
        if entity == "task":
            return {"hs_task_subject": d["title"], "hs_timestamp": d.get("due_at") or d.get("created_at"),
                    "hs_task_status": "COMPLETED" if d.get("done") else "NOT_STARTED"}
        raise SyncError(f"HubSpot has no mapping for {entity}", retryable=False)

    async def _search(self, obj: str, unique: str) -> str | None:
        body = {"filterGroups": [{"filters": [{"propertyName": UNIQUE_PROPERTY, "operator": "EQ", "value": unique}]}],
                "properties": [UNIQUE_PROPERTY], "limit": 1}
        res = await self._request("POST", f"/crm/v3/objects/{obj}/search", body)
        hits = res.get("results") or []
        return str(hits[0]["id"]) if hits else None

    async def _ensure_properties(self) -> None:
        """The unique `copilot_id` property; HubSpot answers 409 when it exists already."""
        for obj, group in GROUP.items():
            body = {"name": UNIQUE_PROPERTY, "label": "Copilot ID", "type": "string", "fieldType": "text", "groupName": group,
                    "hasUniqueValue": True, "description": "Record id in the sales copilot's CRM (tenant:id)"}
            await self._request("POST", f"/crm/v3/properties/{obj}", body, ok_statuses=(409,))
        self._properties_ready = True

    async def _request(self, method: str, path: str, body: dict | None = None, ok_statuses: tuple[int, ...] = ()) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers={"Authorization": f"Bearer {self.token}"})
        try:
            async with self._session.request(method, self.base + path, json=body) as r:
                if 200 <= r.status < 300 or r.status in ok_statuses:
                    return await r.json() if r.content_type == "application/json" else {}
                text = (await r.text())[:500]
                retry_after = r.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SyncError(f"{type(exc).__name__}: {exc}") from None
        retryable = r.status >= 500 or r.status == 429
        err = SyncError(f"HubSpot {method} {path}: HTTP {r.status}: {text}", retryable=retryable,
                        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else (10.0 if r.status == 429 else None))
        err.status, err.method = r.status, method
        raise err


def _split_name(name: str) -> tuple[str, str]:
    """(first, last): "Emily Wong" -> Emily, Wong; 王建国 -> 建国, 王."""
    name = name.strip()
    if " " in name:
        first, _, last = name.rpartition(" ")
        return first, last
    last = surname(name)
    return name[len(last):], last
