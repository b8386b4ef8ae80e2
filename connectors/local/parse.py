"""A web chat POST (its JSON fields, and a file if one was uploaded) -> one `InboundMessage`.

The sender is whoever the gateway signed in (`sender`): never a field of the body ("as" and "sender" are
ignored). The browser gives each message a client-generated id: a retried POST is the same message, answered
once. Conversation and message ids are the sender's own: the page's names are kept inside the sender's
namespace (`own`), so nobody can read, write into or pre-empt another person's conversation.
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


class NotYours(PayloadError):
    """A conversation of another person (answered with 403)."""


def own(sender: str, name: str) -> str:
    """The conversation `name` of `sender`, as stored: their `web-<id>` (where nudges reach them) is itself, any
    other name lives under `<sender>/`, which no other sender can spell; another person's `web-...` is refused."""
    if not name or name == f"web-{sender}":
        return f"web-{sender}"
    if name.startswith("web-"):
        raise NotYours(f"conversation {name!r} belongs to someone else")
    inner = name if len(sender) + len(name) < 190 else hashlib.sha256(name.encode()).hexdigest()[:40]
    return f"{sender}/{inner}"


def parse(f: object, attachment: Attachment | None = None, *, tenant: str = "default", sender: str, sender_name: str = "") -> InboundMessage:
    if not isinstance(f, dict):
        raise PayloadError("body must be a JSON object")
    text = f.get("text", "")
    if not ID.match(sender):
        raise PayloadError("the signed-in person's id cannot be used in the web chat")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise PayloadError(f"'text' must be a string of at most {MAX_TEXT} characters")
    name = str(f.get("conversation") or "")
    msg_id = str(f.get("id") or "")
    if (name and not ID.match(name)) or (msg_id and not ID.match(msg_id)):
        raise PayloadError("'conversation' and 'id' must be 1-128 letters, digits or .:@_-")
    conv = own(sender, name)
    if not msg_id:  # without a client id, identical text in the same second is one message
        msg_id = hashlib.sha256(f"{sender}|{conv}|{text}".encode()).hexdigest()[:32]
    action = f.get("action")
    kind = "text"
    if attachment is not None:
        kind = "file"
    elif isinstance(action, dict) and action.get("key") and action.get("ref"):
        kind = "action"
    return InboundMessage(
        channel=CHANNEL, tenant=tenant, conversation_id=conv, sender_id=sender, sender_name=sender_name or sender,
        text=text, kind=kind, platform_msg_id=hashlib.sha256(f"{sender}\n{msg_id}".encode()).hexdigest()[:40] if len(msg_id) + len(sender) > 150
        else f"{sender}/{msg_id}",
        action={"key": str(action["key"]), "ref": str(action["ref"])} if kind == "action" else None,
        attachments=(attachment,) if attachment else (),
    )
