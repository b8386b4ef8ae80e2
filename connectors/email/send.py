"""Sending over SMTP exactly once.

Why a sent-log with phases (and not a resend-and-hope or an IMAP search on every send): the only
moment a send's outcome is unknown is after the message body went out and before the server's
reply came back (or the process died there). Each key's row records how far the transaction got:

  connecting -> (the server could not have the message yet) -> data -> (it may) -> sent

A retry of a key in `sent` does nothing; in `connecting` (or after a failure the server reported
before accepting the body) it simply sends again. Only a key left in `data` is uncertain: the copilot
Bcc's itself on every message, so it waits `confirm_wait` seconds for its own copy and then looks for
the Message-ID in its folder (and in `sent_folder` if the provider files sent mail there). Found:
mark it sent, send nothing. Not found: it never left; send again with the same Message-ID (mail
clients collapse identical Message-IDs, which covers the last corner: a copy that is merely late).
"""
from __future__ import annotations

import asyncio
import logging
import time
from email.policy import SMTP as SMTP_POLICY
from typing import Awaitable, Callable

import aiosmtplib

from connectors.channel import SendError

from .config import Mailbox
from .imap import ImapError, connect_error
from .render import Outgoing
from .state import EmailState

log = logging.getLogger("copilot.email.send")
FindCopy = Callable[[Mailbox, str], Awaitable[bool | None]]  # True found, False not, None: could not look
DAY = 86400.0


class SmtpFailure(Exception):
    def __init__(self, message: str, *, certain: bool, retryable: bool, fix: str = "") -> None:
        super().__init__(message)
        self.certain = certain  # True: the server certainly does not have the message
        self.retryable = retryable
        self.fix = fix


class Sender:
    def __init__(self, state: EmailState, find_copy: FindCopy) -> None:
        self.state = state
        self.find_copy = find_copy

    async def send(self, mb: Mailbox, out: Outgoing, key: str) -> str:
        """Returns "sent", "already sent" or "confirmed" (an uncertain earlier attempt had gone out)."""
        if not mb.smtp_host:
            raise SendError(f"mailbox {mb.key} has no smtp_host: it can receive but not send", retryable=False)
        row = await asyncio.to_thread(self.state.sent_row, key)
        if row is not None and row.phase == "sent":
            return "already sent"
        if row is not None and row.phase == "data":
            if await self._went_out(mb, row.message_id, row.updated_at):
                await asyncio.to_thread(self.state.set_phase, key, "sent")
                log.info("send %s: an earlier attempt had been delivered (%s); not sending again", key, row.message_id)
                return "confirmed"
            log.warning("send %s: the earlier attempt did not go out; sending again as %s", key, out.message_id)
        if out.auto and mb.auto_replies_per_thread >= 0:
            n = await asyncio.to_thread(self.state.auto_replies, mb.key, out.thread, time.time() - DAY, key)
            if n >= mb.auto_replies_per_thread:
                raise SendError(f"thread already has {n} automatic replies in 24 h (auto_replies_per_thread = "
                                f"{mb.auto_replies_per_thread}); a rep can still send an approved draft", retryable=False)
        await asyncio.to_thread(self.state.begin_send, key, mb.key, out.thread, out.message_id, out.auto)
        try:
            await self._transaction(mb, out, key)
        except SmtpFailure as exc:
            if exc.certain:
                await asyncio.to_thread(self.state.forget_send, key)
            msg = f"{exc} ({exc.fix})" if exc.fix else str(exc)
            raise SendError(msg, retryable=exc.retryable or not exc.certain,
                            retry_after=mb.confirm_wait + 1 if not exc.certain else None) from exc
        await asyncio.to_thread(self.state.set_phase, key, "sent")
        return "sent"

    async def _went_out(self, mb: Mailbox, message_id: str, since: float) -> bool:
        if not (mb.bcc_self or mb.sent_folder):
            return False  # nothing to look in: resend (same Message-ID)
        wait = mb.confirm_wait - (time.time() - since)
        if wait > 0:
            raise SendError(f"outcome of the last attempt unknown; looking for our copy of {message_id} in {wait:.0f} s",
                            retryable=True, retry_after=wait + 0.5)
        found = await self.find_copy(mb, message_id)
        if found is None:
            raise SendError(f"outcome of the last attempt unknown and IMAP is unreachable to check {message_id}",
                            retryable=True, retry_after=60)
        return found

    async def _transaction(self, mb: Mailbox, out: Outgoing, key: str) -> None:
        smtp = open_smtp(mb)
        try:
            await login(smtp, mb)
            try:
                await smtp.mail(out.sender)
                refused = []
                for rcpt in out.recipients:
                    try:
                        await smtp.rcpt(rcpt)
                    except aiosmtplib.SMTPRecipientRefused as exc:
                        refused.append(exc)
                real = [r for r in out.recipients if r != out.sender]
                if len([e for e in refused if e.recipient in real]) == len(real):
                    first = refused[0]
                    raise SmtpFailure(f"SMTP refused every recipient: {first.code} {first.message}", certain=True,
                                      retryable=first.code < 500)
                for exc in refused:
                    log.warning("send %s: recipient %s refused: %s %s", key, exc.recipient, exc.code, exc.message)
            except aiosmtplib.SMTPResponseException as exc:
                raise SmtpFailure(f"SMTP {exc.code} {exc.message}", certain=True, retryable=exc.code < 500) from exc
            await asyncio.to_thread(self.state.set_phase, key, "data")
            try:
                await smtp.data(out.message.as_bytes(policy=SMTP_POLICY))
            except aiosmtplib.SMTPResponseException as exc:  # the server answered: it does not have it
                raise SmtpFailure(f"SMTP refused the message: {exc.code} {exc.message}", certain=True,
                                  retryable=exc.code < 500) from exc
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                raise SmtpFailure(f"SMTP connection lost while sending the message ({exc})", certain=False,
                                  retryable=True) from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise SmtpFailure(f"SMTP {mb.smtp_host}:{mb.smtp_port_}: {exc}", certain=True, retryable=True) from exc
        finally:
            await close_smtp(smtp)


