"""Email connector: IMAP in, SMTP out. The parser turns raw RFC 5322 bytes into a platform-neutral
ParsedEmail; `build(ctx)` builds the channel when a mailbox is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.channel import ChannelContext

from .parse import ParsedEmail, UnparseableEmail, parse_email

if TYPE_CHECKING:
    from .connector import EmailConnector

__all__ = ["ParsedEmail", "UnparseableEmail", "build", "parse_email"]


def build(ctx: ChannelContext) -> "EmailConnector | None":
    """The email channel for `[[email.mailboxes]]` / COPILOT_EMAIL_IMAP_HOST, or None when neither is set."""
    from .config import load_mailboxes
    from .connector import EmailConnector

    mailboxes = load_mailboxes(ctx.tenant, ctx.section)
    return EmailConnector(mailboxes, ctx) if mailboxes else None
