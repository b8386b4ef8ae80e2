"""Loop safety for automatic answers (RFC 3834): recognise mail that is itself automatic.

A bot that answers an out-of-office notice, a bounce or a mailing list starts a mail loop or spams a
list. Pure function over decoded headers; imports only the standard library.
"""

from __future__ import annotations

import re

__all__ = ["auto_reason"]

_AUTO_SUBJECT = re.compile(
    r"自动回复|自動回覆|自动答复|自動答覆|休假|out of (?:the )?office|automatic reply|auto[- ]?reply|"
    r"undeliverable|delivery status notification|mail delivery failed|退信", re.I)
_ROBOT_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|no-?reply|do-?not-?reply)@", re.I)


def auto_reason(headers: dict[str, str], from_addr: str, subject: str, ctype: str) -> str | None:
    """Why this mail must never get an automatic answer, or None. `headers` are decoded, with
    lower-case names; the header checks come first since they are what RFC 3834 defines."""
    auto = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if "auto-submitted" in headers and auto != "no":
        return f"Auto-Submitted: {auto}"
    if headers.get("return-path", "").replace(" ", "") == "<>":
        return "Return-Path: <>"
    listed = next((n for n in headers if n.startswith("list-")), None)
    if listed:
        return f"{'-'.join(w.capitalize() for w in listed.split('-'))} header"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond"):
        if name in headers:
            return f"{name} header"
    if re.search(r"\b(?:all|oof|autoreply)\b", headers.get("x-auto-response-suppress", ""), re.I):
        return "X-Auto-Response-Suppress: " + headers["x-auto-response-suppress"]
    if _ROBOT_SENDER.match(from_addr):
        return f"automated sender {from_addr}"
    if ctype == "multipart/report":
        return "delivery or read report"
    found = _AUTO_SUBJECT.search(subject)
    if found:
        return f"automatic-reply subject: {found.group(0)}"
    return None
