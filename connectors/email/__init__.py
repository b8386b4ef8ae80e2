"""Email connector. The parser turns raw RFC 5322 bytes into a platform-neutral ParsedEmail."""

from .parse import ParsedEmail, UnparseableEmail, parse_email

__all__ = ["ParsedEmail", "UnparseableEmail", "parse_email"]
