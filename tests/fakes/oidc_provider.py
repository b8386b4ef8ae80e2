"""An OpenID Connect provider on loopback that speaks the real protocol: discovery, an authorization endpoint that
signs the configured user in at once (as after a password and MFA there), a token endpoint that checks the client's
secret (client_secret_basic or _post), the redirect URI and the PKCE verifier, and ID tokens signed RS256 with a key
published at jwks_uri. `tamper` overrides claims of the next ID tokens (a wrong audience, a stale nonce…)."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


class FakeOIDC:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.user: dict = {"sub": "u-1", "email": "someone@example.com", "email_verified": True}
        self.tamper: dict = {}
        self.issuer = ""  # set once the server has a port
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/.well-known/openid-configuration", self._discovery), web.get("/authorize", self._authorize),
                        web.post("/token", self._token), web.get("/jwks", self._jwks)])
        return app

    async def _discovery(self, _: web.Request) -> web.Response:
        i = self.issuer
        return web.json_response({"issuer": i, "authorization_endpoint": f"{i}/authorize", "token_endpoint": f"{i}/token",
                                  "jwks_uri": f"{i}/jwks", "response_types_supported": ["code"],
                                  "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"]})

    async def _jwks(self, _: web.Request) -> web.Response:
        return web.json_response(KeySet([self.key]).as_dict(private=False))

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="bad authorization request")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"redirect_uri": q["redirect_uri"], "nonce": q.get("nonce", ""), "challenge": q["code_challenge"]}
        raise web.HTTPFound(f"{q['redirect_uri']}?code={code}&state={q.get('state', '')}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests.append(dict(form))
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        if (cid, secret) != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self.codes.pop(str(form.get("code", "")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = str(form.get("code_verifier", "")).encode()
        if base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode() != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "nonce": grant["nonce"], **self.user, **self.tamper}
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return web.json_response({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300, "id_token": id_token})
