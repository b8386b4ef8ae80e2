"""A decrypted WeCom callback (its XML fields) -> one platform-neutral `InboundMessage`, or None.

What each WeCom message becomes:
  text                   -> kind "text"
  voice                  -> kind "text" with WeCom's speech recognition (empty when it gave none)
  image, file            -> kind "file", one Attachment whose ref is the MediaId (fetched later)
  link                   -> kind "text": title and URL
  location (a message)   -> kind "event", event "location" (answered politely)
  event subscribe, enter_agent, unsubscribe, click... -> kind "event" with that name
  event template_card_event -> kind "action": Action(key=EventKey, ref=the pending id in the TaskId)
  event LOCATION (the automatic position report) -> None: acknowledged, nothing to answer

Messages carry a MsgId, used as is. Events have none: they are keyed on FromUserName, CreateTime,
Event and EventKey -- except card clicks, keyed on the user, the card and the button without the
time, so a button clicked twice (two callbacks, two CreateTimes) is one action in the inbox.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

from connectors.message import Action, Attachment, InboundMessage
from connectors.wecom.crypto import BadPayload
from connectors.wecom.render import ref_of_task

CHANNEL = "wecom"
_USER = re.compile(r"^[\w.@\-]{1,64}$")
MAX_TEXT = 8000
_MIME = {"image": "image/jpeg", "voice": "audio/amr", "video": "video/mp4"}


def parse(f: dict[str, Any], *, tenant: str, corp: str) -> InboundMessage | None:
    sender = _s(f, "FromUserName")
    if not _USER.match(sender):
        raise BadPayload("FromUserName is missing or malformed")
    msg_type = _s(f, "MsgType").lower()
    create_time = _s(f, "CreateTime")
    base: dict[str, Any] = dict(
        channel=CHANNEL, tenant=tenant, conversation_id=sender, sender_id=sender,
        reply_context={"corp": corp, "agent_id": _s(f, "AgentID")},
        raw={k: v for k, v in f.items() if k not in ("Content", "Recognition")},  # the text is in .text already
    )
    if msg_type == "event":
        return _event(f, sender, create_time, base)
    msg_id = _s(f, "MsgId")
    if not msg_id:
        msg_id = "h:" + hashlib.sha256(repr(sorted(f.items())).encode()).hexdigest()[:32]  # never seen, but never merge two
    base["platform_msg_id"] = msg_id
    if msg_type == "text":
        return InboundMessage(text=_s(f, "Content")[:MAX_TEXT], **base)
    if msg_type == "voice":
        return InboundMessage(text=_s(f, "Recognition")[:MAX_TEXT], **base)
    if msg_type in ("image", "file"):
        media = _s(f, "MediaId")
        if not media:
            raise BadPayload(f"{msg_type} message without MediaId")
        name = _file_name(f, msg_type, msg_id)
        size = _s(f, "FileSize")
        att = Attachment(name=name, mime=_MIME.get(msg_type, "application/octet-stream"), ref=media,
                         size=int(size) if size.isdigit() else None)
        return InboundMessage(kind="file", attachments=(att,), **base)
    if msg_type == "link":
        text = " ".join(x for x in (_s(f, "Title"), _s(f, "Description"), _s(f, "Url")) if x)
        return InboundMessage(text=text[:MAX_TEXT], **base)
    if msg_type == "location":
        return InboundMessage(kind="event", event="location", **base)
    # video and whatever WeCom adds later: an empty text gets the "please send text" note
    return InboundMessage(text="", **base)


def _event(f: dict[str, Any], sender: str, create_time: str, base: dict[str, Any]) -> InboundMessage | None:
    event = _s(f, "Event")
    key = _s(f, "EventKey")
    if event == "LOCATION":
        return None  # the client reports its position on its own; nobody asked anything
    if event == "template_card_event":
        task = _s(f, "TaskId")
        ref = ref_of_task(task)
        if not key or not ref:
            raise BadPayload("template_card_event without EventKey or a TaskId of ours")
        base["platform_msg_id"] = "card:" + _digest(sender, task, key)
        base["reply_context"] = {**base["reply_context"], "response_code": _s(f, "ResponseCode")}
        return InboundMessage(kind="action", action=Action(key=key, ref=ref), **base)
    if not event:
        raise BadPayload("event callback without Event")
    base["platform_msg_id"] = "ev:" + _digest(sender, create_time, event, key)
    return InboundMessage(kind="event", event=event.lower() if event.isupper() else event, text="", **base)


def _file_name(f: dict[str, Any], msg_type: str, msg_id: str) -> str:
    name = (_s(f, "FileName") or _s(f, "Title")).replace("/", "_").replace("\\", "_").strip(". ")
    if name:
        return name[:200]
    return f"image-{msg_id}.jpg" if msg_type == "image" else f"file-{msg_id}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _s(f: dict[str, Any], key: str) -> str:
    v = f.get(key, "")
    return v if isinstance(v, str) else ""
