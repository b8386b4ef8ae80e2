"""The aiohttp gateway: health, metrics, the knowledge pages, and every connector's routes.

Bad input gets a clear JSON error and a 4xx; nothing a client sends produces a stack trace.
Bodies over the limit are refused before they are read.
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
from typing import Awaitable, Callable

from aiohttp import web
from sqlalchemy import select

from bot.admin import admin_routes
from bot.app import Copilot
from bot.links import LinkSigner, load_secret
from bot.tables import OutboundRow
from connectors.local import LocalConnector
from rag.retrieve import Viewer

log = logging.getLogger("copilot.gateway")
COPILOT = web.AppKey("copilot", Copilot)
UPLOAD_PATHS = ("/admin/kb/upload", "/api/chat")


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    limit = request.app[COPILOT].settings
    max_body = limit.max_upload_bytes if request.path in UPLOAD_PATHS else limit.max_body_bytes
    if request.content_length is not None and request.content_length > max_body:
        return web.json_response({"error": f"request body too large: {request.content_length} bytes, limit {max_body}"}, status=413)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 413:
            message = f"request body too large (limit {max_body} bytes)"
        return web.json_response({"error": message}, status=exc.status, headers={k: v for k, v in exc.headers.items() if k in ("Retry-After", "Allow")})
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - never a traceback to a client
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error; it has been logged"}, status=500)


def create_app(copilot: Copilot, extra_connectors: list | None = None) -> web.Application:
    s = copilot.settings
    app = web.Application(middlewares=[errors], client_max_size=s.max_body_bytes)  # uploads stream (multipart), checked against max_upload_bytes
    app[COPILOT] = copilot
    signer = LinkSigner(load_secret(s.data_dir), s.public_url or f"http://{s.host}:{s.port}")
    copilot.agent.answerer.link = lambda h, v: signer.url(h.doc_id, v.tenant, v.role, v.team, h.chunk_id)

    local = LocalConnector(_history(copilot), _users(copilot), tenant=s.tenant, uploads=s.data_dir / "uploads",
                           allow=lambda sender: copilot.limiter.allow(f"console:{sender}") if copilot.limiter else True,
                           max_upload=s.max_upload_bytes)
    connectors = [local] + list(extra_connectors or [])
    copilot.attach(connectors)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await asyncio.to_thread(_readiness, copilot)
        return web.json_response({"ready": not problems, "problems": problems}, status=200 if not problems else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=copilot.metrics.render(), content_type="text/plain", charset="utf-8")

    async def kb_page(request: web.Request) -> web.Response:
        q = request.query
        doc_id = request.match_info["doc_id"]
        if not signer.verify(doc_id, q.get("tenant", ""), q.get("role", ""), q.get("team", ""), q.get("exp", ""), q.get("sig", "")):
            raise web.HTTPForbidden(text="this link is invalid or has expired; ask the copilot again for a fresh one")
        page = await asyncio.to_thread(_document_html, copilot, doc_id, Viewer(q["tenant"], q["role"], q["team"]), q.get("chunk", ""))
        if page is None:
            raise web.HTTPNotFound(text="this document is no longer available")
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics),
                    web.get("/kb/{doc_id}", kb_page)])
    app.add_routes(admin_routes(copilot))
    for c in connectors:
        app.add_routes(c.routes(copilot.sink))

    async def lifecycle(_: web.Application):  # noqa: ANN202
        await copilot.start()
        yield
        await copilot.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app


def _history(copilot: Copilot):  # noqa: ANN202
    async def history(tenant: str, conversation: str, after: int) -> list[dict]:
        key = f"console|{tenant}|{conversation}"

        def load() -> list[dict]:
            t = OutboundRow.__table__
            with copilot.engine.connect() as conn:
                rows = conn.execute(select(t.c.id, t.c.reply, t.c.inbox_id).where(
                    t.c.conversation_key == key, t.c.status == "sent", t.c.id > after).order_by(t.c.id).limit(100)).all()
            return [{"id": r.id, "inbox_id": r.inbox_id, "reply": json.loads(r.reply)} for r in rows]

        return await asyncio.to_thread(load)

    return history


def _users(copilot: Copilot):  # noqa: ANN202
    async def users() -> list[dict]:
        people = await asyncio.to_thread(copilot.directory.list, copilot.settings.tenant)
        return [{"id": p.id, "name": p.name, "role": p.role, "team": p.team} for p in people]

    return users


def _readiness(copilot: Copilot) -> list[str]:
    problems = []
    try:
        with copilot.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"database: {exc}")
    try:
        copilot.vectors.count()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"vector store: {exc}")
    if not copilot.started:
        problems.append("workers not started")
    return problems


def _document_html(copilot: Copilot, doc_id: str, viewer: Viewer, chunk_id: str) -> str | None:
    """The live version of a document, if this viewer may read it (the retriever's permission check)."""
    hits = copilot.retriever.document_hits(viewer, doc_id)
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
    meta = f"v{html.escape(first.version)} · 更新 updated {html.escape(first.updated)}" + (f" · 过期 expires {html.escape(first.expires)}" if first.expires else "")
    meta += f" · owner {html.escape(first.owner)}"
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(first.title)}</title>"
            f"<style>body{{font:15px/1.6 sans-serif;max-width:820px;margin:24px auto;padding:0 16px;white-space:pre-wrap}}</style>"
            f"<h1>{html.escape(first.title)}</h1><p><small>{meta}</small></p>{''.join(body)}")
