"""The robot HTTP callback signature: headers `timestamp` (ms) and `sign`.

sign = base64(HMAC-SHA256(key=appSecret, msg=timestamp + "\\n" + appSecret)). A request whose
timestamp is more than an hour from now is refused, so a captured request cannot be replayed
later; signatures are compared in constant time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import unquote

MAX_SKEW_MS = 3600 * 1000


class SignatureError(Exception):
    """Why a callback was refused (safe to show: it names no secret)."""


def sign(timestamp: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def verify(timestamp: str | None, signature: str | None, secret: str, *, now_ms: int | None = None) -> None:
    if not timestamp or not signature:
        raise SignatureError("missing timestamp or sign header")
    if not timestamp.isdigit() or len(timestamp) > 16:
        raise SignatureError("timestamp header is not a millisecond time")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - int(timestamp)) > MAX_SKEW_MS:
        raise SignatureError("timestamp is more than an hour off: stale or replayed request")
    expected = sign(timestamp, secret).encode()
    # some proxies pass the header URL-encoded; both forms are the same signature
    candidates = {signature, unquote(signature)}
    if not any(hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in candidates):
        raise SignatureError("bad signature")
