"""copilot reps add | list | pending."""
from __future__ import annotations

from typing import Optional

import typer

from bot.cli.common import CliError, app, emit, opened

reps = typer.Typer(help="The rep directory: who may use the copilot, with which role and team.", no_args_is_help=True)
app.add_typer(reps, name="reps")
CHANNELS = ("console", "wecom", "dingtalk", "feishu", "email")


@reps.command("add")
def add(
    user_id: str = typer.Argument(..., help="The person's id (also their console login)."),
    name: str = typer.Option(..., help="Display name."),
    role: str = typer.Option(..., help="rep | manager | enablement | admin"),
    team: str = typer.Option("", help="Team (region), e.g. 华东区."),
    channel: str = typer.Option("console", help="console | wecom | dingtalk | feishu | email"),
    platform_id: Optional[str] = typer.Option(None, help="The user's id on that channel (default: USER_ID; email: --email)."),
    email: str = typer.Option("", help="Email address."),
    tenant: Optional[str] = typer.Option(None, help="Tenant (corp); default from settings."),
) -> None:
    """Add or update a person and link their channel identity."""
    from bot.people.directory import DirectoryError
    from bot.settings import ROLES

    if role not in ROLES:
        raise CliError(f"--role must be one of {', '.join(ROLES)}")
    if channel not in CHANNELS:
        raise CliError(f"--channel must be one of {', '.join(CHANNELS)}")
    if channel == "email" and not (platform_id or email):
        raise CliError("--channel email needs --email")
    with opened() as cp:
        try:
            p = cp.directory.add(user_id, name, role, team=team, tenant=tenant or cp.settings.tenant, channel=channel,
                                 platform_user_id=platform_id or (email.lower() if channel == "email" else None), email=email)
        except DirectoryError as exc:
            raise CliError(str(exc)) from None
    typer.echo(f"{p.id}: {p.name}, {p.role}{', ' + p.team if p.team else ''} ({channel})")


@reps.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List everyone in the directory with their channel identities."""
    with opened() as cp:
        rows = []
        for p in cp.directory.list():
            ids = [f"{i.channel}:{i.platform_user_id}" for i in cp.directory.identities(p.id)]
            rows.append({"id": p.id, "name": p.name, "role": p.role, "team": p.team, "tenant": p.tenant, "identities": ids})
    if as_json:
        emit(rows)
        return
    for r in rows:
        typer.echo(f"{r['id']:<14} {r['name']:<10} {r['role']:<11} {r['team']:<8} {' '.join(r['identities'])}")


@reps.command("pending")
def pending(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """People who wrote to the bot but are not in the directory yet (approve with `reps add`)."""
    with opened() as cp:
        rows = [{"channel": p.channel, "tenant": p.tenant, "user": p.platform_user_id, "name": p.display_name,
                 "first_seen": p.first_seen.isoformat()} for p in cp.directory.pending()]
    if as_json:
        emit(rows)
        return
    for r in rows:
        typer.echo(f"{r['channel']}/{r['tenant']}: {r['user']} {r['name']} (since {r['first_seen'][:16]})  "
                   f"→ copilot reps add ID --name NAME --role rep --channel {r['channel']} --platform-id {r['user']}")
    if not rows:
        typer.echo("nobody is waiting")
