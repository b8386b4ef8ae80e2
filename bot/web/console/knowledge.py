"""The Knowledge page (enablement and admin): drafts to approve or reject, uploads of several files with a result per
file, every live document with owner, version, audience, age, expiry, retrievals, citations and 👍/👎, filtered by
the freshness flags (the decay report) with a button that nudges the owners, and a retrieval test box: what a chosen
role and team would get for a question, with the scores.

Uploads take the admin API's path (bot.web.admin.upload_files → Publishing.upload → the sandboxed parser)."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING

from aiohttp import web

from bot.web.admin import upload_files
from bot.web.console.shell import Shell, back, form_value, local
from bot.web.session import PERSON
from rag.formats import SUFFIXES
from rag.report import content_report
from rag.retrieve import Viewer
from rag.store import CONTENT_ROLES
from rag.text import language
from rag.versions import drafts

if TYPE_CHECKING:
    from bot.app import App

HOME = "/console/knowledge"
# the report's flags (rag/report.py) -> the filter codes the page offers
FLAGS = (("expired", "expired"), ("not updated", "stale"), ("never used", "unused"), ("falling use", "falling"), ("often disliked", "disliked"))
FILTERS = tuple(code for _, code in FLAGS)
ACCEPT = ",".join(SUFFIXES)  # what the parsers read, pictures (OCR) included


def flag_code(flag: str) -> str:
    return next((code for prefix, code in FLAGS if flag.startswith(prefix)), "other")


def routes(shell: Shell, app: App) -> list[web.RouteDef]:
    s = app.settings
    tenant = s.tenant
    page = shell.page("knowledge")

    def as_reader(request: web.Request):
        """The signed-in person, speaking the console's language (the words of the replies Publishing gives)."""
        return replace(request[PERSON], language=shell.lang(request))

    @page
    async def index(request: web.Request) -> web.Response:
        chosen = request.query.get("flag", "")
        owner = request.query.get("owner", "").strip()

        def load():
            return content_report(app.engine, tenant, date.today(), stale_days=s.stale_days), drafts(app.engine, tenant)

        report, waiting = await asyncio.to_thread(load)
        docs = [(r, [flag_code(f) for f in r.flags]) for r in report]
        counts = {code: sum(code in codes for _, codes in docs) for code in FILTERS}
        shown = [(r, codes) for r, codes in docs if (not chosen or chosen in codes) and (not owner or r.owner == owner)]
        owners = sorted({r.owner for r in report if r.owner})
        return shell.render(request, "knowledge.html", "knowledge", {
            "docs": shown, "total": len(docs), "counts": counts, "filters": FILTERS, "chosen": chosen, "owner": owner, "owners": owners,
            "drafts": waiting, "accept": ACCEPT, "max_mb": s.max_upload_bytes // (1024 * 1024), "stale_days": s.stale_days,
            "flagged": sum(1 for _, codes in docs if codes)})

    @page
    async def upload(request: web.Request) -> web.Response:
        reader = as_reader(request)
        replies = await upload_files(request, s.max_upload_bytes, app.publishing, lambda _fields: reader)
        results = [{**r.meta["ingest"], "message": r.text} for r in replies]
        await asyncio.to_thread(shell.note, request, "kb_upload", {"files": [{k: x.get(k, "") for k in ("name", "doc_id", "status", "version")}
                                                                            for x in results]})
        fragment = request.headers.get("X-Console-Fragment") == "1"
        return shell.render(request, "upload_results.html" if fragment else "uploaded.html", "knowledge", {"results": results},
                            status=200 if all(x["status"] != "error" for x in results) else 207)

    @page
    async def decide(request: web.Request) -> web.Response:
        try:
            version_id = int(request.match_info["version_id"])
        except ValueError:
            return back(HOME)
        approve = request.match_info["decision"] == "approve"
        reply = await asyncio.to_thread(app.publishing.decide, as_reader(request), version_id, approve)
        ok = bool(reply.meta.get("decision"))
        if ok:
            await asyncio.to_thread(shell.note, request, "kb_approve" if approve else "kb_reject", {"version_id": version_id})
        return back(HOME, reply.text, ok)

    @page
    async def nudge(request: web.Request) -> web.Response:
        n = await asyncio.to_thread(app.publishing.nudge_owners, tenant)
        await asyncio.to_thread(shell.note, request, "kb_nudge_owners", {"messages": n})
        chosen = form_value(await request.post(), "flag", 20)
        return back(HOME + (f"?flag={chosen}" if chosen in FILTERS else ""), shell.words(request)("console_kb_nudged", n=n))

    @page
    async def probe(request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()[:500]
        role = request.query.get("role", "rep")
        role = role if role in CONTENT_ROLES else "rep"
        team = request.query.get("team", "").strip()[:64]
        teams = sorted({p.team for p in await asyncio.to_thread(app.directory.list, tenant) if p.team})
        hits, floor = [], s.score_floor
        if q:
            floor = s.score_floor_en if language(q) == "en" else s.score_floor
            hits = await asyncio.to_thread(app.knowledge.retriever.search, q, Viewer(tenant, role, team), k=8, per_doc=1)
        return shell.render(request, "probe.html", "knowledge", {"q": q, "role": role, "team": team, "teams": teams, "roles": CONTENT_ROLES,
                                                                 "hits": hits, "floor": floor})

    return [
        web.get(local(HOME), index),
        web.post(local(HOME) + "/upload", upload),
        web.post(local(HOME) + r"/drafts/{version_id}/{decision:approve|reject}", decide),
        web.post(local(HOME) + "/nudge", nudge),
        web.get(local(HOME) + "/probe", probe),
    ]
