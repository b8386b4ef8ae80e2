"""Feishu event callbacks: the Encrypt Key, the X-Lark-Signature and the verification token.

Decryption is lark-oapi's (`AESCipher`: AES-256-CBC, key = sha256(encrypt_key), the IV in front of the
base64 ciphertext). The signature is sha256(timestamp + nonce + encrypt_key + body) in the
X-Lark-Request-Timestamp / -Nonce / X-Lark-Signature headers, the names lark-oapi defines. We do not call
lark-oapi's `EventDispatcherHandler.do`: it runs handlers synchronously (our sink is async), checks the
token only when the body carries one, compares the signature in non-constant time and turns every error
into a 500 that Feishu would retry. Here a request is refused (403) unless it is signed, decrypts and
carries the app's verification token, and its timestamp is within the window.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from typing import Mapping

from lark_oapi.core.const import LARK_REQUEST_NONCE, LARK_REQUEST_SIGNATURE, LARK_REQUEST_TIMESTAMP, URL_VERIFICATION
from lark_oapi.core.utils import AESCipher

MAX_SKEW = 3600.0  # seconds; Feishu signs each delivery (retries included) afresh
MAX_BODY = 1024 * 1024  # an event is a few KB; anything larger is not one

__all__ = ["LARK_REQUEST_NONCE", "LARK_REQUEST_SIGNATURE", "LARK_REQUEST_TIMESTAMP", "MAX_BODY", "MAX_SKEW", "URL_VERIFICATION",
           "SignatureError", "decrypt", "signature", "verify", "verify_token"]


class SignatureError(Exception):
    """Why a callback was refused (safe to show: it names no secret)."""


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, encrypt_key: str, *, now: float | None = None) -> float:
    """Check the signature headers against the raw body; returns the request's timestamp (seconds)."""
    ts, nonce, sig = (headers.get(h) or "" for h in (LARK_REQUEST_TIMESTAMP, LARK_REQUEST_NONCE, LARK_REQUEST_SIGNATURE))
    if not ts or not nonce or not sig:
        raise SignatureError("missing X-Lark-Request-Timestamp, X-Lark-Request-Nonce or X-Lark-Signature")
    if not ts.isdigit() or len(ts) > 12 or len(nonce) > 128:
        raise SignatureError("X-Lark-Request-Timestamp is not a time in seconds")
    if abs((time.time() if now is None else now) - int(ts)) > MAX_SKEW:
        raise SignatureError("timestamp is more than an hour off: stale or replayed request")
    if not hmac.compare_digest(signature(ts, nonce, encrypt_key, body).encode(), sig.strip().lower().encode("utf-8", "replace")):
        raise SignatureError("bad signature")
    return float(ts)


def decrypt(body: bytes, encrypt_key: str) -> dict:
    """The event inside {"encrypt": ...}; an unencrypted body is refused (the app has an Encrypt Key)."""
    try:
        outer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("body is not JSON") from None
    enc = outer.get("encrypt") if isinstance(outer, dict) else None
    if not isinstance(enc, str) or not enc:
        raise SignatureError("body is not encrypted: set the same Encrypt Key in the developer console")
    try:
        plain = AESCipher(encrypt_key).decrypt_str(enc)
        event = json.loads(plain)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, IndexError, KeyError):  # TypeError: an empty ciphertext (lark-oapi unpads with ord)
        raise SignatureError("body does not decrypt with this app's Encrypt Key") from None
    if not isinstance(event, dict):
        raise SignatureError("decrypted body is not an event")
    return event


def verify_token(event: dict, token: str) -> None:
    """The verification token is in `header.token` (v2 events, card callbacks) or at the top (url_verification)."""
    header = event.get("header") if isinstance(event.get("header"), dict) else {}
    got = str(header.get("token") or event.get("token") or "")
    if not got or not hmac.compare_digest(got.encode(), token.encode()):
        raise SignatureError("verification token does not match")
