"""The intelligent robot's callback crypto: the app's scheme with JSON instead of XML, and no receiving corp id.

A callback POSTs `{"encrypt": "..."}` with msg_signature, timestamp and nonce in the query; the passive answer is
`{"encrypt", "msgsignature", "timestamp", "nonce"}`. The AES part (AES-256-CBC, PKCS#7 to 32 bytes, random(16) +
length(4) + JSON + receive id, which is the empty string for a robot) is wechatpy's (`WeChatCrypto`,
`PrpCrypto`, `WeChatCipher`); the signature is checked in constant time before anything is decrypted.
Images and files a user sends are AES-encrypted with the same key (decrypted by `media`).
"""
from __future__ import annotations

import hmac
import json
from typing import Any

from wechatpy.crypto.base import WeChatCipher
from wechatpy.crypto.pkcs7 import PKCS7Encoder
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from connectors.wecom.crypto import BadPayload, BadSignature, signature

RECEIVE_ID = ""  # an intelligent robot's messages name no corp


class RobotCrypto:
    def __init__(self, token: str, aes_key: str) -> None:
        self.token = token
        self._wc = WeChatCrypto(token, aes_key, RECEIVE_ID)  # the key's length is checked by RobotConfig first

    def _check(self, msg_signature: str, timestamp: str, nonce: str, data: str) -> None:
        if not hmac.compare_digest(signature(self.token, timestamp, nonce, data), msg_signature):
            raise BadSignature("signature mismatch")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The console's URL check: the decrypted echostr, answered as is."""
        if not echostr or len(echostr) > 4096:
            raise BadPayload("echostr is missing or too long")
        self._check(msg_signature, timestamp, nonce, echostr)
        return self._open(lambda: self._wc.check_signature(msg_signature, timestamp, nonce, echostr), "echostr")

    def decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> dict[str, Any]:
        """A POSTed callback -> the decrypted message (a JSON object)."""
        outer = _json(body, "body")
        encrypted = outer.get("encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise BadPayload('the callback has no "encrypt" field')
        self._check(msg_signature, timestamp, nonce, encrypted)
        inner = self._open(lambda: self._wc.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce), "message")
        return _json(inner.encode("utf-8"), "the decrypted message")

    def _open(self, decrypt, what: str) -> str:
        try:
            return decrypt()
        except InvalidSignatureException:
            raise BadSignature("signature mismatch") from None
        except InvalidCorpIdException:
            raise BadSignature(f"{what} was not encrypted for an intelligent robot") from None
        except Exception as exc:
            raise BadPayload(f"{what} does not decrypt ({type(exc).__name__})") from None

    def encrypt(self, payload: dict[str, Any], timestamp: str, nonce: str) -> dict[str, str]:
        """The passive answer to a callback: `payload` encrypted and signed."""
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        encrypted = PrpCrypto(self._wc.key).encrypt(text, RECEIVE_ID).decode()
        return {"encrypt": encrypted, "msgsignature": signature(self.token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}

    def media(self, data: bytes) -> bytes:
        """The bytes of an image or file the user sent (downloaded from its url, encrypted with the robot's key)."""
        if not data or len(data) % 16:
            raise BadPayload("the downloaded file is not AES-CBC ciphertext")
        return PKCS7Encoder.decode(WeChatCipher(self._wc.key).decrypt(data))


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadPayload(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadPayload(f"{what} is not a JSON object")
    return value
