"""copilot inbox stats | dead | retry: the durable inbox and the reply outbox, for operators."""
from __future__ import annotations

import typer

from bot.cli.common import CliError, app, emit, opened

inbox = typer.Typer(help="The durable inbox and reply outbox: counts, dead letters, retries.", no_args_is_help=True)
app.add_typer(inbox, name="inbox")


@inbox.command("stats")
def stats(as_json: bool = typer.Option(False, "--json")) -> None:
    """Messages and replies by state."""
    with opened() as cp:
        out = {"inbox": cp.inbox.counts(), "outbound": cp.outbox.counts()}
    if as_json:
        emit(out)
        return
    for k, v in out.items():
        typer.echo(f"{k}: " + ", ".join(f"{s} {n}" for s, n in sorted(v.items())))


@inbox.command("dead")
def dead(as_json: bool = typer.Option(False, "--json"), limit: int = typer.Option(20, help="How many of each.")) -> None:
    """Messages that failed every attempt (their senders were told) and replies that could not be delivered."""
    from sqlalchemy import select

    from bot.pipeline.tables import InboxRow, OutboundRow

    with opened() as cp:
        with cp.engine.connect() as c:
            msgs = c.execute(select(InboxRow.id, InboxRow.channel, InboxRow.conversation_key, InboxRow.attempts, InboxRow.error)
                             .where(InboxRow.status == "dead").order_by(InboxRow.id.desc()).limit(limit)).all()
            outs = c.execute(select(OutboundRow.id, OutboundRow.channel, OutboundRow.conversation_key, OutboundRow.attempts, OutboundRow.error)
                             .where(OutboundRow.status == "dead").order_by(OutboundRow.id.desc()).limit(limit)).all()
    rows = [{"kind": kind, "id": r.id, "channel": r.channel, "conversation": r.conversation_key, "attempts": r.attempts, "error": r.error[:300]}
            for kind, rs in (("message", msgs), ("reply", outs)) for r in rs]
    if as_json:
        emit(rows)
        return
    for r in rows:
        typer.echo(f"{r['kind']} #{r['id']} {r['channel']} {r['conversation']} after {r['attempts']} attempts: {r['error']}")
    if not rows:
        typer.echo("no dead letters")


@inbox.command("retry")
def retry(reply_id: int = typer.Argument(..., help="A dead reply's id (see `copilot inbox dead`).")) -> None:
    """Queue a dead reply again (after fixing its cause, e.g. the WeCom trusted IP); `copilot serve` sends it."""
    from sqlalchemy import update

    from bot.pipeline.tables import OutboundRow

    t = OutboundRow.__table__
    with opened() as cp:
        with cp.engine.begin() as c:
            n = c.execute(update(t).where(t.c.id == reply_id, t.c.status == "dead").values(status="pending", attempts=0, not_before=0.0)).rowcount
    if not n:
        raise CliError(f"reply {reply_id} is not a dead letter")
    typer.echo(f"reply {reply_id} queued again")
