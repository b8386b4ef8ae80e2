"""A robot message (HTTP callback body or Stream `data`) -> one InboundMessage, or None to ignore.

Both receive modes carry the same JSON. The message id (`msgId`) is the inbox key, so an HTTP
retry or a Stream redelivery is stored once. In groups the robot answers only when @-mentioned
(`isInAtList`); DingTalk removes the mention from the text but leaves a leading space. A click on
a confirmation card arrives as the text the card's button put in the user's mouth
(`<label> #<key>:<ref>`, see render.py) and becomes an action.
"""
from __future__ import annotations

import re
from typing import Any

from connectors.message import Action, Attachment, InboundMessage, attachment_name

CHANNEL = "dingtalk"
CLICK = re.compile(r"^\s*(?P<label>[^#\n]{0,24}?)\s*#(?P<key>[a-z][a-z0-9_]{0,23}):(?P<ref>[\w.:\-]{1,128})\s*$")
# DingTalk renders a mention as "@name" followed by U+2005 (four-per-em space)
_LEADING = re.compile(r"^(?:[\s\u2005\u00a0\u3000]+|@[^\s\u2005@]{1,40}\u2005)+")
_MAX_TEXT = 8000


class PayloadError(ValueError):
    """The body is not a robot message (answered with 400; never retried into the inbox)."""


class ForeignCorp(PayloadError):
    """The message names another corp than the app's (answered with 403)."""


def clean_text(text: str) -> str:
    return _LEADING.sub("", text or "").rstrip()[:_MAX_TEXT]


def click_text(label: str, key: str, ref: str) -> str:
    """What an ActionCard button sends back for (key, ref); `parse` turns it into an Action."""
    return f"{label.replace('#', '')[:24]} #{key}:{ref}"


def parse(data: Any, *, tenant: str, robot_code: str, corp_id: str = "") -> InboundMessage | None:
    """`corp_id`: the app's corp; when set, senderCorpId and chatbotCorpId must both be it (a signature only
    proves the app's secret signed a timestamp, not what the body says)."""
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    msg_id = _str(data, "msgId")
    conv = _str(data, "conversationId")
    sender = _str(data, "senderStaffId") or _str(data, "senderId")
    if not msg_id or not conv or not sender:
        raise PayloadError("not a robot message: msgId, conversationId and senderStaffId are required")
    if len(msg_id) > 200 or len(conv) > 200 or len(sender) > 200:
        raise PayloadError("msgId, conversationId and sender ids must be at most 200 characters")
    if corp_id:
        for field in ("chatbotCorpId", "senderCorpId"):
            if _str(data, field) != corp_id:
                raise ForeignCorp(f"{field} {_str(data, field)[:80]!r} is not this app's corp")
    ctype = _str(data, "conversationType") or "1"
    if ctype not in ("1", "2"):
        raise PayloadError("conversationType must be \"1\" (one-to-one) or \"2\" (group)")
    is_group = ctype == "2"
    at_bot = data.get("isInAtList") is True or str(data.get("isInAtList")).lower() == "true"
    if is_group and not at_bot:
        return None  # group chatter not addressed to the robot

    msgtype = _str(data, "msgtype") or "text"
    content = data.get("content") if isinstance(data.get("content"), dict) else {}
    text, kind, attachments, action = "", "text", (), None
    if msgtype == "text":
        body = data.get("text") if isinstance(data.get("text"), dict) else {}
        text = clean_text(str(body.get("content") or ""))
    elif msgtype == "richText":
        parts = content.get("richText") if isinstance(content.get("richText"), list) else []
        text = clean_text("".join(str(p.get("text", "")) for p in parts if isinstance(p, dict)))
    elif msgtype == "audio":
        text = clean_text(str(content.get("recognition") or ""))  # DingTalk's own speech-to-text
    elif msgtype in ("file", "picture"):
        code = str(content.get("downloadCode") or content.get("pictureDownloadCode") or "")
        if not code:
            raise PayloadError(f"{msgtype} message without a downloadCode")
        name = attachment_name(str(content.get("fileName") or ""), msg_id, "picture" if msgtype == "picture" else "")
        mime = "image/png" if msgtype == "picture" else "application/octet-stream"
        kind, attachments = "file", (Attachment(name=name, mime=mime, ref=code),)
    # other types (video, cards...) arrive with empty text: the router answers "unsupported"
    if kind == "text" and (m := CLICK.match(text)):
        kind, action = "action", Action(key=m["key"], ref=m["ref"])

    expires = data.get("sessionWebhookExpiredTime")
    at_users = data.get("atUsers") if isinstance(data.get("atUsers"), list) else []
    mentions = tuple(str(u["staffId"]) for u in at_users if isinstance(u, dict) and u.get("staffId"))
    if at_bot:
        mentions += (f"robot:{_str(data, 'robotCode') or robot_code}",)
    return InboundMessage(
        channel=CHANNEL, tenant=tenant, conversation_id=conv, sender_id=sender,
        sender_name=_str(data, "senderNick")[:100], text=text, kind=kind, action=action,
        attachments=attachments, mentions=mentions, is_group=is_group, platform_msg_id=msg_id,
        reply_context={
            "sessionWebhook": _str(data, "sessionWebhook"),
            "sessionWebhookExpiredTime": int(expires) if str(expires or "").isdigit() else 0,
            "conversationType": ctype,
            "openConversationId": conv,
            "senderStaffId": _str(data, "senderStaffId"),
            "senderNick": _str(data, "senderNick")[:100],
            "robotCode": _str(data, "robotCode") or robot_code,
            "msgId": msg_id,  # names the card an answer streams into (cards.py), the same on every retry
        },
        raw={"msgtype": msgtype, "conversationTitle": _str(data, "conversationTitle")[:200],
             "chatbotCorpId": _str(data, "chatbotCorpId"), "senderCorpId": _str(data, "senderCorpId")},
    )


def _str(d: dict, key: str) -> str:
    v = d.get(key)
    return v.strip() if isinstance(v, str) else (str(v) if isinstance(v, int) and not isinstance(v, bool) else "")

