"""The aiohttp gateway: mounts health, metrics, the cited-document page, the admin API and every
channel's routes on the parts the app factory built. It builds nothing itself.

Bad input gets a clear JSON error and a 4xx; nothing a client sends produces a stack trace.
Bodies over the limit are refused before they are read. Every route but the explicit public list of
bot/web/session.py needs a signed-in session (and, to change anything, this site's origin and CSRF token).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from bot.web.admin import admin_routes
from bot.web.console import UPLOAD_PATH as CONSOLE_UPLOAD
from bot.web.console import console_routes
from bot.web.documents import document_routes
from bot.web.edge import address_middleware, parse_networks, person_middleware
from bot.web.oidc import START as OIDC_START
from bot.web.oidc import oidc_provider, oidc_routes
from bot.web.platform_signin import platform_signin_routes, signin_links
from bot.web.session import session_middleware
from bot.web.signin import signin_routes
from connectors.channel import Throttled
from connectors.local import LocalConnector

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("copilot.gateway")
UPLOAD_PATHS = ("/admin/kb/upload", "/api/chat", CONSOLE_UPLOAD)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> str:
    """The route a request matched, as written ("/dingtalk/card/{token}"): a path may carry a secret (a card callback's
    token), which must not reach a log."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def error_middleware(max_body: int, max_upload: int):
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = max_upload if request.path in UPLOAD_PATHS else max_body
        if request.content_length is not None and request.content_length > limit:
            return web.json_response({"error": f"request body too large: {request.content_length} bytes, limit {limit}"}, status=413)
        try:
            return await handler(request)
        except Throttled as exc:
            return web.json_response({"error": str(exc)}, status=429, headers={"Retry-After": str(max(1, round(exc.retry_after)))})
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            if exc.status == 413:
                message = f"request body too large (limit {limit} bytes)"
            return web.json_response({"error": message}, status=exc.status,
                                     headers={k: v for k, v in exc.headers.items() if k in ("Retry-After", "Allow")})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, route_of(request))
            return web.json_response({"error": "internal error; it has been logged"}, status=500)

    return errors


def health_routes(app: App) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await asyncio.to_thread(_readiness, app)
        return web.json_response({"ready": not problems, "problems": problems}, status=200 if not problems else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=app.metrics.render(), content_type="text/plain", charset="utf-8")

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]


def create_web_app(app: App, *, owns_app: bool = False) -> web.Application:
    """The web server of a built app; starting it starts the app, stopping it stops the app (and, when
    the server `owns_app`, releases its stores)."""
    s = app.settings
    limiter = app.limiters  # per process, or shared by every process through Redis
    per_address = limiter("address", s.address_requests_per_minute, max(1, s.address_requests_per_minute // 2))
    failures = limiter("failures", s.address_failures_per_minute, max(1, s.address_failures_per_minute))
    per_person = limiter("person", s.person_requests_per_minute, max(1, s.person_requests_per_minute // 2))
    chat_admits = lambda tenant, person_id: app.intake.admits(LocalConnector.name, tenant, person_id)
    web_app = web.Application(middlewares=[error_middleware(s.max_body_bytes, s.max_upload_bytes),
                                           address_middleware(parse_networks(s.trusted_proxies), per_address, failures),
                                           session_middleware(app.auth, s.tenant, s.public_url),
                                           person_middleware(per_person, chat_admits, UPLOAD_PATHS)],
                              client_max_size=s.max_body_bytes)  # uploads stream (multipart), checked against max_upload_bytes
    web_app.add_routes(health_routes(app))
    web_app.add_routes(document_routes(app.links, app.knowledge.retriever, app.agent.prompts, app.audit))
    per_minute = max(1, s.login_attempts_per_minute)
    provider, platforms = oidc_provider(s), app.channels.with_signin(s.tenant)
    others = ([(OIDC_START, "signin_oidc")] if provider else []) + signin_links(platforms)
    web_app.add_routes(signin_routes(app.auth, app.agent.prompts, tenant=s.tenant, public_url=s.public_url, demo=s.demo,
                                     per_account=limiter("signin_account", per_minute, per_minute),
                                     per_address=limiter("signin_address", 6 * per_minute, 6 * per_minute), audit=app.audit, others=others))
    if provider is not None:
        web_app.add_routes(oidc_routes(provider, app.auth, app.agent.prompts, tenant=s.tenant, public_url=s.public_url, audit=app.audit))
    web_app.add_routes(platform_signin_routes(platforms, app.auth, app.agent.prompts, tenant=s.tenant, base_url=s.base_url,
                                              public_url=s.public_url, audit=app.audit))
    web_app.add_routes(admin_routes(s, app.engine, app.directory, app.publishing))
    console_routes(web_app, app)
    web_app.add_routes(app.channels.routes(app.intake.sink))

    async def lifecycle(_: web.Application):
        await app.start()
        yield
        await app.aclose()
        if owns_app:
            app.close()

    web_app.cleanup_ctx.append(lifecycle)
    return web_app


def _readiness(app: App) -> list[str]:
    problems = []
    try:
        with app.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        problems.append(f"database: {exc}")
    try:
        app.knowledge.vectors.count()
    except Exception as exc:
        problems.append(f"vector store: {exc}")
    if not app.started:
        problems.append("workers not started")
    return problems
