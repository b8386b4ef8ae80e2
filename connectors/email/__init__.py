"""Email connector: IMAP in, SMTP out. The parser turns raw RFC 5322 bytes into a platform-neutral
ParsedEmail; `email_connector(settings)` builds the channel when a mailbox is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .parse import ParsedEmail, UnparseableEmail, parse_email

if TYPE_CHECKING:
    from bot.settings import Settings

    from .connector import EmailConnector

__all__ = ["ParsedEmail", "UnparseableEmail", "email_connector", "parse_email"]


def email_connector(settings: "Settings") -> "EmailConnector | None":
    """The email channel for `[[email.mailboxes]]` / COPILOT_EMAIL_IMAP_HOST, or None when neither is set."""
    from .config import load_mailboxes
    from .connector import EmailConnector

    mailboxes = load_mailboxes(settings)
    return EmailConnector(settings, mailboxes) if mailboxes else None
