"""WeCom callback crypto: signature check, AES decrypt, and XML parsing that refuses hostile input.

`wechatpy.enterprise.crypto.WeChatCrypto` does the AES part (AES-256-CBC, PKCS#7 to 32 bytes,
random(16) + length(4) + XML + receiving corp id). Every XML document -- the outer envelope
before wechatpy sees it, and the decrypted inner message -- goes through defusedxml with DTDs,
entities and external references forbidden: no XXE, no billion laughs. The signature is compared
in constant time before any decryption is attempted. Imports nothing from the bot but the model.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

_SIG = re.compile(r"^[0-9a-f]{40}$")
_TS = re.compile(r"^[0-9]{1,12}$")
_NONCE = re.compile(r"^[\w\-]{1,64}$")
MAX_FIELDS = 64  # a WeCom message has about a dozen fields


class CallbackRejected(Exception):
    """A callback we refuse; `status` is the HTTP answer (never a stack trace)."""

    status = 400


class BadSignature(CallbackRejected):
    status = 403


class BadPayload(CallbackRejected):
    status = 400


def parse_xml(data: bytes | str) -> dict[str, Any]:
    """A flat WeCom XML document -> {tag: text}; one nested level (SelectedItems) becomes a list of dicts."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise BadPayload(f"XML with a DTD, entities or external references is refused ({type(exc).__name__})") from None
    except (ParseError, ValueError, UnicodeError) as exc:
        raise BadPayload(f"body is not well-formed XML: {exc}") from None
    if root.tag != "xml":
        raise BadPayload(f"expected an <xml> document, got <{root.tag[:40]}>")
    if len(root) > MAX_FIELDS:
        raise BadPayload("too many XML elements")
    return {child.tag: _value(child) for child in root}


def _text(el: Element) -> str:
    return (el.text or "").strip()


def _value(el: Element) -> Any:
    """Leaf -> its text. <SelectedItems><SelectedItem><QuestionKey/><OptionIds><OptionId/>..</OptionIds>
    </SelectedItem></SelectedItems> -> [{"QuestionKey": "..", "OptionIds": ["..", ..]}]."""
    if len(el) == 0:
        return _text(el)
    items = []
    for item in list(el)[:MAX_FIELDS]:
        if len(item) == 0:
            items.append(_text(item))
            continue
        items.append({c.tag: _text(c) if len(c) == 0 else [_text(g) for g in list(c)[:MAX_FIELDS]] for c in list(item)[:MAX_FIELDS]})
    return items


def signature(token: str, timestamp: str, nonce: str, data: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, data])).encode()).hexdigest()


def check_query(msg_signature: str | None, timestamp: str | None, nonce: str | None) -> tuple[str, str, str]:
    if not msg_signature or not timestamp or not nonce:
        raise BadPayload("msg_signature, timestamp and nonce are required query parameters")
    if not _SIG.match(msg_signature) or not _TS.match(timestamp) or not _NONCE.match(nonce):
        raise BadPayload("msg_signature, timestamp or nonce is malformed")
    return msg_signature, timestamp, nonce


class WeComCrypto:
    """One app's callback crypto (Token + EncodingAESKey + the corp id the messages are for)."""

    def __init__(self, token: str, aes_key: str, corp_id: str) -> None:
        self.token = token
        self.corp_id = corp_id
        self._wc = WeChatCrypto(token, aes_key, corp_id)  # the key's length is checked by CorpConfig first

    def _check(self, msg_signature: str, timestamp: str, nonce: str, data: str) -> None:
        expected = signature(self.token, timestamp, nonce, data)
        if not hmac.compare_digest(expected, msg_signature):
            raise BadSignature("signature mismatch")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The console's URL check: the decrypted echostr, to be answered as is."""
        if not echostr or len(echostr) > 4096:
            raise BadPayload("echostr is missing or too long")
        self._check(msg_signature, timestamp, nonce, echostr)
        try:
            return self._wc.check_signature(msg_signature, timestamp, nonce, echostr)
        except InvalidCorpIdException:
            raise BadSignature("echostr was encrypted for another corp id") from None
        except InvalidSignatureException:
            raise BadSignature("signature mismatch") from None
        except Exception as exc:
            raise BadPayload(f"echostr does not decrypt ({type(exc).__name__})") from None

    def decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> dict[str, Any]:
        """A POSTed callback -> the decrypted message's fields."""
        outer = parse_xml(body)
        encrypted = outer.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted or len(encrypted) > len(body):
            raise BadPayload("the callback has no <Encrypt> element")
        self._check(msg_signature, timestamp, nonce, encrypted)
        try:
            # a dict, so wechatpy never runs its own (entity-resolving) XML parser on our input
            inner = self._wc.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise BadSignature("signature mismatch") from None
        except InvalidCorpIdException:
            raise BadSignature("message was encrypted for another corp id") from None
        except Exception as exc:
            raise BadPayload(f"message does not decrypt ({type(exc).__name__})") from None
        return parse_xml(inner.encode("utf-8"))

    def encrypt_callback(self, xml: str, nonce: str, timestamp: str, agent_id: str = "") -> tuple[bytes, str]:
        """(body, msg_signature) of the POST WeCom sends for `xml` (the benchmark builds callbacks with it)."""
        from wechatpy.enterprise.crypto import PrpCrypto

        encrypted = PrpCrypto(self._wc.key).encrypt(xml, self.corp_id).decode()
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName><AgentID><![CDATA[{agent_id}]]></AgentID>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
        return body.encode(), signature(self.token, timestamp, nonce, encrypted)
