"""`python -m bench crm`: CRM writes per second through the sync outbox, as a ratio of the same writes
without it (measured in the same run, same database, alternating rounds), and the time to score
100k generated opportunities (with their activities and tasks)."""
from __future__ import annotations

import random
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.storage import init_db, make_engine
from crm.models import STAGES, Account, Activity, Contact, Opportunity, Rep, Task
from crm.scoring import ScoringConfig, load_facts, medians, score
from crm.service import CRM
from crm.sync.outbox import register_sinks

TODAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 8, tzinfo=timezone.utc)


def _seed(engine: Engine, accounts: int, reps: int) -> None:
    with engine.begin() as c:
        c.execute(Rep.__table__.insert(), [dict(id=f"rep-{i}", tenant="default", name=f"Rep {i}", role="rep", team="t", email="",
                                                manager_id="", timezone="Asia/Shanghai", language="zh", preferred_channel="console",
                                                active=True, created_at=NOW) for i in range(reps)])
        c.execute(Account.__table__.insert(), [dict(tenant="default", id=f"acc-{i}", name=f"客户{i}", aliases="", industry="", region="",
                                                    owner_id=f"rep-{i % reps}", domain="", tier="", created_at=NOW, updated_at=NOW)
                                               for i in range(accounts)])
        c.execute(Contact.__table__.insert(), [dict(tenant="default", id=f"con-{i}", account_id=f"acc-{i}", name=f"王{i}", title="经理",
                                                    email="", phone="", language="zh", created_at=NOW, updated_at=NOW)
                                               for i in range(accounts)])


def writes(engine: Engine, n: int, rounds: int = 4) -> dict:
    """Alternate rounds with and without the outbox so neither gets a warmer cache or a fuller file."""
    with_outbox, without = CRM(engine), CRM(engine, sync=False)
    t = {"outbox": 0.0, "direct": 0.0}
    per = n // rounds
    for r in range(rounds):
        for name, crm in (("outbox", with_outbox), ("direct", without)) if r % 2 == 0 else (("direct", without), ("outbox", with_outbox)):
            start = time.perf_counter()
            for i in range(per):
                k = f"{name}-{r}-{i}"
                crm.log_activity("default", account_id=f"acc-{i % 500}", contact_id=f"con-{i % 500}", opportunity_id=None,
                                 rep_id=f"rep-{i % 20}", kind="call", occurred_at=NOW, summary="电话回访，客户关注价格", source=f"console|default|c|{k}",
                                 idempotency_key=k, actor=f"rep-{i % 20}")
            t[name] += time.perf_counter() - start
    done = per * rounds
    wps = {k: round(done / v, 1) for k, v in t.items()}
    return {"writes_each": done, "sinks": 2, "writes_per_s_outbox": wps["outbox"], "writes_per_s_direct": wps["direct"],
            "ratio_outbox_vs_direct": round(wps["outbox"] / wps["direct"], 3),
            "ms_per_write_outbox": round(1000 * t["outbox"] / done, 3), "ms_per_write_direct": round(1000 * t["direct"] / done, 3)}


def generate(engine: Engine, n: int, reps: int = 200, accounts: int = 20_000, seed: int = 7) -> dict:
    """n opportunities with three activities and half a task each, spread over the last 120 days."""
    rnd = random.Random(seed)
    kinds = ("visit", "call", "email", "chat", "meeting")
    opps, acts, tasks = [], [], []
    for i in range(n):
        acc = f"acc-{rnd.randrange(accounts)}"
        created = NOW - timedelta(days=rnd.randrange(20, 200))
        opps.append(dict(tenant="default", id=f"g-opp-{i}", account_id=acc, name=f"商机{i}", stage=rnd.choice(STAGES[:4] * 3 + STAGES[4:]),
                         amount=float(rnd.randrange(20, 900) * 1000), currency="CNY", close_date=TODAY + timedelta(days=rnd.randrange(-30, 120)),
                         owner_id=f"rep-{i % reps}", created_at=created, stage_changed_at=created + timedelta(days=rnd.randrange(0, 20)),
                         next_step="" if rnd.random() < 0.3 else "约下次会议", competitor="", updated_at=NOW))
        for j in range(3):
            acts.append(dict(tenant="default", id=f"g-act-{i}-{j}", account_id=acc, contact_id=f"con-{rnd.randrange(accounts)}",
                             opportunity_id=f"g-opp-{i}" if j else "", rep_id=f"rep-{i % reps}", kind=rnd.choice(kinds),
                             occurred_at=NOW - timedelta(days=rnd.randrange(0, 120), minutes=rnd.randrange(600)), summary="跟进", source="",
                             actor="", created_at=NOW))
        if i % 2 == 0:
            tasks.append(dict(tenant="default", id=f"g-task-{i}", rep_id=f"rep-{i % reps}", account_id=acc, opportunity_id=f"g-opp-{i}",
                              title="跟进", due_at=NOW + timedelta(days=rnd.randrange(-20, 20)), done=rnd.random() < 0.5, done_at=None,
                              source="", actor="", created_at=NOW, updated_at=NOW))
    start = time.perf_counter()
    with engine.begin() as c:
        for table, rows in ((Opportunity.__table__, opps), (Activity.__table__, acts), (Task.__table__, tasks)):
            for k in range(0, len(rows), 20_000):
                c.execute(table.insert(), rows[k:k + 20_000])
    return {"opportunities": n, "activities": len(acts), "tasks": len(tasks), "insert_s": round(time.perf_counter() - start, 2)}


def scoring(engine: Engine, n: int) -> dict:
    crm = CRM(engine)
    start = time.perf_counter()
    ranked = crm.score_many("default", TODAY)  # open ones, as `copilot crm score` does
    total = time.perf_counter() - start
    # and every opportunity, phase by phase: load the signals, then score in Python
    from sqlalchemy import select

    t0 = time.perf_counter()
    with engine.connect() as conn:
        opps = conn.execute(select(Opportunity.__table__).where(Opportunity.__table__.c.tenant == "default")).all()
    t1 = time.perf_counter()
    facts = load_facts(engine, "default", NOW + timedelta(hours=16), opps)
    t2 = time.perf_counter()
    med, cfg = medians((o.currency, o.amount) for o in opps), ScoringConfig()
    scores = [score(o, facts[o.id], cfg, TODAY, "Asia/Shanghai", med.get(o.currency, 0.0)) for o in opps]
    t3 = time.perf_counter()
    return {"open_scored": len(ranked), "open_total_s": round(total, 2), "all_scored": len(scores),
            "load_records_s": round(t1 - t0, 2), "load_signals_s": round(t2 - t1, 2), "score_s": round(t3 - t2, 2),
            "all_total_s": round(t3 - t0, 2), "us_per_opportunity": round(1e6 * (t3 - t0) / max(len(scores), 1), 1)}


def run(n_writes: int = 2000, n_opps: int = 100_000, database_url: str | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="copilot-bench-crm-"))
    url = database_url or f"sqlite:///{root / 'crm.db'}"
    engine = make_engine(url)
    init_db(engine)
    _seed(engine, accounts=20_000, reps=200)
    register_sinks(engine, ["webhook", "hubspot"])  # each write fans out to two external CRMs
    out = {"database": engine.dialect.name, "writes": writes(engine, n_writes)}
    out["generated"] = generate(engine, n_opps)
    out["scoring"] = scoring(engine, n_opps)
    engine.dispose()
    return out
