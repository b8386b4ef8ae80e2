"""The web console under /console: server-rendered pages (Jinja2, autoescaped) for enablement, managers and admins.

One module per page: knowledge (documents, uploads, drafts, freshness, the retrieval test) and versions (one
document's history, diff, metadata, retirement), dashboard, conversations (declined questions, 👎 answers), audit,
reps (directory, approvals, channel health, sign-in). Charts are SVG drawn on the server (charts.py); the only
scripts are static/console.js (uploads with progress, drag and drop) and nothing from another host.

Part of bot.web: it may use every wing below (auth, proactive, pipeline, agent, people, ops) and is handed the
built app by the gateway; it never imports bot.app, bot.doctor or bot.cli.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.web.console.shell import JINJA, PAGES, Shell, back

if TYPE_CHECKING:
    from bot.app import App

HERE = Path(__file__).resolve().parent
UPLOAD_PATH = "/console/knowledge/upload"


def console_app(app: App) -> web.Application:
    """The console as a sub-application, mounted by the gateway at /console."""
    from bot.web.console import audit, conversations, dashboard, document, knowledge, reps

    shell = Shell(app.agent.prompts, app.auth, app.metrics, app.audit, app.settings.public_url)
    sub = web.Application()
    aiohttp_jinja2.setup(sub, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, app_key=JINJA,
                         trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)

    @shell.page("home", roles=("rep", "manager", "enablement", "admin"))
    async def home(request: web.Request) -> web.StreamResponse:
        from bot.web.session import PERSON

        role = request[PERSON].role
        first = next((path for _, path, roles in PAGES if role in roles), None)
        return back(first) if first else shell.forbidden(request, "home")

    sub.router.add_get("/", home)
    sub.router.add_static("/static", HERE / "static")
    for module in (knowledge, document, dashboard, conversations, audit, reps):
        sub.add_routes(module.routes(shell, app))
    return sub


def console_routes(web_app: web.Application, app: App) -> None:
    """Mount the console on the gateway's web app (/console and everything under it)."""
    async def bare(_: web.Request) -> web.Response:
        return back("/console/")

    web_app.router.add_get("/console", bare)  # before the sub-app, which would answer 404 for its bare prefix
    web_app.add_subapp("/console", console_app(app))
