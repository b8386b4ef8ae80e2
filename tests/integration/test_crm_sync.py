"""The sync outbox delivered to real local servers: a signed webhook receiver (retries after 500s,
dead letters after N failures) and a fake HubSpot (companies, contacts, deals, notes with their
associations, idempotent on re-delivery)."""
from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, update
from sqlmodel import Session

from bot.prompts import Prompts
from bot.settings import PROMPTS_DIR
from crm.io import Importer
from crm.models import ExternalId, SyncDelivery
from crm.service import CRM
from crm.sync import Deliverer, IdMap
from crm.sync.hubspot import HubSpotSink
from crm.sync.outbox import backfill, counts, dead_letters, retry_dead
from crm.sync.webhook import WebhookSink, sign, verify
from tests.fakes.crm_db import db_url, engine, load_sample  # noqa: F401  (fixtures)
from tests.fakes.hubspot_api import FakeHubSpot
from tests.fakes.webhook_receiver import WebhookReceiver

SH = ZoneInfo("Asia/Shanghai")
SECRET = "s3cret-for-tests"


async def deliver_all(d: Deliverer, timeout: float = 20.0) -> dict:
    """Run passes until nothing is pending (failed events wait out their short backoff)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await d.run_once()
        left = {s: c.get("pending", 0) + c.get("sending", 0) for s, c in counts(d.engine).items()}
        if not any(left.values()):
            break
        await asyncio.sleep(0.02)
    return counts(d.engine)


def write_three(engine) -> list[str]:  # noqa: F811
    crm = CRM(engine)
    a = crm.log_activity("default", account_id="acc-001", contact_id="con-001", opportunity_id="opp-001", rep_id="zhangwei", kind="call",
                         occurred_at=datetime(2026, 11, 25, 15, tzinfo=SH), summary="王总同意分两期", source="m1", idempotency_key="w1",
                         actor="zhangwei")
    t = crm.create_task("default", rep_id="zhangwei", account_id="acc-001", opportunity_id="opp-001", title="发合同",
                        due_at=datetime(2026, 11, 27, 18, tzinfo=SH), source="m1", idempotency_key="w2", actor="zhangwei")
    o = crm.update_opportunity("default", "opp-001", {"stage": "won"}, idempotency_key="w3", actor="zhangwei", source="m2")
    return [a.id, t.id, o.id]


async def test_webhook_signed_retried_after_500s_and_idempotent(engine, aiohttp_server):  # noqa: F811
    load_sample(engine)
    rx = WebhookReceiver(SECRET, fail_first=2)
    server = await aiohttp_server(rx.app())
    d = Deliverer(engine, [WebhookSink(f"http://127.0.0.1:{server.port}/hook", SECRET)], retry_base=0.01)
    ids = write_three(engine)
    try:
        result = await deliver_all(d)
    finally:
        await d.aclose()
    assert result == {"webhook": {"delivered": 3}}
    assert rx.bad_signatures == 0 and len(rx.attempts) == 5  # two 500s, each retried under the same key
    assert len(rx.events) == 3 and all(k.startswith("default:w") for k in rx.events)
    by_entity = {e["entity"]: e for e in rx.events.values()}
    assert by_entity["activity"]["data"]["id"] == ids[0] and by_entity["activity"]["data"]["source"] == "m1"
    assert by_entity["opportunity"]["op"] == "update" and by_entity["opportunity"]["data"]["stage"] == "won"
    body = b'{"a":1}'
    assert verify(SECRET, "1700000000", body, sign(SECRET, "1700000000", body), now=1700000100)
    assert not verify(SECRET, "1700000000", body + b" ", sign(SECRET, "1700000000", body), now=1700000100)  # tampered
    assert not verify(SECRET, "1700000000", body, sign(SECRET, "1700000000", body), now=1700009999)  # replayed late


async def test_webhook_dead_letters_after_n_failures_and_can_be_retried(engine, aiohttp_server):  # noqa: F811
    load_sample(engine)
    rx = WebhookReceiver(SECRET, fail_first=1000)
    server = await aiohttp_server(rx.app())
    d = Deliverer(engine, [WebhookSink(f"http://127.0.0.1:{server.port}/hook", SECRET)], max_attempts=3, retry_base=0.01)
    write_three(engine)
    try:
        result = await deliver_all(d)
        assert result == {"webhook": {"dead": 3}} and len(rx.attempts) == 9
        dead = dead_letters(engine)
        assert len(dead) == 3 and all(x["attempts"] == 3 and "HTTP 500" in x["error"] for x in dead)
        rx.fail_first = 0
        assert retry_dead(engine, "webhook") == 3
        assert await deliver_all(d) == {"webhook": {"delivered": 3}}
    finally:
        await d.aclose()
    rx2 = WebhookReceiver(SECRET, fail_first=1, status=422)  # the receiver refuses: no point retrying
    server2 = await aiohttp_server(rx2.app())
    d2 = Deliverer(engine, [WebhookSink(f"http://127.0.0.1:{server2.port}/hook", SECRET, name="strict")], retry_base=0.01)
    backfill(engine, "strict")
    try:
        await d2.run_once()
    finally:
        await d2.aclose()
    assert counts(engine)["strict"]["dead"] == 1 and len(rx2.attempts) > 1


@pytest.fixture
async def hubspot(engine, aiohttp_server):  # noqa: F811
    """The sample CRM, then HubSpot connected (so the sample is not queued for it until a backfill)."""
    load_sample(engine)
    fake = FakeHubSpot()
    server = await aiohttp_server(fake.app())
    sink = HubSpotSink("pat-test", IdMap(engine, "hubspot"), labels=Prompts(PROMPTS_DIR).catalogue("zh"), base_url=f"http://127.0.0.1:{server.port}")
    d = Deliverer(engine, [sink], retry_base=0.01)
    yield fake, d
    await d.aclose()


async def test_hubspot_receives_records_with_associations_and_redelivery_is_idempotent(engine, hubspot):  # noqa: F811
    fake, d = hubspot
    assert backfill(engine, "hubspot") > 100  # the CRM existed before HubSpot was connected
    write_three(engine)
    result = await deliver_all(d)
    assert result["hubspot"] == {"delivered": sum(result["hubspot"].values())}
    sizes = {t: len(o) for t, o in fake.objects.items()}
    assert sizes == {"companies": 12, "contacts": 18, "deals": 16, "notes": 45 + 10 + 1, "tasks": 18}
    [company] = fake.by_copilot_id("companies", "default:acc-001")
    [contact] = fake.by_copilot_id("contacts", "default:con-001")
    [deal] = fake.by_copilot_id("deals", "default:opp-001")
    assert contact["properties"]["lastname"] == "王" and contact["properties"]["firstname"] == "建国"
    assert deal["properties"]["dealstage"] == "closedwon" and deal["properties"]["amount"] == "420000.0"
    assert company["id"] in fake.linked("contacts", contact["id"], "companies")
    assert company["id"] in fake.linked("deals", deal["id"], "companies")
    notes_on_deal = fake.linked("deals", deal["id"], "notes")
    assert any("王总同意分两期" in fake.objects["notes"][n]["properties"]["hs_note_body"] for n in notes_on_deal)
    assert any(contact["id"] in fake.linked("notes", n, "contacts") for n in notes_on_deal)
    visit_notes = [n for n in fake.objects["notes"].values() if n["properties"]["hs_note_body"].startswith("门店拜访")]
    assert len(visit_notes) == 10 and all(fake.linked("notes", n["id"], "companies") for n in visit_notes)

    with Session(engine) as s:  # every event is delivered again (at-least-once) ...
        s.execute(update(SyncDelivery).values(status="pending", not_before=0.0))
        # ... and some external ids were lost (a crash between HubSpot's answer and our write)
        s.execute(delete(ExternalId).where(ExternalId.entity.in_(("account", "contact", "opportunity"))))
        s.commit()
    await deliver_all(d)
    assert {t: len(o) for t, o in fake.objects.items()} == sizes  # updated in place, nothing duplicated
    assert fake.calls["POST /crm/v3/objects/{obj}/search"] >= 12 + 18 + 16


async def test_hubspot_sends_a_missing_company_first_and_waits_out_429(engine, hubspot):  # noqa: F811
    fake, d = hubspot
    fake.fail_next = [("/crm/v3/objects/companies", 500, {}), ("/crm/v3/objects/deals", 429, {"Retry-After": "0"})]
    report = Importer(engine, "default").import_rows("accounts", [{"id": "acc-new", "name": "杭州新客", "owner_id": "zhangwei",
                                                                  "domain": "hzxk.example.com"}])
    assert report.inserted == 1
    Importer(engine, "default").import_rows("contacts", [{"id": "con-new", "account_id": "acc-new", "name": "Grace Lin",
                                                          "email": "grace@hzxk.example.com"}])
    Importer(engine, "default").import_rows("opportunities", [{"id": "opp-new", "account_id": "acc-new", "name": "新客-专业版",
                                                               "stage": "proposal", "amount": "99000", "owner_id": "zhangwei"}])
    assert (await deliver_all(d))["hubspot"] == {"delivered": 3}
    [company] = fake.by_copilot_id("companies", "default:acc-new")  # once, though its own event failed first
    [contact] = fake.by_copilot_id("contacts", "default:con-new")
    assert fake.linked("contacts", contact["id"], "companies") == {company["id"]}
    assert [d_["id"] for d_ in fake.by_copilot_id("deals", "default:opp-new")] and not fake.fail_next
    del fake.objects["companies"][company["id"]]  # someone deleted it in HubSpot; our next change brings it back
    Importer(engine, "default").import_rows("accounts", [{"id": "acc-new", "name": "杭州新客（更名）", "owner_id": "zhangwei"}])
    assert (await deliver_all(d))["hubspot"] == {"delivered": 4}
    [again] = fake.by_copilot_id("companies", "default:acc-new")
    assert again["id"] != company["id"] and again["properties"]["name"] == "杭州新客（更名）"
