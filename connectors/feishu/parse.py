"""A Feishu event (already decrypted and verified) -> one InboundMessage, or None to acknowledge and ignore.

Read through lark-oapi's own event models (`P2ImMessageReceiveV1`, `P2CardActionTrigger`). Who sent it is
the event's sender id of the configured type (open_id by default), never anything in the message text. A
message is keyed on its `message_id` (a redelivered event, a retry, the long connection and HTTP all store
it once); a card click on its `event_id` (two taps are two clicks). In groups the bot answers only when
it is @-mentioned; the placeholder of its mention (`@_user_1`) is removed and other mentions become @name.
"""
from __future__ import annotations

import json
import re
from typing import Any

from lark_oapi.api.im.v1.model.p2_im_message_receive_v1 import P2ImMessageReceiveV1
from lark_oapi.core.exception import UnmarshalException
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTrigger

from connectors.message import Action, Attachment, InboundMessage, attachment_name

CHANNEL = "feishu"
MESSAGE_EVENT = "im.message.receive_v1"
CARD_EVENT = "card.action.trigger"
KEY = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
REF = re.compile(r"^[\w.:\-]{1,128}$")
_MAX_TEXT = 8000
_MAX_ID = 200


class PayloadError(ValueError):
    """Not an event the copilot can take (answered with 400; never retried into the inbox)."""


class ForeignTenant(PayloadError):
    """The event names another app or organisation than this one (answered with 403)."""


def event_type(event: dict) -> str:
    header = event.get("header") if isinstance(event.get("header"), dict) else {}
    return str(header.get("event_type") or event.get("type") or "")


def parse(event: dict, *, tenant: str, app_key: str, app_id: str, user_id_type: str = "open_id", tenant_key: str = "",
          bot_open_id: str = "") -> InboundMessage | None:
    """`bot_open_id`: the bot's own open_id (a group message counts only when it @-mentions it)."""
    if not isinstance(event, dict) or event.get("schema") != "2.0" or not isinstance(event.get("header"), dict):
        raise PayloadError("not a Feishu v2 event (schema 2.0 with a header)")
    header = event["header"]
    if header.get("app_id") and header["app_id"] != app_id:
        raise ForeignTenant(f"event for app {str(header['app_id'])[:40]!r}, not this one")
    if tenant_key and header.get("tenant_key") != tenant_key:
        raise ForeignTenant(f"event from organisation {str(header.get('tenant_key'))[:40]!r}, not this app's")
    kind = event_type(event)
    common = dict(tenant=tenant, app_key=app_key, user_id_type=user_id_type)
    try:
        if kind == MESSAGE_EVENT:
            return _message(P2ImMessageReceiveV1(event), bot_open_id=bot_open_id, **common)
        if kind == CARD_EVENT:
            return _click(P2CardActionTrigger(event), **common)
    except (UnmarshalException, TypeError, AttributeError, ValueError) as exc:  # a field of the wrong shape (lark-oapi's models check)
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(f"{kind} with a malformed field: {str(exc)[:120]}") from None
    return None  # other subscriptions (bot added to a chat, read receipts...): acknowledged, not stored


