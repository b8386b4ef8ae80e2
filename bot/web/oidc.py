"""Sign in with the company's identity provider (OpenID Connect, authorization code flow with PKCE).

GET /login/oidc sends the browser to the provider; GET /login/oidc/callback takes the code back, exchanges it at
the provider's token endpoint (authlib), checks the ID token's signature against the provider's published keys and
its issuer, audience, expiry and nonce (joserfc), and signs in the directory person the token names: by the claim
`oidc_claim` — "email" (verified by the provider) matched to a person's email identity, or any other claim matched
exactly to a person id. Nobody is created: a person the directory does not know is refused, with a clear message.

The state, nonce and PKCE verifier travel in a short-lived cookie sealed with the server's key, so the callback
may reach any process of the deployment. The provider's configuration and keys are fetched once an hour.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable

import httpx
from aiohttp import web
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from bot.auth.service import Auth
from bot.people.directory import DirectoryError, Person
from bot.prompts import Prompts
from bot.web.session import cookie_options
from bot.web.signin import open_state, refusal_page, seal_state, signin_note, start_session

log = logging.getLogger("copilot.oidc")
START, CALLBACK = "/login/oidc", "/login/oidc/callback"
STATE_COOKIE = "copilot_oidc"
STATE_TTL = 600.0  # seconds a sign-in may take at the provider
CONFIG_TTL = 3600.0
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]  # asymmetric only: no HS256 with a public key


@dataclass(frozen=True)
class OIDCConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str  # the public URL of CALLBACK
    claim: str = "email"
    timeout: float = 10.0


class OIDCError(Exception):
    """A sign-in the provider or its token did not vouch for (the message is for the log, not the browser)."""


class Provider:
    """The provider's discovery document and keys (cached), the code exchange and the ID token check."""

    def __init__(self, config: OIDCConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport
        self._meta: tuple[float, dict, KeySet] | None = None

    def _client(self, **kw) -> AsyncOAuth2Client:
        c = self.config
        return AsyncOAuth2Client(c.client_id, c.client_secret, redirect_uri=c.redirect_uri, scope="openid email profile",
                                 code_challenge_method="S256", timeout=c.timeout, transport=self.transport, **kw)

    async def metadata(self) -> tuple[dict, KeySet]:
        if self._meta is not None and self._meta[0] > time.time():
            return self._meta[1], self._meta[2]
        async with httpx.AsyncClient(timeout=self.config.timeout, transport=self.transport) as http:
            meta = (await http.get(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")).raise_for_status().json()
            if meta.get("issuer") != self.config.issuer:
                raise OIDCError(f"the provider calls itself {meta.get('issuer')!r}, not {self.config.issuer!r}")
            keys = KeySet.import_key_set((await http.get(meta["jwks_uri"])).raise_for_status().json())
        self._meta = (time.time() + CONFIG_TTL, meta, keys)
        return meta, keys

    async def authorization_url(self, state: str, nonce: str, verifier: str) -> str:
        meta, _ = await self.metadata()
        async with self._client() as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier)
        return url

    async def claims(self, code: str, nonce: str, verifier: str) -> dict:
        meta, keys = await self.metadata()
        async with self._client() as client:
            token = await client.fetch_token(meta["token_endpoint"], code=code, code_verifier=verifier, grant_type="authorization_code")
        id_token = token.get("id_token")
        if not id_token:
            raise OIDCError("the token response has no id_token (is the scope openid allowed for this client?)")
        try:
            decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.config.issuer},
                                  aud={"essential": True, "value": self.config.client_id},
                                  nonce={"essential": True, "value": nonce}, exp={"essential": True},
                                  sub={"essential": True}).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OIDCError(f"ID token refused: {exc}") from None
        return decoded.claims


def person_for(claims: dict, claim: str, tenant: str, directory) -> Person | None:
    """The directory person the token's claim names, or None."""
    value = claims.get(claim)
    if not isinstance(value, str) or not value:
        return None
    if claim == "email":
        if claims.get("email_verified") is False:
            return None  # the provider itself does not vouch for this address
        return directory.resolve("email", tenant, value.strip().lower())
    try:
        return directory.get(tenant, value)
    except DirectoryError:
        return None


def oidc_provider(settings, transport: httpx.AsyncBaseTransport | None = None) -> Provider | None:
    """The configured provider, or None when OIDC sign-in is not set up (COPILOT_OIDC_ISSUER empty)."""
    if not settings.oidc_issuer:
        return None
    return Provider(OIDCConfig(issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
                               client_secret=settings.oidc_client_secret.get_secret_value(),
                               redirect_uri=settings.base_url + CALLBACK, claim=settings.oidc_claim), transport)


def oidc_routes(provider: Provider, auth: Auth, prompts: Prompts, *, tenant: str, public_url: str,
                audit: Callable[..., None]) -> list[web.RouteDef]:
    cookie = {**cookie_options(public_url, STATE_TTL), "samesite": "Lax"}  # Lax: the provider's redirect back is top-level

    note = signin_note(audit, tenant)

    def refused(request: web.Request, key: str, status: int = 403) -> web.Response:
        return refusal_page(request, prompts, key, status, cookie=STATE_COOKIE)

    async def start(request: web.Request) -> web.StreamResponse:
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        try:
            url = await provider.authorization_url(state, nonce, verifier)
        except (httpx.HTTPError, OIDCError, KeyError, ValueError) as exc:
            log.warning("OIDC provider unreachable or misconfigured: %s", exc)
            return refused(request, "signin_oidc_unavailable", status=503)
        response = web.HTTPSeeOther(url)
        response.set_cookie(STATE_COOKIE, seal_state(auth, {"s": state, "n": nonce, "v": verifier, "exp": time.time() + STATE_TTL}), **cookie)
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        saved = open_state(auth, request.cookies.get(STATE_COOKIE, ""))
        if saved is None or not secrets.compare_digest(str(request.query.get("state", "")), str(saved["s"])):
            await note("refused", "", method="oidc", reason="state")
            return refused(request, "signin_form_expired", status=400)
        if "error" in request.query or not request.query.get("code"):
            await note("refused", "", method="oidc", reason=str(request.query.get("error", "no code"))[:64])
            return refused(request, "signin_oidc_refused")
        try:
            claims = await provider.claims(request.query["code"], saved["n"], saved["v"])
        except (httpx.HTTPError, OIDCError, KeyError, ValueError) as exc:
            log.warning("OIDC sign-in refused: %s", exc)
            await note("refused", "", method="oidc", reason=type(exc).__name__)
            return refused(request, "signin_oidc_refused")
        person = await asyncio.to_thread(person_for, claims, provider.config.claim, tenant, auth.directory)
        if person is None:
            await note("refused", str(claims.get(provider.config.claim, ""))[:64], method="oidc", reason="unknown person")
            return refused(request, "signin_oidc_unknown")
        await note("signed_in", person.id, method="oidc")
        response = await start_session(auth, person, public_url)
        response.del_cookie(STATE_COOKIE, path="/")
        return response

    return [web.get(START, start), web.get(CALLBACK, callback)]
