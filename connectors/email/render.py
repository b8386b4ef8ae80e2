"""A `Reply` as an RFC 5322 message: recipients, subject, threading headers, loop-safety marks, body.

Pure: no network, no database. The body is connectors.markup's email dialect: a text/plain part (no
Markdown marks, tables as row lines) and a text/html alternative (escaped, real tables, links).
Threading follows RFC 5322 §3.6.4 (In-Reply-To = the parent's Message-ID, References = the parent's
References + the parent's Message-ID); the Message-ID is derived from the outbox key, so every
attempt at one reply carries the same id.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses

from connectors.channel import SendError
from connectors.labels import Labels, label
from connectors.markup import email_bodies
from connectors.message import Reply, Target

from .config import Mailbox

# "Re:", "RE：", "Re[2]:", "回复：", "答复:", "AW:", "SV:", "Antw:" (Outlook, Foxmail, German, Nordic)
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|回复|回覆|答复|答覆)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.I)
_ROBOT = re.compile(r"^(?:mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)(?:[+-][^@]*)?@", re.I)
MAX_REFERENCES = 20  # RFC 5322 lets a long thread's References be trimmed, keeping the first id


@dataclass(frozen=True)
class Outgoing:
    message: EmailMessage
    message_id: str
    sender: str  # envelope MAIL FROM
    recipients: list[str]  # envelope RCPT TO (To + Cc + our own Bcc copy)
    thread: str
    auto: bool


def message_id_for(key: str, mb: Mailbox) -> str:
    domain = mb.own_address.partition("@")[2] or "copilot.invalid"
    return f"<copilot.{hashlib.sha256(key.encode()).hexdigest()[:24]}@{domain}>"


def reply_subject(subject: str) -> str:
    """One "Re: " in front of the subject, whatever prefixes it had piled up."""
    base = _REPLY_PREFIX.sub("", subject or "").strip()
    return f"Re: {base}" if base else "Re:"


def _pairs(value) -> list[tuple[str, str]]:
    """Addresses given as "a@b", "Name <a@b>", [name, addr] pairs, or a list of those."""
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) and not _is_pair(value) else [value]
    out: list[tuple[str, str]] = []
    for item in items:
        if _is_pair(item):
            out.append((str(item[0] or ""), str(item[1]).strip()))
        else:
            out += [(n, a.strip()) for n, a in getaddresses([str(item)]) if a]
    return [(n, a) for n, a in out if "@" in a]


def _is_pair(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, str) for x in v) and "@" not in v[0] and "@" in v[1]


def _dedupe(pairs: list[tuple[str, str]], drop: set[str]) -> list[tuple[str, str]]:
    seen, out = set(drop), []
    for name, addr in pairs:
        if addr.lower() not in seen:
            seen.add(addr.lower())
            out.append((name, addr))
    return out


def render(target: Target, reply: Reply, key: str, mb: Mailbox, labels: Labels | None = None) -> Outgoing:
    """Raises SendError(retryable=False) when the reply must not go out at all."""
    ctx = target.context or {}
    meta = reply.meta.get("email") if isinstance(reply.meta.get("email"), dict) else {}
    auto = reply.kind != "draft"  # a draft a rep approved is the rep's own mail
    if ctx.get("no_reply"):
        raise SendError(f"not answering automatic mail ({ctx['no_reply']})", retryable=False)
    if not mb.own_address:
        raise SendError(f"mailbox {mb.key} has no address to send from: set address", retryable=False)
    own = set(mb.own_addresses)
    if meta.get("to"):
        to = _pairs(meta["to"])
    else:
        # The verified sender's own address, never a Reply-To (a forged mail could name any collector there).
        to = _pairs(ctx.get("from")) or _pairs(target.user_id if "@" in target.user_id else "")
    to = _dedupe(to, own)
    cc = _dedupe(_pairs(meta.get("cc")), own | {a.lower() for _, a in to})
    if not to and not cc:
        raise SendError("no recipient left (the copilot never writes to itself)", retryable=False)
    robots = [a for _, a in to + cc if _ROBOT.match(a)]
    if auto and robots:
        raise SendError(f"not answering an automated sender ({robots[0]})", retryable=False)

    parent = meta.get("in_reply_to", ctx.get("message_id") or "")
    if "references" in meta:
        refs = [r for r in meta["references"] if r]
    else:
        refs = [r for r in ctx.get("references", []) if r] + ([parent] if parent else [])
    refs = list(dict.fromkeys(refs))
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1):]
    text, body = email_bodies(reply, labels)
    if meta.get("subject"):
        subject = reply_subject(meta["subject"]) if _REPLY_PREFIX.match(meta["subject"]) else meta["subject"]
    elif ctx.get("subject") or parent:
        subject = reply_subject(ctx.get("subject", ""))
    else:
        subject = (text.strip().splitlines() or [label(labels, reply.lang, "channel_app_name")])[0][:78]  # without Markdown marks

    msg = EmailMessage()
    msg_id = message_id_for(key, mb)
    from_name = meta.get("from_name") or mb.from_name
    msg["From"] = formataddr((from_name, mb.own_address)) if from_name else mb.own_address
    msg["To"] = ", ".join(formataddr(p) for p in to) if to else "undisclosed-recipients:;"
    if cc:
        msg["Cc"] = ", ".join(formataddr(p) for p in cc)
    reply_to = _pairs(meta.get("reply_to"))
    if reply_to:
        msg["Reply-To"] = ", ".join(formataddr(p) for p in reply_to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = msg_id
    if parent:
        msg["In-Reply-To"] = parent
    if refs:
        msg["References"] = " ".join(refs)
    if auto:
        # RFC 3834: other robots must not answer us; Exchange honours the second header.
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(body, subtype="html", charset="utf-8")

    recipients = [a for _, a in to + cc]
    if mb.bcc_self and mb.own_address:
        recipients.append(mb.own_address)  # our own copy proves delivery after an uncertain send
    return Outgoing(msg, msg_id, mb.own_address, recipients, target.conversation_id, auto)

