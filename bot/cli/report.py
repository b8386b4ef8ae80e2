"""copilot report drafts | team, copilot health run: reports for managers and enablement (JSON or a readable table)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

import typer

from bot.cli.common import app, emit, opened
from bot.cli.crm import today_in

report = typer.Typer(help="Reports: draft variants, team pipeline and health.", no_args_is_help=True)
app.add_typer(report, name="report")
health = typer.Typer(help="Rep health scores: compute a day, see streaks and the alerts they call for.", no_args_is_help=True)
app.add_typer(health, name="health")


@report.command("drafts")
def drafts(as_json: bool = typer.Option(False, "--json")) -> None:
    """A/B of follow-up drafts by variant: sent unchanged, edited, rejected, and later deal outcomes."""
    from bot.agent.draft import variant_report

    with opened() as cp:
        rows = variant_report(cp.engine, cp.settings.tenant)
    if as_json:
        emit(rows)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("variant", "proposed", "sent as is", "sent edited", "rejected", "open", "won after", "lost after", "as-is rate")
    for r in rows:
        t.add_row(r["variant"], *(str(r[k]) for k in ("proposed", "sent_unchanged", "sent_edited", "rejected", "open", "later_won", "later_lost")),
                  f"{r['sent_unchanged_rate']:.0%}")
    Console().print(t)
    if not rows:
        typer.echo("no drafts yet")


def _messages(cp, day, days: int) -> dict[str, int]:
    """Replies the copilot gave each rep over the period (the bot's side of copilot usage)."""
    from bot.proactive.scheduler import agent_turns

    usage = agent_turns(cp.engine)
    ids = [p.id for p in cp.directory.list(cp.settings.tenant)]
    total: dict[str, int] = {}
    for i in range(days):
        for rep_id, n in usage(cp.settings.tenant, ids, day - timedelta(days=i), cp.settings.timezone).items():
            total[rep_id] = total.get(rep_id, 0) + n
    return total


@report.command("team")
def team(
    team_name: Optional[str] = typer.Option(None, "--team", help="One team (e.g. 华东区); default everyone."),
    days: int = typer.Option(7, min=1, max=366, help="Alerts and usage over this many days."),
    on: Optional[str] = typer.Option(None, "--date", help="As of this day (YYYY-MM-DD; default today)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pipeline by stage, health scores and streaks, alerts sent, copilot usage."""
    from crm.reports import team_report

    with opened() as cp:
        day = today_in(cp.settings.timezone, on)
        data = team_report(cp.engine, cp.settings.tenant, day, cp.settings.timezone, team=team_name, days=days,
                           messages=_messages(cp, day, days))
    if as_json:
        emit(data)
        return
    _print(data)


def _print(data: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"{data['team'] or '全部团队'} · {data['day']}"
    t = Table(title=f"Pipeline · {title}")
    for col in ("stage", "deals", "amount"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    for r in data["pipeline"]:
        t.add_row(r["stage"], str(r["count"]), ", ".join(f"{c} {v:,.0f}" for c, v in r["amount"].items()) or "-")
    console.print(t)
    t = Table(title="Health (latest scored day; JSON has the streak start)")
    for col in ("rep", "score", "streak", "act", "touch", "on time", "overdue", "intel", "use"):
        t.add_column(col, justify="left" if col == "rep" else "right")
    for h in sorted(data["health"], key=lambda h: h["score"]):
        m = h["metrics"]
        t.add_row(h["name"], f"[red]{h['score']:.0f}[/red]" if h["below"] else f"{h['score']:.0f}", f"{h['streak']}d" if h["streak"] else "-",
                  *(str(m.get(k, "")) for k in ("activities", "touches")), "-" if m.get("on_time") is None else f"{m['on_time']:.0%}",
                  *(str(m.get(k, "")) for k in ("overdue", "intel", "copilot")))
    console.print(t)
    t = Table(title=f"Alerts sent · last {data['days']} days")
    for col in ("at", "alert", "about", "to", "tier"):
        t.add_column(col)
    for a in data["alerts"]:
        t.add_row(a["at"][:16], a["kind"], a["rep_id"], a["recipient"], str(a["tier"]))
    console.print(t if data["alerts"] else "No health alerts sent.")
    t = Table(title=f"Copilot usage · last {data['days']} days")
    for col in ("rep", "messages", "CRM writes", "nudges received"):
        t.add_column(col, justify="right" if col != "rep" else "left")
    for u in data["usage"]:
        t.add_row(u["name"], str(u["messages"]), str(u["crm_writes"]), str(u["nudges_received"]))
    console.print(t)


@health.command("run")
def run(
    on: Optional[str] = typer.Option(None, "--date", help="The day to score (YYYY-MM-DD; default yesterday)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score every rep for one day and carry streaks; list the alerts the streaks call for (the scheduler in
    `copilot serve` sends them inside the recipients' hours)."""
    from bot.proactive.scheduler import agent_turns
    from bot.settings import toml_section
    from crm.health import HealthConfig, due_alerts, run_day

    with opened() as cp:
        s = cp.settings
        day = today_in(s.timezone, on) if on else datetime.now(ZoneInfo(s.timezone)).date() - timedelta(days=1)
        cfg = HealthConfig.from_dict(toml_section("health"))
        rows = run_day(cp.engine, s.tenant, day, cfg, agent_turns(cp.engine))
        alerts = due_alerts(cp.engine, s.tenant, day, cfg)
    out = {"day": str(day), "workday": cfg.is_workday(day),
           "scores": [{"rep_id": r.rep_id, "score": r.score, "below": r.below, "streak": r.streak,
                       "streak_start": str(r.streak_start or ""), "metrics": r.metrics} for r in rows],
           "alerts_due": [{"kind": a.kind, "rep_id": a.rep_id, "recipient": a.recipient, "tier": a.tier} for a in alerts]}
    if as_json:
        emit(out)
        return
    if not out["workday"]:
        typer.echo(f"{day} is not a working day: nothing scored")
        return
    for r in out["scores"]:
        flag = f"below, day {r['streak']} since {r['streak_start']}" if r["below"] else "ok"
        typer.echo(f"{r['rep_id']:<12} {r['score']:>5.1f}  {flag}")
    for a in out["alerts_due"]:
        typer.echo(f"alert due: {a['kind']} about {a['rep_id']} to {a['recipient']} (tier {a['tier']})")
