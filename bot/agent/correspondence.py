"""Customer email becomes CRM history: match the rep (To/Cc in the directory, else the account owner)
and the account/contact (address, then domain), log an email activity, and tell the rep in their chat
("王建国 replied about 价格 — draft a reply?"). Nothing is ever sent back to a customer by itself:
automatic mail, unknown senders and customers all get silence; a reply goes out only as a draft the
rep approved.
"""
from __future__ import annotations

import logging

from bot.agent.crmlog import scope_of
from bot.agent.extract import topics
from bot.agent.pending import PendingStore
from bot.people.directory import Directory, Person
from bot.prompts import Prompts, ui_lang
from connectors.message import Button, InboundMessage, Reply
from crm.service import CRM

log = logging.getLogger("copilot.mail")


class Correspondence:
    def __init__(self, directory: Directory, crm: CRM, pending: PendingStore, enqueue, reach, prompts: Prompts) -> None:
        self.reach = reach  # rep id -> Target in their own channel
        self.prompts = prompts
        self.directory = directory
        self.crm = crm
        self.pending = pending
        self.enqueue = enqueue

    def is_customer_mail(self, msg: InboundMessage) -> bool:
        """Mail from someone outside the directory, or whose sender the receiving server did not verify
        (a From header is whatever the sender typed): a customer's at most, never a user's request."""
        if not (msg.from_outside and msg.mail is not None):
            return False
        if not msg.mail.sender_verified:
            log.info("mail from %s is not verified (%s): customer correspondence at most", msg.sender_id, msg.mail.sender_check or "no verdict")
            return True
        return self.directory.resolve(msg.channel, msg.tenant, msg.sender_id) is None

    def receive(self, msg: InboundMessage) -> list[Reply]:
        """A customer's (or an automatic) email: log it and tell the rep; never answer the sender."""
        mail = msg.mail
        if mail is None or msg.auto_reply_forbidden:
            log.info("automatic mail from %s ignored: %s", msg.sender_id, msg.auto_reply_forbidden or "no mail facts")
            return []
        account, contact = self.crm.account_by_email(msg.tenant, msg.sender_id)
        rep = self._rep(msg, account)
        if rep is None or account is None:
            log.info("mail from %s matches no rep/account; kept in the inbox only", msg.sender_id)
            return []
        subject = mail.subject
        excerpt = " ".join(msg.text.split())[:160]
        who = contact.name if contact else (msg.sender_name or msg.sender_id)
        m, lang = self.prompts, ui_lang(rep.language)
        self.crm.log_activity(msg.tenant, account_id=account.id, contact_id=contact.id if contact else None, opportunity_id=None,
                              rep_id=rep.id, kind="email", occurred_at=msg.received_at,
                              summary=m.msg("mail_activity_summary", lang, who=who, subject=subject, excerpt=excerpt),
                              source=f"email:{mail.message_id}"[:300], idempotency_key=f"mail:{msg.platform_msg_id}", actor="copilot")
        target = self.reach(rep.id)
        about = (topics(msg.text) or [subject])[0]
        p = self.pending.create(
            tenant=msg.tenant, rep_id=rep.id, conversation_key=target.conversation_key,
            kind="email_reply", key=f"mail-{msg.platform_msg_id}"[:40],
            payload={"account_id": account.id, "contact_id": contact.id if contact else "", "text": msg.text[:2000],
                     "subject": subject, "message_id": mail.message_id,
                     "references": list(mail.references) + ([mail.message_id] if mail.message_id else [])})
        text = m.msg("mail_notify", lang, who=who, account=account.name, subject=subject, about=about, excerpt=excerpt)
        self.enqueue(target, Reply(text=text, kind="nudge", lang=lang, buttons=[
            Button(key="confirm", label=m.msg("button_draft_reply", lang), ref=p.id, reply="1"),
            Button(key="reject", label=m.msg("button_ignore", lang), ref=p.id, reply="3")]), f"mail-notify:{msg.platform_msg_id}")
        return []

    def _rep(self, msg: InboundMessage, account) -> Person | None:
        """The rep to tell: a To/Cc person whose scope holds the account (a rep Cc'd on a colleague's
        customer gets nothing of that account), else the account's owner."""
        for addr in [*msg.mail.to, *msg.mail.cc] if msg.mail is not None else []:
            person = self.directory.resolve("email", msg.tenant, addr)
            if person is not None and account is not None and scope_of(self.directory, person).allows(account.owner_id):
                return person
        if account is not None and account.owner_id:
            try:
                return self.directory.get(msg.tenant, account.owner_id)
            except Exception:
                return None
        return None
