"""The page a citation link opens: the live version of a document, as far as the link's viewer may read
it (the retriever's own permission check), with the cited passage marked."""
from __future__ import annotations

import asyncio
import html

from aiohttp import web

from bot.prompts import LANGS, Prompts
from bot.web.links import LinkSigner
from rag.retrieve import Retriever, Viewer


def document_routes(links: LinkSigner, retriever: Retriever, prompts: Prompts) -> list[web.RouteDef]:
    async def kb_page(request: web.Request) -> web.Response:
        q = request.query
        doc_id = request.match_info["doc_id"]
        if not links.verify(doc_id, q.get("tenant", ""), q.get("role", ""), q.get("team", ""), q.get("exp", ""), q.get("sig", "")):
            raise web.HTTPForbidden(text="this link is invalid or has expired; ask the copilot again for a fresh one")
        page = await asyncio.to_thread(document_html, retriever, doc_id, Viewer(q["tenant"], q["role"], q["team"]), q.get("chunk", ""), prompts)
        if page is None:
            raise web.HTTPNotFound(text="this document is no longer available")
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    return [web.get("/kb/{doc_id}", kb_page)]


def document_html(retriever: Retriever, doc_id: str, viewer: Viewer, chunk_id: str, prompts: Prompts) -> str | None:
    hits = retriever.document_hits(viewer, doc_id)
    if not hits:
        return None
    body, last = [], None
    for h in hits:
        if h.heading != last:
            body.append(f"<h2>{html.escape(h.heading)}</h2>")
            last = h.heading
        mark = ' style="background:#fff8c5"' if h.chunk_id == chunk_id else ""
        body.append(f'<p id="{h.chunk_id}"{mark}>{html.escape(h.text)}</p>')
    first = hits[0]
    updated, expires = (" ".join(prompts.msg(key, lang) for lang in LANGS) for key in ("doc_page_updated", "doc_page_expires"))
    meta = f"v{html.escape(first.version)} · {updated} {html.escape(first.updated)}" + (f" · {expires} {html.escape(first.expires)}" if first.expires else "")
    meta += f" · owner {html.escape(first.owner)}"
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(first.title)}</title>"
            f"<style>body{{font:15px/1.6 sans-serif;max-width:820px;margin:24px auto;padding:0 16px;white-space:pre-wrap}}</style>"
            f"<h1>{html.escape(first.title)}</h1><p><small>{meta}</small></p>{''.join(body)}")
