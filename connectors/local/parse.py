"""A web chat POST (its JSON fields, and a file if one was uploaded) -> one `InboundMessage`.

The browser gives each message a client-generated id: a retried POST is the same message, answered once.
"""
from __future__ import annotations

import hashlib
import re

from connectors.message import Attachment, InboundMessage

CHANNEL = "console"
ID = re.compile(r"^[\w.:@\-]{1,128}$")
MAX_TEXT = 8000


class PayloadError(ValueError):
    """Not a chat message (answered with 400)."""


def parse(f: object, attachment: Attachment | None = None, *, tenant: str = "default") -> InboundMessage:
    if not isinstance(f, dict):
        raise PayloadError("body must be a JSON object")
    sender = str(f.get("as") or f.get("sender") or "")
    text = f.get("text", "")
    if not ID.match(sender):
        raise PayloadError("'as' (the rep id) is required: 1-128 letters, digits or .:@_-")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise PayloadError(f"'text' must be a string of at most {MAX_TEXT} characters")
    conv = str(f.get("conversation") or f"web-{sender}")
    msg_id = str(f.get("id") or "")
    if not ID.match(conv) or (msg_id and not ID.match(msg_id)):
        raise PayloadError("'conversation' and 'id' must be 1-128 letters, digits or .:@_-")
    if not msg_id:  # without a client id, identical text in the same second is one message
        msg_id = hashlib.sha256(f"{sender}|{conv}|{text}".encode()).hexdigest()[:32]
    action = f.get("action")
    kind = "text"
    if attachment is not None:
        kind = "file"
    elif isinstance(action, dict) and action.get("key") and action.get("ref"):
        kind = "action"
    return InboundMessage(
        channel=CHANNEL, tenant=tenant, conversation_id=conv, sender_id=sender, sender_name=sender,
        text=text, kind=kind, platform_msg_id=msg_id,
        action={"key": str(action["key"]), "ref": str(action["ref"])} if kind == "action" else None,
        attachments=(attachment,) if attachment else (),
    )
