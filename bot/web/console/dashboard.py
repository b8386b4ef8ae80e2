"""The Dashboard (managers: their own team; admins: any team or everyone): pipeline by stage, open deals by score
with the reasons behind each score, rep health over the last weeks with the threshold line and streaks, open
alerts, copilot adoption (active reps, questions answered and declined, drafts sent/edited/rejected, CRM entries
logged through the copilot in the rep's own words) and the draft A/B comparison."""
from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import func, select

from bot.agent.draft import variant_report
from bot.agent.facts import reasons
from bot.agent.tables import AgentTurn
from bot.settings import toml_section
from bot.web.console.charts import bars, lines
from bot.web.console.shell import Shell, local
from bot.web.session import PERSON
from crm.health import HealthConfig
from crm.models import STAGES, Account, CrmWrite, HealthDay
from crm.reports import alerts_sent, health_table, pipeline_by_stage, team_reps

if TYPE_CHECKING:
    from bot.app import App

HOME = "/console/dashboard"
DAYS = (7, 30, 90)
HISTORY_DAYS = 28
DEALS = 15


def adoption(engine, tenant: str, rep_ids: list[str], since: datetime) -> dict:
    """What the reps did with the copilot since `since`: who used it, questions answered and declined, CRM entries."""
    t, w = AgentTurn.__table__.c, CrmWrite.__table__.c
    with engine.connect() as conn:
        turns = conn.execute(select(t.rep_id, t.job, t.evidence).where(t.tenant == tenant, t.rep_id.in_(rep_ids), t.created_at >= since)).all()
        crm = conn.execute(select(func.count()).select_from(CrmWrite.__table__).where(
            w.tenant == tenant, w.actor.in_(rep_ids), w.at >= since, w.source != "", ~w.source.like("import:%"))).scalar()
    answers = [json.loads(r.evidence or "{}") for r in turns if r.job == "answer"]
    answered = sum(1 for e in answers if e.get("grounded"))
    return {"active": len({r.rep_id for r in turns}), "reps": len(rep_ids), "questions": len(answers) + sum(r.job == "compare" for r in turns),
            "answered": answered + sum(r.job == "compare" for r in turns), "declined": len(answers) - answered, "crm": int(crm or 0)}


def health_history(engine, tenant: str, rep_ids: list[str], since: date) -> dict[str, list[tuple[date, float]]]:
    h = HealthDay.__table__.c
    with engine.connect() as conn:
        rows = conn.execute(select(h.rep_id, h.day, h.score).where(h.tenant == tenant, h.rep_id.in_(rep_ids), h.day >= since).order_by(h.day)).all()
    out: dict[str, list[tuple[date, float]]] = {}
    for r in rows:
        day = r.day if isinstance(r.day, date) else date.fromisoformat(str(r.day))
        out.setdefault(r.rep_id, []).append((day, float(r.score)))
    return out


def routes(shell: Shell, app: App) -> list[web.RouteDef]:
    s = app.settings
    tenant, tz = s.tenant, s.timezone
    health_cfg = HealthConfig.from_dict(toml_section("health"))
    threshold = health_cfg.roles["rep"].threshold
    page = shell.page("dashboard")

    def build(team: str | None, days: int, lang: str) -> dict:
        today = datetime.now(ZoneInfo(tz)).date()
        since = datetime.combine(today - timedelta(days=days - 1), time(), ZoneInfo(tz)).astimezone(timezone.utc)
        people = team_reps(app.engine, tenant, team)
        ids = [p.id for p in people]
        sellers = [p for p in people if p.role == "rep"]
        names = {p.id: p.name for p in people}
        pipeline = pipeline_by_stage(app.engine, tenant, ids if team else None)
        scored = [(o, sc) for o, sc in app.crm.score_many(tenant, today) if not team or o.owner_id in ids]
        scored.sort(key=lambda pair: pair[1].value)
        with app.engine.connect() as conn:
            a = Account.__table__.c
            accounts = dict(conn.execute(select(a.id, a.name).where(a.tenant == tenant, a.id.in_({o.account_id for o, _ in scored[:DEALS]}))).all())
        deals = [{"name": o.name, "account": accounts.get(o.account_id, o.account_id), "owner": names.get(o.owner_id, o.owner_id), "stage": o.stage,
                  "amount": o.amount, "currency": o.currency, "score": sc.value, "reasons": reasons(app.agent.prompts, sc.reasons, lang)}
                 for o, sc in scored[:DEALS]]
        history = health_history(app.engine, tenant, [p.id for p in sellers], today - timedelta(days=HISTORY_DAYS - 1))
        latest = health_table(app.engine, tenant, sellers, today)
        variants = variant_report(app.engine, tenant, ids if team else None)
        return {"today": today, "pipeline": pipeline, "deals": deals, "open_deals": len(scored),
                "history": {names.get(k, k): v for k, v in history.items()}, "latest": latest,
                "below": [h for h in latest if h["below"]], "alerts": alerts_sent(app.engine, tenant, ids, since),
                "adoption": adoption(app.engine, tenant, [p.id for p in sellers], since), "variants": variants,
                "drafts": {k: sum(v[k] for v in variants) for k in ("proposed", "sent_unchanged", "sent_edited", "rejected", "open")}}

    @page
    async def index(request: web.Request) -> web.Response:
        me = request[PERSON]
        teams = sorted({p.team for p in await asyncio.to_thread(app.directory.list, tenant) if p.team})
        team = me.team if me.role != "admin" else (request.query.get("team", "") or None)
        if team is not None and team not in teams and me.role == "admin":
            team = None
        days = int(request.query.get("days", "7")) if request.query.get("days", "7") in {str(d) for d in DAYS} else 7
        lang = shell.lang(request)
        t = shell.words(request)
        data = await asyncio.to_thread(build, team, days, lang)
        stage_chart = bars([(t("console_stage_" + r["stage"]) if r["stage"] in STAGES else r["stage"], r["count"]) for r in data["pipeline"]],
                           t("console_dash_pipeline"))
        days_axis = [data["today"] - timedelta(days=HISTORY_DAYS - 1 - i) for i in range(HISTORY_DAYS)]
        health_chart, legend = lines(data["history"], days_axis, t("console_dash_health_chart", threshold=f"{threshold:g}"), threshold=threshold)
        ab_chart = bars([(v["variant"], round(100 * v["sent_unchanged_rate"])) for v in data["variants"]], t("console_dash_ab_chart"), fmt="{:g}%")
        return shell.render(request, "dashboard.html", "dashboard", {
            **data, "team": team, "teams": teams, "can_pick": me.role == "admin", "days": days, "day_choices": DAYS, "threshold": threshold,
            "stage_chart": stage_chart, "health_chart": health_chart, "legend": legend, "ab_chart": ab_chart, "streak_days": health_cfg.consecutive_days})

    return [web.get(local(HOME), index)]
