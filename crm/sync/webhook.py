"""A signed webhook sink: each CRM write is POSTed as JSON to the team's endpoint.

Headers: `X-Copilot-Timestamp` (unix seconds), `X-Copilot-Signature: sha256=<hex>` where the hex is
HMAC-SHA256(secret, f"{timestamp}.{body}"), and `Idempotency-Key` (the same on every re-delivery
of one write). Receivers verify with `verify()` and drop keys they have seen: delivery is at
least once. 2xx = delivered; 408, 425, 429 and 5xx are retried (honouring Retry-After); other
4xx are dead letters (the receiver refused the event; retrying would not change its mind).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import aiohttp

from crm.sync import Lookup, SyncError
from crm.sync.outbox import Claimed

RETRYABLE = {408, 425, 429}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0, now: float | None = None) -> bool:
    """For receivers: a valid signature over a recent timestamp (a replayed old request fails)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def body_of(ev: Claimed) -> bytes:
    return json.dumps({"event_id": ev.event_id, "idempotency_key": f"{ev.tenant}:{ev.idempotency_key}", "tenant": ev.tenant,
                       "entity": ev.entity, "entity_id": ev.entity_id, "op": ev.op, "at": ev.created_at, "data": ev.payload},
                      ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSink:
    def __init__(self, url: str, secret: str, *, name: str = "webhook", timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, not {url!r}")
        if not secret:
            raise ValueError("a webhook needs a secret to sign with")
        self.url, self.secret, self.name = url, secret, name
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, event: Claimed, lookup: Lookup) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = body_of(event)
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Copilot-Timestamp": ts,
                   "X-Copilot-Signature": sign(self.secret, ts, body), "X-Copilot-Event": f"{event.entity}.{event.op}",
                   "Idempotency-Key": f"{event.tenant}:{event.idempotency_key}", "User-Agent": "sales-copilot-sync/1"}
        try:
            async with self._session.post(self.url, data=body, headers=headers) as r:
                text = (await r.text())[:300]
                if 200 <= r.status < 300:
                    return
                retry_after = _seconds(r.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SyncError(f"{type(exc).__name__}: {exc}") from None
        raise SyncError(f"HTTP {r.status}: {text}", retryable=r.status >= 500 or r.status in RETRYABLE, retry_after=retry_after)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(v: str | None) -> float | None:
    try:
        return max(0.0, float(v)) if v else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
