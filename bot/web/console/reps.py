"""The Reps & channels page (admin): the directory with each person's role, team, channel identities and sign-in
methods; role and team changes (audited as permission changes); senders waiting for approval (approve with a role and
team, or ignore); and each channel's health: the checks `copilot doctor` runs (bot/pipeline/checks.py), on this server."""
from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from aiohttp import web
from sqlmodel import Session, select

from bot.auth.tables import Login, SignInLink
from bot.people.directory import DirectoryError
from bot.pipeline.checks import app_checks
from bot.settings import ROLES
from bot.web.console.shell import Shell, back, form_value, local
from bot.web.session import PERSON
from connectors.channel import Check

if TYPE_CHECKING:
    from bot.app import App

HOME = "/console/reps"
PERSON_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # also their console login
CHECKS_TIMEOUT = 15.0  # a platform that does not answer must not hold the page


def sign_in_methods(engine, tenant: str) -> dict[str, list[str]]:
    """rep id -> how they can sign in to the web: a password, an unused one-time link."""
    now = time.time()
    out: dict[str, list[str]] = {}
    with Session(engine) as s:
        for row in s.exec(select(Login).where(Login.tenant == tenant, Login.password_hash != "")):
            out.setdefault(row.rep_id, []).append("password")
        for row in s.exec(select(SignInLink).where(SignInLink.tenant == tenant, SignInLink.used_at == None, SignInLink.expires_at > now)):  # noqa: E711
            out.setdefault(row.rep_id, []).append("link")
    return out


def routes(shell: Shell, app: App) -> list[web.RouteDef]:
    tenant = app.settings.tenant
    directory = app.directory
    page = shell.page("reps")

    # the ways in besides a password: the platforms whose account signs in here, and the company's identity provider
    platforms = set(app.channels.with_signin(tenant))
    oidc_by_email = bool(app.settings.oidc_issuer) and app.settings.oidc_claim == "email"

    def people() -> tuple[list, dict, list]:
        rows, methods = [], sign_in_methods(app.engine, tenant)
        for p in directory.list(tenant):
            linked = [i for i in directory.identities(p.id) if i.tenant == tenant]
            rows.append((p, [f"{i.channel}:{i.platform_user_id}" for i in linked]))
            channels = {i.channel for i in linked}
            methods.setdefault(p.id, []).extend(sorted(channels & platforms) + (["sso"] if oidc_by_email and "email" in channels else []))
        return rows, methods, [p for p in directory.pending() if p.tenant == tenant]

    async def checks() -> list[Check]:
        try:
            return await asyncio.wait_for(app_checks(app), CHECKS_TIMEOUT)
        except asyncio.TimeoutError:
            return [Check("checks", False, f"no answer within {CHECKS_TIMEOUT:.0f} s", "run `copilot doctor` on the server")]

    @page
    async def index(request: web.Request) -> web.Response:
        (rows, methods, waiting), health = await asyncio.gather(asyncio.to_thread(people), checks())
        teams = sorted({p.team for p, _ in rows if p.team})
        return shell.render(request, "reps.html", "reps", {"rows": rows, "methods": methods, "pending": waiting, "checks": health,
                                                           "roles": ROLES, "teams": teams})

    @page
    async def change(request: web.Request) -> web.Response:
        form = await request.post()
        rep_id, role, team = form_value(form, "id", 64), form_value(form, "role", 16), form_value(form, "team", 64)
        t = shell.words(request)
        if rep_id == request[PERSON].id and role != request[PERSON].role:
            return back(HOME, t("console_reps_not_yourself"), ok=False)
        try:
            before = await asyncio.to_thread(directory.get, tenant, rep_id)
            after = await asyncio.to_thread(lambda: directory.update(tenant, rep_id, role=role, team=team))
        except DirectoryError as exc:
            return back(HOME, str(exc), ok=False)
        if (before.role, before.team) != (after.role, after.team):
            await asyncio.to_thread(shell.note, request, "permission_change", {"person": rep_id, "role": [before.role, after.role],
                                                                               "team": [before.team, after.team]})
        return back(HOME, t("console_reps_changed", name=after.name, role=t("console_role_" + after.role), team=after.team or "—"))

    @page
    async def approve(request: web.Request) -> web.Response:
        form = await request.post()
        t = shell.words(request)
        pending_id = form_value(form, "pending", 20)
        found = [p for p in await asyncio.to_thread(directory.pending) if str(p.id) == pending_id and p.tenant == tenant]
        if not found:
            return back(HOME, t("console_reps_gone"), ok=False)
        p = found[0]
        rep_id, name = form_value(form, "id", 64), form_value(form, "name", 100) or p.display_name
        role, team = form_value(form, "role", 16), form_value(form, "team", 64)
        if not PERSON_ID.fullmatch(rep_id):
            return back(HOME, t("console_reps_bad_id"), ok=False)
        try:
            person = await asyncio.to_thread(lambda: directory.add(rep_id, name, role, team=team, tenant=tenant, channel=p.channel,
                                                                   platform_user_id=p.platform_user_id))
        except DirectoryError as exc:
            return back(HOME, str(exc), ok=False)
        await asyncio.to_thread(shell.note, request, "person_approved", {"person": rep_id, "role": role, "team": team,
                                                                         "identity": f"{p.channel}:{p.platform_user_id}"})
        return back(HOME, t("console_reps_approved", name=person.name))

    @page
    async def ignore(request: web.Request) -> web.Response:
        pending_id = form_value(await request.post(), "pending", 20)
        ok = pending_id.isdigit() and await asyncio.to_thread(directory.ignore, tenant, int(pending_id))
        if ok:
            await asyncio.to_thread(shell.note, request, "person_ignored", {"pending": pending_id})
        return back(HOME, shell.words(request)("console_reps_ignored" if ok else "console_reps_gone"), ok=bool(ok))

    return [web.get(local(HOME), index), web.post(local(HOME) + "/person", change), web.post(local(HOME) + "/approve", approve),
            web.post(local(HOME) + "/ignore", ignore)]
