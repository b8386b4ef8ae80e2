"""copilot report drafts | ... : reports for managers and enablement (JSON or a readable table)."""
from __future__ import annotations

import typer

from bot.cli.common import app, emit, opened

report = typer.Typer(help="Reports: draft variants, team pipeline and health.", no_args_is_help=True)
app.add_typer(report, name="report")


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
