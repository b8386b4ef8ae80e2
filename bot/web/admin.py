"""The admin HTTP API: knowledge uploads, drafts, approvals, report. Scripts send the bearer token
(COPILOT_ADMIN_TOKEN); a browser signed in as an admin uses its session (the web edge checked its CSRF token and
origin) and acts as that admin.

Uploads take the same path as the CLI and chat (`Publishing.upload` → `Ingestor.ingest_bytes`): an
upload `as` a rep becomes a draft; as an enablement user, manager or admin it is published.
"""
from __future__ import annotations

import asyncio
import hmac
from datetime import date
from typing import Callable

from aiohttp import web
from sqlalchemy.engine import Engine

from bot.agent.publishing import Publishing
from bot.people.directory import Directory, DirectoryError, Person
from bot.settings import Settings
from bot.web.session import PERSON
from connectors.http import read_form


def admin_routes(settings: Settings, engine: Engine, directory: Directory, publishing: Publishing) -> list[web.RouteDef]:
    s = settings

    def authorize(request: web.Request) -> None:
        signed_in = request.get(PERSON)
        if signed_in is not None:  # no bearer header: the session middleware signed this person in
            if signed_in.role != "admin":
                raise web.HTTPForbidden(text="the admin API is for admins")
            return
        if not s.admin_token:
            raise web.HTTPForbidden(text="the admin API is disabled: set COPILOT_ADMIN_TOKEN")
        got = request.headers.get("Authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {s.admin_token.get_secret_value()}".encode()):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def person(rep_id: str | None, request: web.Request) -> Person:
        if request.get(PERSON) is not None:
            return request[PERSON]  # a signed-in admin acts as themselves
        if not rep_id:
            return Person("admin-api", "admin API", "admin", "", s.tenant, s.timezone, "en")
        try:
            return directory.get(s.tenant, rep_id)
        except DirectoryError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    async def upload(request: web.Request) -> web.Response:
        authorize(request)
        if not request.content_type.startswith("multipart/"):
            raise web.HTTPBadRequest(text="send the files as multipart/form-data (field 'file', optional field 'as')")
        replies = await upload_files(request, s.max_upload_bytes, publishing, lambda fields: person(fields.get("as"), request))
        results = [r.meta["ingest"] for r in replies]
        status = 200 if all(r["status"] != "error" for r in results) else 207
        return web.json_response({"results": results}, status=status)

    async def drafts(request: web.Request) -> web.Response:
        authorize(request)
        from rag.versions import drafts as waiting

        def load() -> list[dict]:
            return [{"version_id": v.id, "doc_id": d, "title": v.title, "version": v.version, "by": v.ingested_by} for v, d in waiting(engine, s.tenant)]

        return web.json_response({"drafts": await asyncio.to_thread(load)})

    async def decide(request: web.Request) -> web.Response:
        authorize(request)
        try:
            version_id = int(request.match_info["version_id"])
        except ValueError:
            raise web.HTTPBadRequest(text="version id must be a number") from None
        who = await asyncio.to_thread(person, request.query.get("as"), request)
        reply = await asyncio.to_thread(publishing.decide, who, version_id, request.match_info["decision"] == "approve")
        ok = bool(reply.meta.get("decision"))
        return web.json_response({"ok": ok, "message": reply.text}, status=200 if ok else 409)

    async def report(request: web.Request) -> web.Response:
        authorize(request)
        from rag.report import content_report

        rows = await asyncio.to_thread(content_report, engine, s.tenant, date.today(), stale_days=s.stale_days)
        return web.json_response({"documents": [r.to_json() for r in rows]})

    return [
        web.post("/admin/kb/upload", upload),
        web.get("/admin/kb/drafts", drafts),
        web.post(r"/admin/kb/drafts/{version_id}/{decision:approve|reject}", decide),
        web.get("/admin/kb/report", report),
    ]


async def upload_files(request: web.Request, limit: int, publishing: Publishing, who: Callable[[dict[str, str]], Person]) -> list:
    """Every file of a multipart upload through `Publishing.upload` (published or a draft, by who sends it: `who(fields)`,
    called off the event loop); one Reply each, its meta["ingest"] the per-file result. Each file at most `limit`
    bytes, the whole body at most 4 files' worth, spooled to disk as it arrives."""
    fields, files = await read_form(request, limit, total=4 * limit)
    if not files:
        raise web.HTTPBadRequest(text="no file in the upload")
    replies = []
    try:
        person = await asyncio.to_thread(who, fields)
        for up in files:
            data = await asyncio.to_thread(up.read)
            replies.append(await asyncio.to_thread(publishing.upload, person, up.name, data, f"upload:{person.id}/{up.name}"))
    finally:
        for up in files:
            up.close()
    return replies
