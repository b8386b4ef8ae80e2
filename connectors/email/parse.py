"""A mail (raw RFC 5322 bytes, decoded by mime.py) -> the copilot's `InboundMessage`.

The typed facts the core acts on: `mail` (subject, thread ids, recipients, whether the receiving server
verified the sender: authres.py), `auto_reply_forbidden`
(RFC 3834: out of office, bulk, lists...) and `from_outside` (a sender may be a customer). The
reply context keeps only what this connector needs to answer (mailbox, threading, who to answer).
Imports the channel core and this package only.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from connectors.message import Attachment, InboundMessage, MailFacts

from .authres import check_sender
from .config import Mailbox
from .files import Files
from .mime import ParsedEmail, parse_email
from .state import msg_key


def platform_id(parsed: ParsedEmail | None, raw: bytes) -> str:
    """The inbox's dedupe key: the Message-ID (the same mail cc'd to two copilot mailboxes is one
    message), or the hash of the bytes when the sender set none."""
    if parsed is not None and parsed.message_id:
        return msg_key(parsed.message_id)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def thread_root(parsed: ParsedEmail, fallback: str) -> str:
    """RFC 5322 threading: the first References entry is the thread's first message."""
    return (parsed.references[0] if parsed.references else None) or parsed.in_reply_to or parsed.message_id or fallback


def addresses(pairs: list[tuple[str, str]]) -> list[str]:
    return [a.strip().lower() for _, a in pairs if a and "@" in a]


def parse(parsed: ParsedEmail, raw: bytes, mb: Mailbox, files: Files, *, uid: int = 0, uidvalidity: int = 0,
          internal_date: datetime | None = None) -> InboundMessage:
    """The contract with the bot: see docs/email.md ("What the copilot receives")."""
    pid = platform_id(parsed, raw)
    files_ = tuple(
        Attachment(name=a.filename, mime=a.content_type, size=len(a.data), ref=files.put(a.data))
        for a in parsed.attachments if not a.inline
    )
    received = parsed.date or internal_date or datetime.now(timezone.utc)
    text = parsed.new_text.strip() or parsed.body_text.strip() or parsed.subject.strip()
    sender = check_sender(parsed.auth_results, parsed.from_addr, (mb.authserv_id,))
    return InboundMessage(
        channel="email",
        tenant=mb.tenant,
        conversation_id=msg_key(thread_root(parsed, pid)),
        sender_id=parsed.from_addr.strip().lower(),
        sender_name=parsed.from_name,
        text=text,
        kind="file" if files_ else "text",
        attachments=files_,
        platform_msg_id=pid,
        received_at=received,
        auto_reply_forbidden=parsed.auto_reason or "",
        from_outside=True,
        mail=MailFacts(subject=parsed.subject, message_id=parsed.message_id or "", references=tuple(parsed.references),
                       to=tuple(addresses(parsed.to)), cc=tuple(addresses(parsed.cc)),
                       sender_verified=sender.verified, sender_check=sender.reason),
        raw={**parsed.to_json(), "mailbox": mb.key, "uid": uid, "uidvalidity": uidvalidity},
        # What render.py needs to answer: the mailbox, the thread, who to write to. An answer goes to the
        # From address the receiving server verified, never to Reply-To (anyone can write one).
        reply_context={
            "mailbox": mb.key,
            "message_id": parsed.message_id or "",
            "references": list(parsed.references),
            "subject": parsed.subject,
            "from": parsed.from_addr.strip().lower(),
            "from_name": parsed.from_name,
            "no_reply": parsed.auto_reason or "",  # render.py refuses to answer it, whatever the core decided
        },
    )


def parse_bytes(raw: bytes, mb: Mailbox, files: Files, **kw) -> InboundMessage:
    """Raw bytes straight to the message (tests, the CLI)."""
    return parse(parse_email(raw), raw, mb, files, **kw)
