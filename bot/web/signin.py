"""GET/POST /login (a password, or the first start's one-time link), POST /logout, GET /api/me, and in demo mode
an admin's switch to a sample person (POST /api/switch). Texts come from the catalogue in the browser's language.

The sign-in form has its own CSRF token (bound to a random cookie), so nobody can sign a visitor in as someone
else. Attempts are throttled per account and per client address (bot/pipeline/ratelimit.py), success or not.
"""
from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
from typing import Awaitable, Callable, Sequence

from aiohttp import web

from bot.auth.service import Auth
from bot.people.directory import DirectoryError, Person
from bot.pipeline.ratelimit import Limiter
from bot.prompts import LANGS, Prompts, ui_lang
from bot.web.edge import ADDRESS
from bot.web.session import COOKIE, PERSON, SESSION, cookie_options, same_origin

FORM_COOKIE = "copilot_form"
MAX_FIELD = 256


def lang_of(request: web.Request) -> str:
    """The reader's language: the one they chose (the `copilot_lang` cookie the chat's and the console's switches
    set), else the browser's first language: English for en*, Chinese otherwise."""
    chosen = request.cookies.get("copilot_lang", "")
    if chosen in LANGS:
        return chosen
    first = request.headers.get("Accept-Language", "").split(",")[0].strip().lower()
    return ui_lang("en" if first.startswith("en") else "zh")


def signin_note(audit: Callable[..., None] | None, tenant: str) -> Callable[..., Awaitable[None]]:
    """`await note(name, actor, **detail)`: a sign-in, a refused one, a sign-out or a switch in the audit trail (kind
    "signin"), for every way in (password, link, identity provider, platform)."""
    async def note(name: str, actor: str, **detail: str) -> None:
        if audit is not None:
            await asyncio.to_thread(audit, "signin", name, actor[:64], detail, tenant)

    return note


def seal_state(auth: Auth, payload: dict) -> str:
    """A short-lived value (a sign-in's state) as a cookie the server can trust again: JSON signed with its key."""
    import base64

    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    return body + "." + auth.form_token("state:" + body)


def open_state(auth: Auth, value: str) -> dict | None:
    """What `seal_state` sealed, if the signature holds and its "exp" (unix time) has not passed."""
    import base64
    import time

    body, _, mac = (value or "").partition(".")
    if not body or not hmac.compare_digest(mac.encode(), auth.form_token("state:" + body).encode()):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) and payload.get("exp", 0) > time.time() else None


def refusal_page(request: web.Request, prompts: Prompts, key: str, status: int, *, cookie: str = "") -> web.Response:
    """Why a sign-in through another site (an identity provider, a platform) did not happen, with a way back;
    `cookie`: the sign-in's state cookie, removed."""
    lang = lang_of(request)
    title = html.escape(prompts.msg("signin_title", lang))
    body = (f'<!doctype html><html lang="{lang}"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title}</title><p role="alert">{html.escape(prompts.msg(key, lang))}</p><p><a href="/login">{title}</a></p></html>')
    response = web.Response(text=body, content_type="text/html", charset="utf-8", status=status, headers={"Cache-Control": "no-store"})
    if cookie:
        response.del_cookie(cookie, path="/")
    return response


def local_path(value: str) -> str:
    """`value` when it is a path of this site ("/console/knowledge?x=1"), else "/": never another site
    ("//evil.example", "https://…", "/\\evil.example")."""
    from urllib.parse import urlsplit

    value = str(value or "")[:MAX_FIELD]
    parts = urlsplit(value)
    if not value.startswith("/") or value.startswith(("//", "/\\")) or parts.scheme or parts.netloc or any(c in value for c in "\r\n\t"):
        return "/"
    return value


async def start_session(auth: Auth, person: Person, public_url: str, to: str = "/") -> web.StreamResponse:
    """The response that signs `person` in (a new session cookie) and sends the browser on to `to` (a local path)."""
    response = web.HTTPSeeOther(local_path(to))
    response.set_cookie(COOKIE, await asyncio.to_thread(auth.issue, person), **cookie_options(public_url, auth.absolute))
    return response


