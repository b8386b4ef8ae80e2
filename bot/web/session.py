"""The web edge: who is behind a request, and whether a state-changing request is really from our own page.

Every route needs a signed-in session except the explicit list below, which verifies itself: platform
callbacks carry the platform's signature, citation pages a signed link, health and metrics say nothing
private, and /login is how a session starts. The admin API also takes its bearer token (scripts).

For every other route the person comes from the session cookie (never from the request's fields) and is put
on the request as `request[PERSON]` (a `Person`); a connector reads it through what the factory hands it.
A state-changing request (anything but GET/HEAD/OPTIONS) must also come from this site (Origin, else Referer,
must name this server; a browser's `Sec-Fetch-Site: cross-site` is refused), carry the session's CSRF token
(header X-CSRF-Token, or a form field `csrf`), and send a body only as JSON (application/json), a form or a
multipart upload: text/plain, which a page of another site may post without asking, is refused.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from bot.auth.service import Auth, WebSession
from bot.people.directory import DirectoryError, Person

PERSON = web.RequestKey("copilot.person", Person)  # the signed-in Person
SESSION = web.RequestKey("copilot.session", WebSession)  # their WebSession
COOKIE = "copilot_session"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/login"})
PUBLIC_PREFIXES = ("/wecom/", "/dingtalk/", "/feishu/", "/kb/", "/login/")  # platform signatures; signed citation links; sign-in elsewhere
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_TYPES = ("application/json", "multipart/form-data", "application/x-www-form-urlencoded")
TOUCH_EVERY = 60.0  # re-issue the cookie (idle expiry) at most this often
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def cookie_options(public_url: str, max_age: float) -> dict:
    """HttpOnly and SameSite always; Secure when users reach the server over https."""
    return {"httponly": True, "samesite": "Lax", "secure": public_url.startswith("https://"), "path": "/", "max_age": int(max_age)}


def same_origin(request: web.Request, public_url: str) -> bool:
    """Whether a state-changing request comes from a page of this server (absent headers: not a browser)."""
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return False
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True  # no browser sends a cross-site POST without Origin; the CSRF token still has to match
    if source == "null":
        return False
    parts = urlsplit(source)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    ours = {f"{request.scheme}://{request.host}".lower()}
    if public_url:
        p = urlsplit(public_url)
        ours.add(f"{p.scheme}://{p.netloc}".lower())
    return origin in ours


def session_middleware(auth: Auth, tenant: str, public_url: str):
    options = cookie_options(public_url, auth.absolute)
    people: dict[str, tuple[float, Person]] = {}  # read in the last second (a role change counts within a second)

    def in_memory(cookie: str) -> bool:
        """Whether `load(cookie)` needs no database query: then it runs on the event loop, not in a thread."""
        rep_id = auth.peek(cookie)
        cached = people.get(rep_id) if rep_id else None
        return rep_id is None or (cached is not None and cached[0] > _now() and auth.is_cached(rep_id))

    async def load_async(cookie: str) -> tuple[WebSession, Person] | None:
        return load(cookie) if in_memory(cookie) else await asyncio.to_thread(load, cookie)

    def load(cookie: str) -> tuple[WebSession, Person] | None:
        ses = auth.read(cookie)
        if ses is None or ses.tenant != tenant:
            return None
        now = _now()
        cached = people.get(ses.rep_id)
        if cached is not None and cached[0] > now:
            return ses, cached[1]
        try:
            person = auth.directory.get(tenant, ses.rep_id)
        except DirectoryError:  # removed or deactivated since sign-in
            return None
        if len(people) > 10_000:
            people.clear()
        people[ses.rep_id] = (now + 1.0, person)
        return ses, person

    @web.middleware
    async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request.path):
            if request.path.startswith("/kb/") and request.cookies.get(COOKIE):
                found = await load_async(request.cookies[COOKIE])  # a citation link is bound to its person
                if found is not None:
                    request[SESSION], request[PERSON] = found
            return await handler(request)
        if request.path.startswith("/admin/") and request.headers.get("Authorization", "").startswith("Bearer "):
            return await handler(request)  # a script with the admin token (bot/web/admin.py checks it)
        found = await load_async(request.cookies.get(COOKIE, ""))
        if found is None:
            if request.method in SAFE_METHODS and (request.path in ("/", "/chat") or "text/html" in request.headers.get("Accept", "")):
                here = request.path_qs if request.path not in ("/", "/chat") else ""
                raise web.HTTPSeeOther("/login" + (f"?{urlencode({'next': here})}" if here else ""))  # a page: sign in, then back
            raise web.HTTPUnauthorized(text="sign in first (POST /login, or open /login in a browser)")
        ses, person = found
        if request.method not in SAFE_METHODS:
            await check_state_change(request, auth.csrf(ses), public_url)
        request[SESSION], request[PERSON] = ses, person
        response = await handler(request)
        if ses.seen + TOUCH_EVERY < _now() and not response.prepared:
            response.set_cookie(COOKIE, auth.touch(ses), **options)
        return response

    return sessions


async def check_state_change(request: web.Request, expected: str, public_url: str) -> None:
    """Origin, body type and CSRF token of a POST/PUT/PATCH/DELETE; raises the HTTP error that refuses it."""
    import hmac

    if not same_origin(request, public_url):
        raise web.HTTPForbidden(text="cross-site request refused: this request did not come from this server's pages")
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding", "") == "chunked"
    if has_body and request.content_type not in BODY_TYPES:
        raise web.HTTPUnsupportedMediaType(text=f"Content-Type {request.content_type or 'missing'} refused: send JSON as application/json "
                                                "(or a form, or multipart/form-data)")
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type == "application/x-www-form-urlencoded":
        token = str((await request.post()).get("csrf", ""))
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: send the X-CSRF-Token header that GET /api/me gives")


def _now() -> float:
    import time

    return time.time()
