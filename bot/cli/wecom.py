"""copilot wecom sync-users: link WeCom members to the rep directory.

Reads the members the app can see (its visible range: agent/get, then user/list per department
and user/get for members listed one by one), and for each one in the corp's tenant: links the
WeCom identity to the rep with the same email, or else the same id (case-insensitive); creates a
`rep` for anyone not in the directory yet. Nobody is ever removed or demoted.
"""
from __future__ import annotations

import asyncio
import re
from typing import Optional

import typer

from bot.cli.common import CliError, app, emit, load_settings, opened

wecom = typer.Typer(help="WeCom (企业微信) tools.", no_args_is_help=True)
app.add_typer(wecom, name="wecom")
_REP_ID = re.compile(r"[^a-z0-9_.\-]")


async def visible_members(client) -> list[dict]:
    """Every member in the app's visible range, once each."""
    agent = await client.agent()
    members: dict[str, dict] = {}
    for dept in (agent.get("allow_partys") or {}).get("partyid") or []:
        for u in await client.department_users(int(dept)):
            members.setdefault(u["userid"], u)
    for entry in (agent.get("allow_userinfos") or {}).get("user") or []:
        uid = entry.get("userid") if isinstance(entry, dict) else None
        if uid and uid not in members:
            members[uid] = await client.user(uid)
    return list(members.values())


def link_members(directory, tenant: str, members: list[dict], dry_run: bool = False) -> dict:
    """Link or create; returns the counts and what happened to whom."""
    people = directory.list(tenant)
    by_email = {p.email.lower(): p for p in people if p.email}
    by_id = {p.id: p for p in people}  # exact: a member "Admin" is not the rep "admin"
    summary = {"members": len(members), "already_linked": 0, "linked_by_email": 0, "linked_by_id": 0, "created": 0, "changes": []}
    for m in members:
        uid = str(m["userid"])
        if directory.resolve("wecom", tenant, uid) is not None:
            summary["already_linked"] += 1
            continue
        emails = [str(m.get(k) or "").strip().lower() for k in ("email", "biz_mail")]
        person = next((by_email[e] for e in emails if e and e in by_email), None)
        how = "email" if person else "id"
        person = person or by_id.get(uid)
        if person is not None:
            summary[f"linked_by_{how}"] += 1
            summary["changes"].append(f"linked {uid} → {person.id} (by {how})")
            if not dry_run:
                directory.link(person.id, "wecom", uid, tenant=tenant)
            continue
        rep_id = _free_id(directory, _REP_ID.sub("-", uid.lower()).strip("-") or "wecom", tenant)
        summary["created"] += 1
        summary["changes"].append(f"created rep {rep_id} for {uid} ({m.get('name') or uid})")
        if not dry_run:
            directory.add(rep_id, str(m.get("name") or uid), "rep", tenant=tenant, channel="wecom", platform_user_id=uid,
                          email=next((e for e in emails if e), ""))
            by_id[rep_id] = directory.get(tenant, rep_id)
    return summary


def _free_id(directory, base: str, tenant: str) -> str:
    """A rep id nobody has, in any tenant (ids are global: the same WeCom id in two corps is two people)."""
    for candidate in (base, f"{base}-{tenant}", *(f"{base}-{tenant}-{i}" for i in range(2, 1000))):
        if not directory.exists(candidate):
            return candidate
    raise CliError(f"no free rep id for {base}")


@wecom.command("sync-users")
def sync_users(
    corp: Optional[str] = typer.Option(None, "--corp", help="Only this corp (its key; 'default' for the COPILOT_WECOM_* one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pull members from the WeCom user API and link them to reps (by email, else id); create missing ones as reps."""
    from bot.settings import toml_section
    from connectors.wecom.client import WeComClient, WeComError
    from connectors.wecom.config import load_corps

    settings = load_settings()
    corps, problems = load_corps(settings.tenant, toml_section("wecom"))
    bad = [p for p in problems if corp is None or p.account == corp]
    if bad and not any(c.key == corp for c in corps):
        raise CliError(str(bad[0]))
    if corp is not None:
        corps = [c for c in corps if c.key == corp]
    if not corps:
        raise CliError(f"no WeCom corp {corp!r} is configured" if corp else "no WeCom corp is configured (set COPILOT_WECOM_* or [[wecom.corps]])")
    for c in corps:
        if c.problems():
            raise CliError(f"corp {c.key}: {c.problems()[0][0]}; {c.problems()[0][1]}")
    with opened(settings) as cp:
        results = []
        for c in corps:

            async def pull(c=c) -> list[dict]:
                client = WeComClient(c)
                try:
                    return await visible_members(client)
                finally:
                    await client.aclose()

            try:
                members = asyncio.run(pull())
            except WeComError as exc:
                raise CliError(f"corp {c.key}: {exc}", 1) from None
            results.append({"corp": c.key, "tenant": c.tenant, **link_members(cp.directory, c.tenant, members, dry_run)})
    if as_json:
        emit(results)
        return
    for r in results:
        for line in r["changes"]:
            typer.echo(f"  {line}")
        typer.echo(f"{'(dry run) ' if dry_run else ''}corp {r['corp']} (tenant {r['tenant']}): {r['members']} members; "
                   f"{r['linked_by_email']} linked by email, {r['linked_by_id']} by id, {r['created']} created as rep, "
                   f"{r['already_linked']} already linked")
