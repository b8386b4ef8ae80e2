"""A parsed email as the copilot's `InboundMessage`, and the files kept beside it.

Attachments are written under data_dir/email/attachments/ (named by content hash) before the message
reaches the sink: the bytes stay reachable even if someone deletes the mail from the mailbox.
Unparseable mail is kept byte for byte under data_dir/email/unparsed/. Imports bot.models only.
"""
from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from connectors.message import Attachment, InboundMessage

from .config import Mailbox
from .parse import ParsedEmail
from .state import msg_key

_SHA = re.compile(r"^[0-9a-f]{64}$")
REF_PREFIX = "email:"


def platform_id(parsed: ParsedEmail | None, raw: bytes) -> str:
    """The inbox's dedupe key: the Message-ID (the same mail cc'd to two copilot mailboxes is one
    message), or the hash of the bytes when the sender set none."""
    if parsed is not None and parsed.message_id:
        return msg_key(parsed.message_id)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def thread_root(parsed: ParsedEmail, fallback: str) -> str:
    """RFC 5322 threading: the first References entry is the thread's first message."""
    return (parsed.references[0] if parsed.references else None) or parsed.in_reply_to or parsed.message_id or fallback


class Files:
    """Attachment bytes and unparseable mail under data_dir/email/."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "email"
        self.attachments = self.root / "attachments"
        self.unparsed = self.root / "unparsed"

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.attachments / digest[:2] / digest
        if not path.exists():
            _write_atomic(path, data)
        return REF_PREFIX + digest

    def get(self, ref: str) -> bytes:
        digest = ref.removeprefix(REF_PREFIX)
        if not ref.startswith(REF_PREFIX) or not _SHA.match(digest):
            raise ValueError(f"not an email attachment reference: {ref!r}")
        path = self.attachments / digest[:2] / digest
        if not path.is_file():
            raise FileNotFoundError(f"attachment {digest[:12]}… is no longer under {self.attachments}")
        return path.read_bytes()

    def keep_unparsed(self, name: str, raw: bytes, reason: str) -> Path:
        safe = re.sub(r"[^\w.-]", "_", name)[:120]
        path = self.unparsed / f"{safe}.eml"
        _write_atomic(path, raw)
        _write_atomic(path.with_suffix(".reason.txt"), reason.encode("utf-8"))
        return path

    def unparsed_files(self) -> list[Path]:
        return sorted(self.unparsed.glob("*.eml")) if self.unparsed.is_dir() else []


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def addresses(pairs: list[tuple[str, str]]) -> list[str]:
    return [a.strip().lower() for _, a in pairs if a and "@" in a]


def to_inbound(parsed: ParsedEmail, raw: bytes, mb: Mailbox, files: Files, *, uid: int = 0, uidvalidity: int = 0,
               internal_date: datetime | None = None) -> InboundMessage:
    """The contract with the bot: see docs/email.md ("What the copilot receives")."""
    pid = platform_id(parsed, raw)
    files_ = tuple(
        Attachment(name=a.filename, mime=a.content_type, size=len(a.data), ref=files.put(a.data))
        for a in parsed.attachments if not a.inline
    )
    received = parsed.date or internal_date or datetime.now(timezone.utc)
    text = parsed.new_text.strip() or parsed.body_text.strip() or parsed.subject.strip()
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
        raw={**parsed.to_json(), "mailbox": mb.key, "uid": uid, "uidvalidity": uidvalidity},
        reply_context={
            "mailbox": mb.key,
            "message_id": parsed.message_id or "",
            "references": list(parsed.references),
            "subject": parsed.subject,
            "from": parsed.from_addr.strip().lower(),
            "from_name": parsed.from_name,
            "to": addresses(parsed.to),
            "cc": addresses(parsed.cc),
            "reply_to": addresses(parsed.reply_to),
            "no_reply": parsed.auto_reason or "",
        },
    )
