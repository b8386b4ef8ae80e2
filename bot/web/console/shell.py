"""The console's shell: which role may open which page, the language a page is in, the layout every page renders
into, and how long each page took to build (copilot_console_render_seconds, and a Server-Timing header).

Who is asking always comes from the session (`request[PERSON]`); a role without access gets the 403 page, and the
session middleware has already sent a signed-out browser to /login and refused a state change without the CSRF token.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import quote, unquote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.auth.service import Auth
from bot.ops.audit import Audit
from bot.ops.metrics import Metrics
from bot.people.directory import Person
from bot.prompts import LANGS, Prompts
from bot.web.session import PERSON, SESSION, cookie_options
from bot.web.signin import lang_of

JINJA = web.AppKey("console.jinja", jinja2.Environment)
LANG_COOKIE = "copilot_lang"
FLASH_COOKIE = "console_flash"  # what the last form did, shown once on the page it returned to
# (page, path, roles) in the navigation's order
PAGES = (
    ("knowledge", "/console/knowledge", ("enablement", "admin")),
    ("dashboard", "/console/dashboard", ("manager", "admin")),
    ("conversations", "/console/conversations", ("enablement", "manager", "admin")),
    ("audit", "/console/audit", ("admin",)),
    ("reps", "/console/reps", ("admin",)),
)
ROLES = {name: roles for name, _, roles in PAGES}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Shell:
    prompts: Prompts
    auth: Auth
    metrics: Metrics
    audit: Audit
    public_url: str

    # language ----------------------------------------------------------------------------------
    def lang(self, request: web.Request) -> str:
        """?lang= (then remembered in a cookie), else the cookie, else the browser's first language."""
        for value in (request.query.get("lang", ""), request.cookies.get(LANG_COOKIE, "")):
            if value in LANGS:
                return value
        return lang_of(request)

    def words(self, request: web.Request) -> Callable[..., str]:
        lang = self.lang(request)
        return lambda key, **kw: self.prompts.msg(key, lang, **kw)

    # pages -------------------------------------------------------------------------------------
    def render(self, request: web.Request, template: str, page: str, context: dict[str, Any] | None = None,
               status: int = 200) -> web.Response:
        person: Person = request[PERSON]
        lang = self.lang(request)
        said = unquote(request.cookies.get(FLASH_COOKIE, ""))
        flash = {"ok": said[0] == "1", "text": said[1:]} if said[:1] in ("0", "1") and len(said) > 1 else None
        base = {
            "t": lambda key, **kw: self.prompts.msg(key, lang, **kw), "lang": lang, "me": person, "page": page,
            "csrf": self.auth.csrf(request[SESSION]),
            "nav": [(name, path) for name, path, roles in PAGES if person.role in roles],
            "other_langs": [(code, self.prompts.msg("language_name", code), str(request.rel_url.update_query(lang=code)))
                            for code in LANGS if code != lang],
            "flash": flash,
        }
        response = aiohttp_jinja2.render_template(template, request, {**base, **(context or {})}, status=status, app_key=JINJA)
        response.headers.update(SECURITY_HEADERS)
        if flash:
            response.del_cookie(FLASH_COOKIE, path="/console")
        return response

    def forbidden(self, request: web.Request, page: str) -> web.Response:
        return self.render(request, "forbidden.html", page, status=403)

    def page(self, name: str, roles: tuple[str, ...] | None = None) -> Callable[[Handler], Handler]:
        """A console route of page `name`: open to the page's roles (or `roles`), timed, in the chosen language."""
        allowed = roles or ROLES[name]

        def wrap(handler: Handler) -> Handler:
            async def run(request: web.Request) -> web.StreamResponse:
                started = time.perf_counter()
                if request[PERSON].role not in allowed:
                    response = self.forbidden(request, name)
                else:
                    response = await handler(request)
                elapsed = time.perf_counter() - started
                if request.method == "GET":
                    self.metrics.console_render.labels(page=name).observe(elapsed)
                response.headers["Server-Timing"] = f"render;dur={elapsed * 1000:.1f}"
                chosen = request.query.get("lang", "")
                if chosen in LANGS and request.cookies.get(LANG_COOKIE) != chosen:
                    response.set_cookie(LANG_COOKIE, chosen, **{**cookie_options(self.public_url, 365 * 86400), "httponly": False})
                return response

            return run

        return wrap

    def note(self, request: web.Request, name: str, detail: dict[str, Any]) -> None:
        """An audit row for a change made in the console, by the signed-in person."""
        person: Person = request[PERSON]
        self.audit("admin", name, person.id, {**detail, "via": "console"}, person.tenant)


def back(path: str, message: str = "", ok: bool = True) -> web.Response:
    """303 to `path` after a form (POST, redirect, GET); `message` is shown once on the next page (a short-lived cookie)."""
    response = web.Response(status=303, headers={"Location": path})
    if message:
        response.set_cookie(FLASH_COOKIE, quote(("1" if ok else "0") + message[:300]), max_age=120, path="/console", httponly=True,
                            samesite="Strict")
    return response


def local(path: str) -> str:
    """A console path as the console's sub-application routes it (without the /console prefix)."""
    return path.removeprefix("/console")


def form_value(form, key: str, limit: int = 200) -> str:
    return str(form.get(key, "")).strip()[:limit]
