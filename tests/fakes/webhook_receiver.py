"""A team's webhook endpoint: verifies the HMAC signature, keeps what it received, drops repeated
idempotency keys, and can be told to fail (500) a number of times or to refuse (4xx)."""
from __future__ import annotations

import json

from aiohttp import web

from crm.sync.webhook import verify


class WebhookReceiver:
    def __init__(self, secret: str, *, fail_first: int = 0, status: int = 500) -> None:
        self.secret, self.fail_first, self.status = secret, fail_first, status
        self.attempts: list[str] = []  # the idempotency key of every request, failed ones too
        self.events: dict[str, dict] = {}  # idempotency key -> body, each once
        self.bad_signatures = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/hook", self.hook)])
        return app

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(self.secret, request.headers.get("X-Copilot-Timestamp", ""), body, request.headers.get("X-Copilot-Signature", "")):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers["Idempotency-Key"]
        self.attempts.append(key)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"error": "try later"}, status=self.status)
        self.events.setdefault(key, json.loads(body))  # a repeat is acknowledged, not applied twice
        return web.json_response({"ok": True})
