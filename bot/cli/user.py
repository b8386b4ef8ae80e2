"""copilot user add: a person who signs in to the web (a password from stdin, or a one-time sign-in link)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

import typer

from bot.cli.common import CliError, app, load_settings

if TYPE_CHECKING:
    from bot.auth.service import Auth
    from bot.settings import Settings

user = typer.Typer(help="Web sign-in: who may sign in to the web chat and the admin pages.", no_args_is_help=True)
app.add_typer(user, name="user")


@contextmanager
def opened_auth(settings: "Settings | None" = None) -> Iterator[tuple["Settings", "Auth"]]:
    """Only the database and the sign-in wing (no knowledge base, no model): fast."""
    from bot.app import open_database
    from bot.auth.service import Auth
    from bot.people.directory import Directory
    from bot.web.links import load_secret

    s = settings or load_settings()
    engine = open_database(s)
    try:
        yield s, Auth(engine, Directory(engine), load_secret(s.data_dir), link_ttl=s.signin_link_minutes * 60)
    finally:
        engine.dispose()


def one_time_link(s: "Settings", auth: "Auth", rep_id: str) -> str:
    return f"{s.base_url}/login?token={auth.one_time_token(s.tenant, rep_id)}"


@user.command("add")
def add(
    name: str = typer.Argument(..., help="The person's id, which is also their sign-in name (an existing person keeps name and team)."),
    role: str = typer.Option(..., help="admin | enablement | manager | rep"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin (one line); "
                                        "without it, print a one-time sign-in link instead."),
    tenant: Optional[str] = typer.Option(None, help="Tenant (corp); default from settings."),
) -> None:
    """Add a person who signs in to the web, or change their role or password (a new password signs out their sessions)."""
    from bot.auth.service import AuthError

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("no password on stdin (--password-stdin reads one line)")
    settings = load_settings(**({"tenant": tenant} if tenant else {}))
    with opened_auth(settings) as (s, auth):
        try:
            person = auth.add_user(name, role, s.tenant, password)
        except AuthError as exc:
            raise CliError(str(exc)) from None
        typer.echo(f"{person.id}: {person.name}, {person.role} (tenant {person.tenant}); "
                   + ("password set" if password is not None else "no password"), err=True)
        if password is None:
            typer.echo(f"One-time sign-in link (valid {s.signin_link_minutes:g} min): {one_time_link(s, auth, person.id)}")