def _message(ev: P2ImMessageReceiveV1, *, tenant: str, app_key: str, user_id_type: str, bot_open_id: str) -> InboundMessage | None:
    data = ev.event
    if data is None or data.message is None or data.sender is None:
        raise PayloadError("im.message.receive_v1 without message or sender")
    m, s = data.message, data.sender
    if (s.sender_type or "user") != "user":
        return None  # other bots and the app itself
    sender = _id(getattr(s.sender_id, user_id_type, None) if s.sender_id else None)
    msg_id, chat = _id(m.message_id), _id(m.chat_id)
    if not sender or not msg_id or not chat:
        raise PayloadError(f"message_id, chat_id and the sender's {user_id_type} are required (is the user ID permission granted?)")
    is_group = (m.chat_type or "p2p") != "p2p"
    mentions = list(m.mentions or [])
    at_bot = [x for x in mentions if bot_open_id and x.id is not None and x.id.open_id == bot_open_id]
    if is_group and not at_bot:
        return None  # group chatter not addressed to the bot
    names = {x.key: ("" if x in at_bot else f"@{x.name or ''}") for x in mentions if x.key}
    content = _json(m.content)
    mtype = m.message_type or "text"
    text, kind, attachments, action = "", "text", (), None
    if mtype == "text":
        text = _clean(str(content.get("text") or ""), names)
    elif mtype == "post":
        text = _clean(_post_text(content), names)
    elif mtype in ("file", "image"):
        fkey = str(content.get("file_key") or content.get("image_key") or "")
        if not fkey or not REF.match(fkey):
            raise PayloadError(f"{mtype} message without a usable file_key")
        name = attachment_name(str(content.get("file_name") or ""), msg_id, "image" if mtype == "image" else "")
        kind = "file"
        attachments = (Attachment(name=name, mime="image/png" if mtype == "image" else "application/octet-stream",
                                  ref=f"{mtype}:{msg_id}:{fkey}"),)
    # audio, media, stickers, shared chats...: empty text, the router answers "unsupported"
    open_id = _id(s.sender_id.open_id if s.sender_id else None)
    return InboundMessage(
        channel=CHANNEL, tenant=tenant, conversation_id=chat, sender_id=sender, text=text, kind=kind, action=action,
        attachments=attachments, mentions=tuple(f"{user_id_type}:{getattr(x.id, user_id_type, '')}" for x in mentions if x.id is not None),
        is_group=is_group, platform_msg_id=msg_id,
        reply_context={"app": app_key, "message_id": msg_id, "chat_id": chat, "chat_type": m.chat_type or "p2p",
                       "open_id": open_id, "inbound": msg_id},
        raw={"event_id": _id(ev.header.event_id if ev.header else None), "message_type": mtype, "tenant_key": s.tenant_key or ""},
    )


def _click(ev: P2CardActionTrigger, *, tenant: str, app_key: str, user_id_type: str) -> InboundMessage | None:
    data = ev.event
    if data is None or data.operator is None or data.action is None:
        raise PayloadError("card.action.trigger without operator or action")
    value = data.action.value if isinstance(data.action.value, dict) else {}
    key, ref = str(value.get("k") or ""), str(value.get("r") or "")
    if not KEY.match(key) or not REF.match(ref):
        return None  # not one of our confirmation buttons
    sender = _id(getattr(data.operator, user_id_type, None))
    event_id = _id(ev.header.event_id if ev.header else None)
    ctx = data.context
    chat, card = _id(ctx.open_chat_id if ctx else None), _id(ctx.open_message_id if ctx else None)
    if not sender or not event_id or not chat:
        raise PayloadError(f"card callback without event_id, open_chat_id or the operator's {user_id_type}")
    chat_type = "p2p" if value.get("c") == "p2p" else "group"
    msg_id = f"card:{event_id}"
    return InboundMessage(
        channel=CHANNEL, tenant=tenant, conversation_id=chat, sender_id=sender, text=str(value.get("l") or "")[:40],
        kind="action", action=Action(key=key, ref=ref), is_group=chat_type != "p2p", platform_msg_id=msg_id,
        reply_context={"app": app_key, "message_id": card, "chat_id": chat, "chat_type": chat_type,
                       "open_id": _id(data.operator.open_id), "inbound": msg_id},
        raw={"event_id": event_id, "message_type": "card.action", "tenant_key": data.operator.tenant_key or ""},
    )


def _post_text(content: dict) -> str:
    """A rich-text (post) message as plain text: its title, then each paragraph's text, links and mentions."""
    body = content
    if not isinstance(body.get("content"), list):  # {"zh_cn": {"title", "content"}} as some clients send it
        body = next((v for v in content.values() if isinstance(v, dict) and isinstance(v.get("content"), list)), {})
    lines = [str(body.get("title") or "")]
    for para in body.get("content") or []:
        parts = []
        for el in para if isinstance(para, list) else []:
            if not isinstance(el, dict):
                continue
            tag = el.get("tag")
            if tag in ("text", "a", "md"):
                parts.append(str(el.get("text") or ""))
            elif tag == "at":
                parts.append(str(el.get("user_id") or ""))  # the placeholder (@_user_1), resolved like text mentions
            elif tag == "code_block":
                parts.append(str(el.get("text") or ""))
        lines.append("".join(parts))
    return "\n".join(line for line in lines if line.strip())


def _clean(text: str, names: dict[str, str]) -> str:
    for placeholder in sorted(names, key=len, reverse=True):  # @_user_10 before @_user_1
        text = text.replace(placeholder, names[placeholder])
    text = re.sub(r"[ \t\u00a0\u2005\u3000]{2,}", " ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()[:_MAX_TEXT]


def _json(raw: Any) -> dict:
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _id(v: Any) -> str:
    return v.strip()[:_MAX_ID] if isinstance(v, str) and len(v.strip()) <= _MAX_ID else ""

