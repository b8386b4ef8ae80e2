"""The email channel: IMAP in (one watcher per mailbox), SMTP out, attachments, doctor checks.

Imports the channel core and this package only. Its state (cursors, seen
Message-IDs, the sent-log) lives in the copilot's database under tables it creates itself.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from connectors.channel import ChannelContext, Check, SendError, Sink
from connectors.config import ConfigProblem
from connectors.message import Attachment, Reply, Target

from .config import Mailbox
from .files import Files
from .imap import ImapError, ImapSession
from .render import render
from .send import Sender, SmtpFailure, close_smtp, login, open_smtp
from .state import EmailState
from .watch import MailboxWatcher

log = logging.getLogger("copilot.email")


class EmailConnector:
    name = "email"

    def __init__(self, mailboxes: list[Mailbox], ctx: ChannelContext, *, problems: list[ConfigProblem] | None = None) -> None:
        self.mailboxes = {m.key: m if m.tenant else m.model_copy(update={"tenant": ctx.tenant}) for m in mailboxes}
        self.problems = list(problems or [])  # mailboxes left out for a bad setting: `doctor` shows them
        if not self.mailboxes and not self.problems:
            raise ValueError("no mailbox configured: add [[email.mailboxes]] or COPILOT_EMAIL_IMAP_HOST")
        if ctx.engine is None:
            raise ValueError("the email channel keeps its cursors in the copilot's database: pass an engine")
        self.engine = ctx.engine
        self.labels = ctx.labels or None  # the words it adds (connectors/labels.py); None: the shipped catalogue's
        self.state = EmailState(self.engine)
        self.files = Files(Path(ctx.data_dir))
        self.sender = Sender(self.state, self.find_copy)
        self.own = frozenset(a for m in self.mailboxes.values() for a in m.own_addresses)
        self.watchers: dict[str, MailboxWatcher] = {}
        self._tasks: list[asyncio.Task] = []

    # receiving --------------------------------------------------------------------------------------
    async def start(self, sink: Sink) -> None:
        for p in self.problems:
            log.error("mailbox %s is not watched: %s", p.account, p)
        for mb in self.mailboxes.values():
            w = self.watchers[mb.key] = MailboxWatcher(mb, self.state, self.files, sink, own=self.own)
            self._tasks.append(asyncio.create_task(w.run(), name=f"email:{mb.key}"))

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        return await asyncio.to_thread(self.files.get, attachment.ref)

    # sending ----------------------------------------------------------------------------------------
    def mailbox_for(self, target: Target, reply: Reply) -> Mailbox:
        meta = reply.meta.get("email") if isinstance(reply.meta.get("email"), dict) else {}
        key = meta.get("mailbox") or (target.context or {}).get("mailbox")
        if key:
            if key not in self.mailboxes:
                raise SendError(f"mailbox {key!r} is not configured (any more)", retryable=False)
            return self.mailboxes[key]
        same_tenant = [m for m in self.mailboxes.values() if m.tenant == target.tenant and m.smtp_host]
        if not same_tenant:
            raise SendError(f"no mailbox with smtp_host for tenant {target.tenant!r}", retryable=False)
        return same_tenant[0]

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        mb = self.mailbox_for(target, reply)
        out = render(target, reply, key, mb, self.labels)
        outcome = await self.sender.send(mb, out, key)
        log.info("email %s via %s: %s %s", key, mb.key, outcome, out.message_id)

    async def find_copy(self, mb: Mailbox, message_id: str) -> bool | None:
        """Is a message with this Message-ID in our folder (the Bcc copy) or in sent_folder?"""
        folders = [f for f in dict.fromkeys([mb.folder if mb.bcc_self else "", mb.sent_folder]) if f]
        session = ImapSession(mb)
        try:
            await session.open(folders[0])
            for i, folder in enumerate(folders):
                if i:
                    try:
                        await session.select(folder)
                    except ImapError as exc:
                        if exc.kind == "folder":
                            log.warning("mailbox %s: sent_folder %r: %s", mb.key, folder, exc)
                            continue
                        raise
                if await session.search("HEADER", "Message-ID", f'"{message_id}"'):
                    return True
            return False
        except ImapError as exc:
            log.warning("mailbox %s: cannot look for %s: %s", mb.key, message_id, exc)
            return None
        finally:
            await session.close()

    # health -----------------------------------------------------------------------------------------
    async def doctor(self) -> list[Check]:
        checks: list[Check] = [p.check("email") for p in self.problems]
        for mb in self.mailboxes.values():
            checks.append(await self._imap_check(mb))
            checks.append(await self._smtp_check(mb))
            checks.append(Check(f"email {mb.key} sender verification", bool(mb.authserv_id),
                                f"senders are verified by the Authentication-Results of {mb.authserv_id}" if mb.authserv_id else
                                "authserv_id is not set: no sender is verified, every mail is handled as a customer's",
                                "" if mb.authserv_id else "set COPILOT_EMAIL_AUTHSERV_ID (or authserv_id of the mailbox) to the "
                                "authserv-id your receiving mail server writes in Authentication-Results (docs/email.md)"))
        bad = self.files.unparsed_files()
        checks.append(Check("email unparsed messages", not bad,
                            f"{len(bad)} kept under {self.files.unparsed}" + (f" (latest {bad[-1].name})" if bad else ""),
                            "open them with `copilot email parse FILE`; they are flagged $CopilotUnparsed in the "
                            "mailbox; delete the files once handled" if bad else ""))
        return checks

    async def _imap_check(self, mb: Mailbox) -> Check:
        name = f"email {mb.key} IMAP"
        session = ImapSession(mb)
        try:
            sel = await session.open()
            mode = "IDLE" if session.idle_supported and mb.idle else f"polling every {mb.poll_seconds:.0f} s"
            return Check(name, True, f"{mb.username} on {mb.imap_host}:{mb.imap_port_} ({mb.imap_security}), folder "
                                     f"{mb.folder}: {sel.exists} messages, UIDVALIDITY {sel.uidvalidity}; {mode}")
        except ImapError as exc:
            return Check(name, False, str(exc), exc.fix)
        finally:
            await session.close()

    async def _smtp_check(self, mb: Mailbox) -> Check:
        name = f"email {mb.key} SMTP"
        if not mb.smtp_host:
            return Check(name, True, "no smtp_host: this mailbox receives only")
        if not mb.own_address:
            return Check(name, False, "no address for outgoing mail", "set address = the copilot's own email address")
        smtp = open_smtp(mb)
        try:
            await login(smtp, mb)
            auth = f"logged in as {mb.smtp_user}" if mb.smtp_user and mb.smtp_pass else "no login configured"
            return Check(name, True, f"{mb.smtp_host}:{mb.smtp_port_} ({mb.smtp_security}), {auth}, sending as {mb.own_address}")
        except SmtpFailure as exc:
            return Check(name, False, str(exc), exc.fix)
        finally:
            await close_smtp(smtp)

    # lifecycle --------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for w in self.watchers.values():
            await w.aclose()
