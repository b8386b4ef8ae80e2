"""The one platform-neutral message model: what arrives (`InboundMessage`) and what goes back (`Reply`).

Connectors translate their platform's payloads into these and back; nothing else in the system
sees a platform type. Must never import from connectors, rag or crm.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def conversation_key(channel: str, tenant: str, conversation_id: str) -> str:
    """The one spelling of a conversation's key: replies in one conversation go out in order."""
    return f"{channel}|{tenant}|{conversation_id}"


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    mime: str = "application/octet-stream"
    size: int | None = None
    ref: str = ""  # platform handle to fetch the bytes later (MediaId, downloadCode, a local path)


def attachment_name(name: str, msg_id: str, image: str = "") -> str:
    """The name a sender's platform gave a file, safe to show and store: its base name only (a path with either slash
    dropped), printable characters, at most 120. Without one: `file-<the message id's end>`, or for an image
    `<image>-<…>.png` (`image`: the platform's word for it)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable()).strip(" .")[:120]
    if base:
        return base
    short = re.sub(r"[^\w]", "", msg_id)[-10:] or "file"
    return f"{image}-{short}.png" if image else f"file-{short}"


class Action(BaseModel):
    """A button click or quick reply that resolves a pending confirmation."""

    model_config = ConfigDict(frozen=True)
    key: str  # e.g. "confirm", "edit", "reject"
    ref: str  # the pending item it belongs to


MessageKind = Literal["text", "file", "action", "event"]


class MailFacts(BaseModel):
    """What the core may know of a mail it received: its subject, its place in a thread, its recipients
    (lower-case addresses). Set by the email connector; None for every other channel."""

    model_config = ConfigDict(frozen=True)
    subject: str = ""
    message_id: str = ""
    references: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    # Whether the receiving mail server vouched for the From address (RFC 8601 Authentication-Results from
    # the configured authserv-id: dmarc=pass or an aligned dkim=pass), and why. Unverified mail is a
    # customer's at most, whatever its From says; mail stored before this existed loads as unverified.
    sender_verified: bool = False
    sender_check: str = ""


class InboundMessage(BaseModel):
    model_config = ConfigDict(frozen=True)
    channel: str
    tenant: str = "default"
    conversation_id: str
    sender_id: str
    sender_name: str = ""
    text: str = ""
    kind: MessageKind = "text"
    event: str = ""  # for kind == "event": subscribe, enter_agent...
    action: Action | None = None
    attachments: tuple[Attachment, ...] = ()
    mentions: tuple[str, ...] = ()
    is_group: bool = False
    platform_msg_id: str
    received_at: datetime = Field(default_factory=utcnow)
    # Channel facts the core acts on, typed. Every one has a default: inbox rows stored before it existed still load.
    auto_reply_forbidden: str = ""  # why nothing may answer this automatically (Auto-Submitted, bulk, a list...)
    from_outside: bool = False  # the sender may be outside the company (a customer), not a user of the copilot
    mail: MailFacts | None = None
    reply_context: dict[str, Any] = Field(default_factory=dict)  # the connector's own data to answer; opaque to the core
    raw: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _typed_mail_facts(cls, data: Any) -> Any:
        # Mail stored before the typed fields existed carried them in reply_context (with a "no_reply" key).
        if isinstance(data, dict) and "mail" not in data and isinstance(data.get("reply_context"), dict) \
                and "no_reply" in data["reply_context"]:
            ctx = data["reply_context"]
            data = {**data, "from_outside": True, "auto_reply_forbidden": data.get("auto_reply_forbidden") or str(ctx.get("no_reply") or ""),
                    "mail": {"subject": str(ctx.get("subject") or ""), "message_id": str(ctx.get("message_id") or ""),
                             "references": tuple(ctx.get("references") or ()), "to": tuple(ctx.get("to") or ()),
                             "cc": tuple(ctx.get("cc") or ())}}
        return data

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.channel, self.tenant, self.conversation_id)


class Citation(BaseModel):
    n: int
    doc_id: str
    title: str
    chunk_id: str = ""
    source: str = ""
    version: str = ""
    snippet: str = ""
    heading: str = ""
    updated: str = ""
    url: str = ""
    stale_days: int | None = None  # set when the document is older than the freshness limit


class Button(BaseModel):
    key: str  # action key sent back on click
    label: str
    ref: str = ""  # pending item id
    reply: str = ""  # what to type instead in a text-only client ("1", "2"...)


class Reply(BaseModel):
    text: str  # always present: the plain-text rendering every client can show
    markdown: str = ""  # richer rendering where the client supports it
    citations: list[Citation] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)
    kind: Literal["answer", "notice", "confirm", "error", "draft", "nudge"] = "answer"
    grounded: bool | None = None
    mention_sender: bool = False  # in groups: @ the asker
    lang: str = "zh"  # the reader's language ("zh" or "en"): the labels a channel adds (sources, "回复 1 确认") follow it
    meta: dict[str, Any] = Field(default_factory=dict)


class Target(BaseModel):
    """Where a reply goes: enough for a connector to deliver without the original message."""

    channel: str
    tenant: str = "default"
    conversation_id: str
    user_id: str = ""
    is_group: bool = False
    context: dict[str, Any] = Field(default_factory=dict)

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.channel, self.tenant, self.conversation_id)

    @classmethod
    def of(cls, msg: InboundMessage) -> "Target":
        return cls(
            channel=msg.channel,
            tenant=msg.tenant,
            conversation_id=msg.conversation_id,
            user_id=msg.sender_id,
            is_group=msg.is_group,
            context=msg.reply_context,
        )