def signin_routes(auth: Auth, prompts: Prompts, *, tenant: str, public_url: str, demo: bool,
                  per_account: Limiter, per_address: Limiter, audit: Callable[..., None] | None = None,
                  others: Sequence[tuple[str, str]] = ()) -> list[web.RouteDef]:
    """`others`: (path, catalogue key) of the other ways to sign in (an identity provider, a platform's account),
    shown as links under the form."""
    note = signin_note(audit, tenant)
    session_cookie = cookie_options(public_url, auth.absolute)
    form_cookie = {**cookie_options(public_url, 3600), "samesite": "Strict"}

    def page(request: web.Request, nonce: str, *, error: str = "", token: str = "", name: str = "", status: int = 200,
             then: str = "/") -> web.Response:
        lang = lang_of(request)
        t = lambda key, **kw: html.escape(prompts.msg(key, lang, **kw))
        csrf = html.escape(auth.form_token("form:" + nonce))
        err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        if token:
            fields = (f'<input type="hidden" name="token" value="{html.escape(token)}">'
                      f'<button>{t("signin_link_continue", name=name)}</button>')
        else:
            fields = (f'<label>{t("signin_username")}<input name="username" autocomplete="username" required autofocus></label>'
                      f'<label>{t("signin_password")}<input name="password" type="password" autocomplete="current-password" required></label>'
                      f'<button>{t("signin_submit")}</button>')
        body = (f'<!doctype html><html lang="{lang}"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{t("signin_title")} · Sales Copilot</title>'
                '<style>body{font:15px/1.6 sans-serif;max-width:360px;margin:12vh auto;padding:0 16px}label{display:block;margin:10px 0}'
                'input{display:block;width:100%;padding:6px 8px;font:inherit}button{padding:8px 16px;font:inherit}.error{color:#cf222e}</style>'
                f'<h1>{t("signin_title")}</h1>{err}<form method="post" action="/login">'
                f'<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{html.escape(then)}">{fields}</form>'
                + ("".join(f'<p><a class="sso" href="{html.escape(path)}">{t(key)}</a></p>' for path, key in others) if not token else "")
                + '</html>')
        response = web.Response(text=body, content_type="text/html", charset="utf-8", status=status,
                                headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
        if request.cookies.get(FORM_COOKIE) != nonce:
            response.set_cookie(FORM_COOKIE, nonce, **form_cookie)
        return response

    def form_nonce(request: web.Request) -> str:
        nonce = request.cookies.get(FORM_COOKIE, "")
        return nonce if 16 <= len(nonce) <= 64 else secrets.token_urlsafe(18)

    async def show(request: web.Request) -> web.Response:
        nonce = form_nonce(request)
        token = request.query.get("token", "")[:MAX_FIELD]
        if token:
            person = await asyncio.to_thread(auth.link_person, tenant, token)
            if person is None:
                return page(request, nonce, error=prompts.msg("signin_link_invalid", lang_of(request)), status=410)
            return page(request, nonce, token=token, name=person.name)
        return page(request, nonce, then=local_path(request.query.get("next", "/")))

    async def submit(request: web.Request) -> web.Response:
        lang = lang_of(request)
        nonce = form_nonce(request)
        if not same_origin(request, public_url):
            raise web.HTTPForbidden(text="cross-site request refused: this request did not come from this server's pages")
        if request.content_type != "application/x-www-form-urlencoded":
            raise web.HTTPUnsupportedMediaType(text="send the sign-in form as application/x-www-form-urlencoded")
        form = await request.post()
        username, password, token = (str(form.get(k, ""))[:MAX_FIELD] for k in ("username", "password", "token"))
        then = local_path(str(form.get("next", "/")))
        expected = auth.form_token("form:" + request.cookies.get(FORM_COOKIE, ""))
        if not request.cookies.get(FORM_COOKIE) or not hmac.compare_digest(str(form.get("csrf", "")).encode(), expected.encode()):
            return page(request, nonce, error=prompts.msg("signin_form_expired", lang), status=403, then=then)
        address = request.get(ADDRESS) or request.remote or "unknown"  # behind a trusted proxy: the forwarded client
        if not await per_address.allow(address) or (username and not await per_account.allow(f"{tenant}/{username}")):
            seconds = max(1, round(max(per_account.retry_after, per_address.retry_after)))
            response = page(request, nonce, error=prompts.msg("signin_throttled", lang, seconds=seconds), status=429, then=then)
            response.headers["Retry-After"] = str(seconds)
            return response
        if token:
            person = await asyncio.to_thread(auth.redeem, tenant, token)
            if person is None:
                await note("link_refused", "", remote=address)
                return page(request, nonce, error=prompts.msg("signin_link_invalid", lang), status=410)
        else:
            person = await asyncio.to_thread(auth.check_password, tenant, username, password)
            if person is None:
                await note("password_refused", username, remote=address)
                return page(request, nonce, error=prompts.msg("signin_wrong", lang), status=401, then=then)
        await note("link" if token else "password", person.id, remote=address)
        response = await start_session(auth, person, public_url, then)
        response.del_cookie(FORM_COOKIE, path="/")
        return response

    async def logout(request: web.Request) -> web.Response:
        person = request[PERSON]  # the middleware checked the session, the origin and the CSRF token
        await asyncio.to_thread(auth.revoke, person.id, person.tenant)
        await note("signout", person.id)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    def switcher(request: web.Request) -> str:
        """Demo mode: the admin who may switch this session to another person ("" when nobody may)."""
        p, ses = request[PERSON], request[SESSION]
        if not demo:
            return ""
        if p.role == "admin":
            return p.id
        try:
            return ses.by if ses.by and auth.directory.get(tenant, ses.by).role == "admin" else ""
        except DirectoryError:
            return ""

    async def me(request: web.Request) -> web.Response:
        p = request[PERSON]
        body = {"id": p.id, "name": p.name, "role": p.role, "team": p.team, "csrf": auth.csrf(request[SESSION]), "demo": demo}
        if await asyncio.to_thread(switcher, request):  # demo mode: an admin may look at the copilot as a sample person
            people = await asyncio.to_thread(auth.directory.summaries, tenant)
            body["people"] = [{"id": x["id"], "name": x["name"], "role": x["role"], "team": x.get("team", "")} for x in people]
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def switch(request: web.Request) -> web.Response:
        admin = await asyncio.to_thread(switcher, request)
        if not admin:
            raise web.HTTPForbidden(text="only an admin, and only in demo mode (COPILOT_DEMO=true), may switch to another person")
        try:
            target = str((await request.json()).get("person", ""))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise web.HTTPBadRequest(text='send {"person": "<id>"}') from None
        try:
            person = await asyncio.to_thread(auth.directory.get, tenant, target)
        except DirectoryError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        await note("switch", admin, to=person.id)
        response = web.json_response({"id": person.id, "name": person.name})
        response.set_cookie(COOKIE, await asyncio.to_thread(lambda: auth.issue(person, by=admin)), **session_cookie)
        return response

    return [web.get("/login", show), web.post("/login", submit), web.post("/logout", logout),
            web.get("/api/me", me), web.post("/api/switch", switch)]
