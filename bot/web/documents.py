"""The page a citation link opens: the cited passage with the passages around it, from the live version of
the document, as far as the link's viewer may read it (the retriever's own permission check). A link is
bound to the person it was made for: a browser signed in as someone else is refused. Every opening is audited."""
from __future__ import annotations

import asyncio
import html

from aiohttp import web

from bot.ops.audit import Audit
from bot.prompts import LANGS, Prompts
from bot.web.links import LinkSigner
from bot.web.session import PERSON
from rag.retrieve import Hit, Retriever, Viewer

CONTEXT = 2  # passages shown before and after the cited one


def document_routes(links: LinkSigner, retriever: Retriever, prompts: Prompts, audit: Audit) -> list[web.RouteDef]:
    async def kb_page(request: web.Request) -> web.Response:
        doc_id = request.match_info["doc_id"]
        claims = links.verify(doc_id, dict(request.query))
        if claims is None:
            raise web.HTTPForbidden(text="this link is invalid, expired or revoked; ask the copilot again for a fresh one")
        signed_in = request.get(PERSON)
        if signed_in is not None and claims.person and signed_in.id != claims.person:
            raise web.HTTPForbidden(text="this link was made for someone else; ask the copilot yourself")
        viewer = Viewer(claims.tenant, claims.role, claims.team, claims.person)
        page = await asyncio.to_thread(passage_html, retriever, doc_id, viewer, claims.chunk_id, prompts)
        if page is None:
            raise web.HTTPNotFound(text="this passage is no longer in the knowledge base; ask the copilot again")
        await asyncio.to_thread(audit, "read", "citation", claims.person or "link", {"doc": doc_id, "chunk": claims.chunk_id,
                                                                                     "remote": request.remote or ""}, claims.tenant)
        return web.Response(text=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store",
                                                                                           "Referrer-Policy": "no-referrer"})

    return [web.get("/kb/{doc_id}", kb_page)]


def around(hits: list[Hit], chunk_id: str, context: int = CONTEXT) -> list[Hit]:
    """The cited passage and `context` passages on each side of it (nothing when it is gone)."""
    at = next((i for i, h in enumerate(hits) if h.chunk_id == chunk_id), None)
    return [] if at is None else hits[max(0, at - context): at + context + 1]


def passage_html(retriever: Retriever, doc_id: str, viewer: Viewer, chunk_id: str, prompts: Prompts) -> str | None:
    shown = around(retriever.document_hits(viewer, doc_id), chunk_id)
    if not shown:
        return None
    body, last = [], None
    for h in shown:
        if h.heading != last:
            body.append(f"<h2>{html.escape(h.heading)}</h2>")
            last = h.heading
        mark = ' class="cited"' if h.chunk_id == chunk_id else ""
        body.append(f'<p id="{html.escape(h.chunk_id)}"{mark}>{html.escape(h.text)}</p>')
    first = shown[0]
    updated, expires = (" ".join(prompts.msg(key, lang) for lang in LANGS) for key in ("doc_page_updated", "doc_page_expires"))
    meta = f"v{html.escape(first.version)} · {updated} {html.escape(first.updated)}" + (f" · {expires} {html.escape(first.expires)}" if first.expires else "")
    meta += f" · owner {html.escape(first.owner)}"
    return (f"<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'><title>{html.escape(first.title)}</title>"
            f"<style>body{{font:15px/1.6 sans-serif;max-width:820px;margin:24px auto;padding:0 16px;white-space:pre-wrap}}"
            f".cited{{background:#fff8c5}}</style>"
            f"<h1>{html.escape(first.title)}</h1><p><small>{meta}</small></p>{''.join(body)}")
