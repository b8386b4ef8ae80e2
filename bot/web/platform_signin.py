"""Sign in to the web console with a platform's own account: WeCom (企业微信扫码登录), DingTalk (钉钉扫码登录),
and any connector that has the WebSignIn ability (connectors/channel.py).

GET /login/with/<channel> sends the browser to the platform's login page (a QR code to scan, or straight through
inside the platform's own browser) with a random state sealed in a cookie; GET /login/with/<channel>/callback takes
the platform's code back, has the connector ask the platform who it is (with the app's own credentials: the browser
is never believed), and signs in the directory person linked to that platform account — only one already linked
(the same link the chat uses), never a new one.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Callable

from aiohttp import web

from bot.auth.service import Auth
from bot.prompts import Prompts
from bot.web.session import cookie_options
from bot.web.signin import open_state, refusal_page, seal_state, signin_note, start_session
from connectors.channel import SignInRefused, WebSignIn

log = logging.getLogger("copilot.signin")
PREFIX = "/login/with/"
STATE_COOKIE = "copilot_platform_login"
STATE_TTL = 600.0


def signin_links(platforms: dict[str, WebSignIn]) -> list[tuple[str, str]]:
    """(path, catalogue key) of each platform sign-in this deployment offers (`Channels.with_signin`), for the sign-in page."""
    return [(PREFIX + name, c.label) for name, c in platforms.items()]


def platform_signin_routes(platforms: dict[str, WebSignIn], auth: Auth, prompts: Prompts, *, tenant: str, base_url: str,
                           public_url: str, audit: Callable[..., None]) -> list[web.RouteDef]:
    cookie = {**cookie_options(public_url, STATE_TTL), "samesite": "Lax"}  # Lax: the platform's redirect back is top-level

    def platform(request: web.Request) -> tuple[str, WebSignIn]:
        name = request.match_info["channel"]
        if name not in platforms:
            raise web.HTTPNotFound(text=f"no sign-in with {name!r} is set up here")
        return name, platforms[name]

    note = signin_note(audit, tenant)

    async def start(request: web.Request) -> web.StreamResponse:
        name, connector = platform(request)
        state = secrets.token_urlsafe(24)
        response = web.HTTPSeeOther(connector.signin_url(tenant, state, f"{base_url}{PREFIX}{name}/callback"))
        response.set_cookie(STATE_COOKIE, seal_state(auth, {"s": state, "c": name, "exp": time.time() + STATE_TTL}), **cookie)
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        name, connector = platform(request)
        saved = open_state(auth, request.cookies.get(STATE_COOKIE, ""))
        if saved is None or saved.get("c") != name or not secrets.compare_digest(str(request.query.get("state", "")), str(saved["s"])):
            await note("refused", "", method=name, reason="state")
            return refusal_page(request, prompts, "signin_form_expired", 400, cookie=STATE_COOKIE)
        try:
            user_id = await connector.signin_user(tenant, request.query)
        except SignInRefused as exc:
            log.warning("sign-in with %s refused: %s", name, exc)
            await note("refused", "", method=name, reason=str(exc)[:64])
            return refusal_page(request, prompts, "signin_oidc_refused", 403, cookie=STATE_COOKIE)
        person = await asyncio.to_thread(auth.directory.resolve, name, tenant, user_id)
        if person is None:
            await note("refused", user_id, method=name, reason="not linked to a directory person")
            return refusal_page(request, prompts, "signin_oidc_unknown", 403, cookie=STATE_COOKIE)
        await note("signed_in", person.id, method=name)
        response = await start_session(auth, person, public_url)
        response.del_cookie(STATE_COOKIE, path="/")
        return response

    return [web.get(PREFIX + "{channel}", start), web.get(PREFIX + "{channel}/callback", callback)]
