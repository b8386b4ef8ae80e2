"""copilot crm import | export | sync | score | score-report."""
from __future__ import annotations

import asyncio
import sys
from datetime import date, datetime
from pathlib import Path
from typing import List, Optional
from zoneinfo import ZoneInfo

import typer

from bot.cli.common import CliError, app, emit, opened

crm = typer.Typer(help="The built-in CRM: import and export, sync to external CRMs, deal scores.", no_args_is_help=True)
app.add_typer(crm, name="crm")
IDENTITY_COLUMNS = {"wecom_userid": "wecom", "dingtalk_userid": "dingtalk"}


def today_in(tz: str, given: Optional[str] = None) -> date:
    if given:
        try:
            return date.fromisoformat(given)
        except ValueError:
            raise CliError(f"--date must be YYYY-MM-DD, not {given!r}") from None
    return datetime.now(ZoneInfo(tz)).date()


@crm.command("import")
def import_(
    files: List[Path] = typer.Argument(..., help="CSV or XLSX files, one kind each (named like accounts.csv, or give --kind)."),
    kind: Optional[str] = typer.Option(None, help="accounts | contacts | opportunities | activities | tasks | reps | stores | store_visits"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and report; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON report per file."),
) -> None:
    """Import records (insert or update by id). Bad rows are refused with reasons; good rows go in. Exit 1 if any row was refused."""
    from crm.io import Importer, ImportFileError

    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise CliError(f"no such file: {', '.join(missing)}")
    with opened() as cp:
        s = cp.settings
        try:
            reports = Importer(cp.engine, s.tenant, tz=s.timezone, dry_run=dry_run, actor="cli").run([(p, kind) for p in files])
        except ImportFileError as exc:
            raise CliError(str(exc)) from None
        for r in reports:
            if r.kind == "reps" and not dry_run:
                _link_identities(cp, r.accepted)
    for r in reports:
        if as_json:
            emit(r.to_json())
            continue
        mark = "✓" if not r.refused else "✗"
        typer.echo(f"{mark} {Path(r.file).name} ({r.kind}): {r.rows} rows, {r.inserted} new, {r.updated} updated, "
                   f"{r.unchanged} unchanged, {len(r.refused)} refused{' (dry run: nothing written)' if dry_run else ''}")
        for e in r.refused:
            typer.echo(f"    row {e.row}{f' ({e.id})' if e.id else ''}: {'; '.join(e.errors)}")
    if any(r.refused for r in reports):
        raise typer.Exit(1)


def _link_identities(cp, rows: list[dict]) -> None:
    """Reps are people: make each reachable on the console, by email, and on WeCom/DingTalk when the file says how."""
    tenant = cp.settings.tenant
    for row in rows:
        rid = str(row.get("id") or "").strip()
        cp.directory.link(rid, "console", rid, tenant=tenant)
        if row.get("email"):
            cp.directory.link(rid, "email", str(row["email"]).strip().lower(), tenant=tenant)
        for col, channel in IDENTITY_COLUMNS.items():
            if row.get(col):
                cp.directory.link(rid, channel, str(row[col]).strip(), tenant=tenant)


@crm.command("export")
def export_(
    kind: str = typer.Argument(..., help="accounts | contacts | opportunities | activities | tasks | reps | stores | store_visits"),
    fmt: str = typer.Option("csv", "--format", help="csv | xlsx"),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write (default: standard output)."),
) -> None:
    """Export one kind of record in the import format (so an export can be edited and imported back)."""
    from crm.io import ImportFileError, export

    if fmt not in ("csv", "xlsx"):
        raise CliError("--format must be csv or xlsx")
    with opened() as cp:
        try:
            result = export(cp.engine, kind, cp.settings.tenant, out, fmt, cp.settings.timezone)
        except ImportFileError as exc:
            raise CliError(str(exc)) from None
    if out is None:
        sys.stdout.buffer.write(result)
        sys.stdout.flush()
    else:
        typer.echo(f"{result} {kind} written to {out}", err=True)


@crm.command("sync")
def sync(
    once: bool = typer.Option(False, "--once", help="Deliver what is due now, then exit (default: keep delivering)."),
    retry_dead: bool = typer.Option(False, "--retry-dead", help="Queue the dead letters again first."),
    backfill: Optional[str] = typer.Option(None, help="Queue every past write for this sink (after connecting a CRM)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Deliver the CRM sync outbox to the external CRMs in [crm_sync] of copilot.toml (webhook, hubspot)."""
    from bot.proactive.scheduler import sync_deliverer
    from crm.sync import outbox

    with opened(logs=not as_json) as cp:
        deliverer = sync_deliverer(cp.engine, cp.agent.prompts)
        if deliverer is None:
            raise CliError("no external CRM is configured: add [crm_sync.webhook] (url, secret) or [crm_sync.hubspot] (token) "
                           "to copilot.toml", 1)
        if retry_dead:
            outbox.retry_dead(cp.engine)
        if backfill:
            if backfill not in [s.name for s in deliverer.sinks]:
                raise CliError(f"--backfill: no sink named {backfill!r} (configured: {', '.join(s.name for s in deliverer.sinks)})")
            typer.echo(f"{outbox.backfill(cp.engine, backfill)} past writes queued for {backfill}", err=True)
        passed = asyncio.run(_deliver(deliverer, once))
        state = {"this_run": passed, "outbox": outbox.counts(cp.engine), "dead_letters": outbox.dead_letters(cp.engine)}
    if as_json:
        emit(state)
        return
    for sink, tally in passed.items():
        left = state["outbox"].get(sink, {})
        typer.echo(f"{sink}: {tally['delivered']} delivered, {tally['retry']} to retry, {tally['dead']} dead now; "
                   f"{left.get('pending', 0)} waiting, {left.get('dead', 0)} dead letters in all")
    for d in state["dead_letters"]:
        typer.echo(f"  dead: {d['sink']} #{d['event_id']} {d['entity']} {d['entity_id']} after {d['attempts']} attempts: {d['error']}")
    if state["dead_letters"]:
        typer.echo("  fix the cause, then: copilot crm sync --once --retry-dead", err=True)


async def _deliver(deliverer, once: bool) -> dict:
    try:
        if not once:
            await deliverer.run()
        return await deliverer.run_once()
    finally:
        await deliverer.aclose()


@crm.command("score")
def score(
    rep: Optional[str] = typer.Option(None, "--rep", help="Only this rep's open deals."),
    on: Optional[str] = typer.Option(None, "--date", help="Score as of this day (YYYY-MM-DD; default today)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score open opportunities (0-100), best first, each with its top reasons."""
    from bot.agent.facts import reasons

    with opened() as cp:
        day = today_in(cp.settings.timezone, on)
        ranked = cp.crm.score_many(cp.settings.tenant, day, rep)
        m = cp.agent.prompts
    rows = [{"opportunity_id": o.id, "name": o.name, "owner_id": o.owner_id, "stage": o.stage, "amount": o.amount, "currency": o.currency,
             "score": s.value, "reasons": reasons(m, s.reasons, "en"), "reasons_zh": reasons(m, s.reasons, "zh")} for o, s in ranked]
    if as_json:
        emit(rows)
        return
    for r in rows:
        typer.echo(f"{r['score']:>3}  {r['opportunity_id']:<10} {r['stage']:<11} {r['owner_id']:<10} {r['name']}")
        typer.echo(f"     {'; '.join(r['reasons'])}")
    if not rows:
        typer.echo("no open opportunities")


@crm.command("score-report")
def score_report(
    horizon: int = typer.Option(14, help="Score each closed deal as it stood this many days before it closed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """How well scores foretold outcomes: won vs. lost deals by score band, mean scores, AUC."""
    from sqlalchemy import select
    from sqlmodel import Session

    from bot.agent.facts import reasons
    from crm.models import Opportunity
    from crm.scoring import calibration

    with opened() as cp:
        tenant = cp.settings.tenant
        with Session(cp.engine) as s:
            opps = list(s.execute(select(Opportunity).where(Opportunity.tenant == tenant)).scalars())
        rep = calibration(cp.engine, tenant, [o for o in opps if o.stage in ("won", "lost")], cp.crm.scoring, cp.settings.timezone,
                          opps, horizon)
        for row in rep["rows"]:
            row["reasons"] = reasons(cp.agent.prompts, row["reasons"], "en")
    if as_json:
        emit(rep)
        return
    typer.echo(f"{rep['deals']} closed deals ({rep['won']} won, {rep['lost']} lost), scored {horizon} days before closing")
    typer.echo(f"mean score: won {rep['mean_score_won']}, lost {rep['mean_score_lost']}; AUC {rep['auc']} (0.5 = chance, 1.0 = perfect)")
    for b in rep["bands"]:
        rate = "-" if b["win_rate"] is None else f"{b['win_rate']:.0%}"
        typer.echo(f"  {b['band']:>7}: {b['won']:>4} won {b['lost']:>4} lost  win rate {rate}")