def open_smtp(mb: Mailbox) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=mb.smtp_host, port=mb.smtp_port_, timeout=mb.timeout,
                           use_tls=mb.smtp_security == "ssl", start_tls=mb.smtp_security == "starttls",
                           tls_context=mb.tls_context() if mb.smtp_security != "none" else None)


async def login(smtp: aiosmtplib.SMTP, mb: Mailbox) -> None:
    """Connect (with TLS as configured) and authenticate; SmtpFailure names the cause and the fix."""
    try:
        await smtp.connect()
    except aiosmtplib.SMTPConnectResponseError as exc:
        raise SmtpFailure(f"SMTP {mb.smtp_host}:{mb.smtp_port_} refused the connection: {exc.code} {exc.message}",
                          certain=True, retryable=True) from exc
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, (OSError, asyncio.TimeoutError)) else exc
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            cause = asyncio.TimeoutError()
        err: ImapError = connect_error(cause, mb.smtp_host, mb.smtp_port_, mb.smtp_security, "SMTP", mb.timeout)
        if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc).upper():
            err = ImapError(f"SMTP {mb.smtp_host}:{mb.smtp_port_}: {exc}", "tls",
                            "the server offers no STARTTLS there: set smtp_security = \"ssl\" with port 465")
        raise SmtpFailure(str(err), certain=True, retryable=True, fix=err.fix) from exc
    if not (mb.smtp_user and mb.smtp_pass):
        return
    if smtp.last_ehlo_response is None:
        await smtp.ehlo()  # after STARTTLS the server's extensions must be asked for again
    if not smtp.supports_extension("auth"):
        if not (mb.smtp_username or mb.smtp_password):
            return  # only the IMAP login was inherited: a relay that wants no login is fine
        raise SmtpFailure(f"SMTP {mb.smtp_host}:{mb.smtp_port_} offers no AUTH here", certain=True, retryable=False,
                          fix="servers offer AUTH only over TLS: set smtp_security to \"starttls\" or \"ssl\"")
    try:
        await smtp.login(mb.smtp_user, mb.smtp_pass)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise SmtpFailure(f"SMTP login as {mb.smtp_user} refused: {exc.code} {exc.message}", certain=True, retryable=False,
                          fix="check smtp_username / smtp_password; Gmail, Outlook, QQ, 163 and Exmail need an app "
                              "password or authorization code (授权码) with SMTP enabled") from exc


async def close_smtp(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await asyncio.wait_for(smtp.quit(), 3)
    except Exception:
        smtp.close()
