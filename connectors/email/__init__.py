"""Email connector: IMAP in, SMTP out.

config (mailboxes), mime (raw RFC 5322 bytes -> ParsedEmail), parse (-> InboundMessage), render
(Reply -> RFC 5322), send (SMTP exactly once), watch (IMAP receiver), connector. `build(ctx)` builds
the channel when a mailbox is configured. Imports only the channel core and itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.channel import ChannelContext

from .mime import ParsedEmail, UnparseableEmail, parse_email

if TYPE_CHECKING:
    from .connector import EmailConnector

__all__ = ["ParsedEmail", "UnparseableEmail", "build", "parse_email"]


def build(ctx: ChannelContext) -> "EmailConnector | None":
    """The email channel for `[[email.mailboxes]]` / COPILOT_EMAIL_IMAP_HOST, or None when neither is set."""
    from .config import load_mailboxes
    from .connector import EmailConnector

    mailboxes, problems = load_mailboxes(ctx.tenant, ctx.section)
    return EmailConnector(mailboxes, ctx, problems=problems) if mailboxes or problems else None
