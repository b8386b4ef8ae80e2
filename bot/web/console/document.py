"""One document on the Knowledge page: its metadata, every version (live, superseded, drafts, rejected, retired) with
who made and approved it, the diff between two versions (metadata and passages), the metadata form (audience, team,
owner, expiry, tags: published as a new version, rag/versions.py) and retirement."""
from __future__ import annotations

import asyncio
import difflib
from typing import TYPE_CHECKING

from aiohttp import web

from bot.web.console.shell import Shell, back, form_value, local
from bot.web.session import PERSON
from rag.formats import IngestError
from rag.store import DocVersion
from rag.versions import EDITABLE, passages, revise, versions

if TYPE_CHECKING:
    from bot.app import App

HOME = "/console/knowledge/doc"
COMPARED = ("title", "audience", "team", "owner", "updated", "expires", "tags", "n_chunks")


def doc_url(doc_id: str) -> str:
    from urllib.parse import quote

    return f"{HOME}?id={quote(doc_id, safe='')}"


def lines_of(engine, version_id: int) -> list[str]:
    out, heading = [], None
    for c in passages(engine, version_id):
        if c.heading != heading:
            out.append(f"## {c.heading}" if c.heading else "##")
            heading = c.heading
        out += c.text.splitlines() or [""]
    return out


def diff(engine, a: DocVersion, b: DocVersion) -> dict:
    """What changed from version `a` to version `b`: metadata fields, and the passages' lines (unified, 2 lines of context)."""
    meta = [(k, getattr(a, k), getattr(b, k)) for k in COMPARED if getattr(a, k) != getattr(b, k)]
    rows = []
    for line in list(difflib.unified_diff(lines_of(engine, a.id), lines_of(engine, b.id), lineterm="", n=2))[2:]:
        kind = "hunk" if line.startswith("@@") else "ins" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        rows.append((kind, line if kind == "hunk" else line[1:]))
    return {"a": a, "b": b, "meta": meta, "lines": rows}


def routes(shell: Shell, app: App) -> list[web.RouteDef]:
    tenant = app.settings.tenant
    page = shell.page("knowledge")

    @page
    async def show(request: web.Request) -> web.Response:
        doc_id = request.query.get("id", "")[:300]
        found = await asyncio.to_thread(versions, app.engine, tenant, doc_id)
        if found is None:
            return shell.render(request, "not_found.html", "knowledge", {"what": doc_id}, status=404)
        doc, vers = found
        by_id = {v.id: v for v in vers}
        live = by_id.get(doc.live_version_id) if doc.live_version_id else None
        a, b = (by_id.get(_int(request.query.get(k))) for k in ("a", "b"))
        if (a is None or b is None) and len(vers) > 1:  # by default: the version before the newest against the newest
            a, b = vers[-2], vers[-1]
        compared = await asyncio.to_thread(diff, app.engine, a, b) if a is not None and b is not None and a.id != b.id else None
        current = live or (vers[-1] if vers else None)
        return shell.render(request, "document.html", "knowledge", {
            "doc_id": doc_id, "live": live, "current": current, "versions": list(reversed(vers)), "diff": compared,
            "editable": EDITABLE, "audiences": ("all", "sales", "managers")})

    @page
    async def edit(request: web.Request) -> web.Response:
        form = await request.post()
        doc_id = form_value(form, "id", 300)
        changes = {k: form_value(form, k, 200) for k in EDITABLE if k in form}
        t = shell.words(request)
        try:
            res = await asyncio.to_thread(revise, app.knowledge.ingestor, tenant, doc_id, changes, request[PERSON].id)
        except IngestError as exc:
            return back(doc_url(doc_id), t("console_doc_edit_refused", reason=str(exc)), ok=False)
        if res.status == "unchanged":
            return back(doc_url(doc_id), t("console_doc_unchanged"))
        await asyncio.to_thread(shell.note, request, "kb_edit", {"doc": doc_id, "version": res.version, "changes": changes})
        return back(doc_url(doc_id), t("console_doc_edited", version=res.version))

    @page
    async def retire(request: web.Request) -> web.Response:
        doc_id = form_value(await request.post(), "id", 300)
        t = shell.words(request)
        if not await asyncio.to_thread(app.knowledge.ingestor.retire, tenant, doc_id):
            return back(doc_url(doc_id), t("console_doc_not_live"), ok=False)
        await asyncio.to_thread(shell.note, request, "kb_retire", {"doc": doc_id})
        return back(doc_url(doc_id), t("console_doc_retired"))

    return [web.get(local(HOME), show), web.post(local(HOME) + "/edit", edit), web.post(local(HOME) + "/retire", retire)]


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
