"""The page a citation link opens: the cited passage with the passages around it, from the live version of
the document, as far as the link's viewer may read it (the retriever's own permission check), rendered from its
Markdown, opened scrolled to the cited passage, in the reader's language. A link is
bound to the person it was made for: a browser signed in as someone else is refused. Every opening is audited."""
from __future__ import annotations

import asyncio
import html

from aiohttp import web
from markdown_it import MarkdownIt

from bot.ops.audit import Audit
from bot.prompts import Prompts
from bot.web.links import LinkSigner
from bot.web.session import PERSON
from bot.web.signin import lang_of
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
        page = await asyncio.to_thread(passage_html, retriever, doc_id, viewer, claims.chunk_id, prompts, lang_of(request))
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


def passage_html(retriever: Retriever, doc_id: str, viewer: Viewer, chunk_id: str, prompts: Prompts, lang: str = "zh") -> str | None:
    """The page: the passages rendered from their Markdown (raw HTML in a document stays text), each section's
    heading once and without the document's title it starts with, the cited passage marked and scrolled into view."""
    shown = around(retriever.document_hits(viewer, doc_id), chunk_id)
    if not shown:
        return None
    t = lambda key: html.escape(prompts.msg(key, lang))
    body, last = [], None
    for h in shown:
        heading = section(h.heading, h.title)
        if heading != last and heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
        last = heading
        if h.chunk_id == chunk_id:
            body.append(f'<section id="{html.escape(h.chunk_id)}" class="passage cited" tabindex="-1" aria-labelledby="cited-label">'
                        f'<p id="cited-label" class="tag">{t("doc_page_cited")}</p>{MARKDOWN.render(h.text)}</section>')
        else:
            body.append(f'<section id="{html.escape(h.chunk_id)}" class="passage">{MARKDOWN.render(h.text)}</section>')
    first = shown[0]
    meta = f"v{html.escape(first.version)} · {t('doc_page_updated')} {html.escape(first.updated)}"
    meta += f" · {t('doc_page_expires')} {html.escape(first.expires)}" if first.expires else ""
    meta += f" · {t('doc_page_owner')} {html.escape(first.owner)}" if first.owner else ""
    return (f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else lang}"><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(first.title)}</title>'
            f"<style>{STYLE}</style><nav><a href=\"/chat\">← {t('doc_page_back')}</a></nav><main>"
            f"<h1>{html.escape(first.title)}</h1><p class=\"meta\">{meta}</p>{''.join(body)}</main>"
            # the fragment of the link scrolls there too, but some in-app browsers drop fragments
            "<script>var c=document.querySelector('.cited');if(c){c.scrollIntoView({block:'center'});c.focus({preventScroll:true})}</script></html>")


def section(heading: str, title: str) -> str:
    """A passage's heading path without the document's own heading at its start, which the page shows once as its
    title: "Title > A > B" -> "A › B" (a path of one heading stays, unless it is the title)."""
    parts = [p.strip() for p in heading.split(" > ") if p.strip()]
    if parts and (parts[0] == title.strip() or len(parts) > 1):
        parts = parts[1:]
    return " › ".join(parts)


MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
STYLE = ("body{font:16px/1.65 -apple-system,'PingFang SC','Microsoft YaHei','Segoe UI',sans-serif;color:#1f2328;margin:0}"
         "nav,main{max-width:820px;margin:0 auto;padding:12px 16px}nav a,a{color:#0550ae}h1{font-size:22px;margin:8px 0 4px}"
         "h2{font-size:17px;margin:22px 0 6px}.meta{color:#57606a;font-size:14px;margin:0 0 12px}"
         ".passage{padding:2px 12px;border-left:4px solid transparent;overflow-wrap:anywhere}"
         ".cited{background:#fff8c5;border-left-color:#9a6700;scroll-margin:30vh 0}.cited:focus{outline:none}"
         ".tag{font-size:13px;font-weight:600;color:#7d4e00;margin:8px 0 0}table{border-collapse:collapse;display:block;overflow-x:auto}"
         "td,th{border:1px solid #d0d7de;padding:4px 8px}pre{overflow-x:auto}")
