"""From an inbox message to replies: who is asking, what kind of message, which job.

Resolves the sender in the rep directory (unknown people are recorded for an admin and told so),
answers platform events, sends files to the ingestion path (by email: only a verified enablement
person's, and only as drafts to approve) and text to the agent. Runs the synchronous agent in a thread so the event loop keeps acknowledging.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from bot.agent import Agent
from bot.agent.correspondence import Correspondence
from bot.people.directory import Directory, Person
from bot.pipeline.channels import CannotFetch
from bot.prompts import Prompts
from connectors.message import Attachment, InboundMessage, Reply
from rag.text import language

log = logging.getLogger("copilot.router")

Fetch = Callable[[InboundMessage, Attachment], Awaitable[bytes]]
IngestFile = Callable[..., Reply]  # Publishing.upload(person, name, data, draft=False)


class Router:
    def __init__(self, directory: Directory, agent: Agent, prompts: Prompts, *, fetch: Fetch | None = None,
                 ingest_file: IngestFile | None = None, mail: Correspondence | None = None,
                 preview: Callable[[InboundMessage], Callable[[str], None] | None] | None = None) -> None:
        self.mail = mail
        self.preview = preview  # msg -> where its channel shows an answer while it is written (or None)
        self.directory = directory
        self.agent = agent
        self.prompts = prompts
        self.fetch = fetch
        self.ingest_file = ingest_file

    async def handle(self, msg: InboundMessage) -> list[Reply]:
        if self.mail is not None and msg.from_outside and await asyncio.to_thread(self.mail.is_customer_mail, msg):
            return await asyncio.to_thread(self.mail.receive, msg)  # never answered by mail, never ingested
        if msg.auto_reply_forbidden:
            return []  # automatic messages (out of office, bulk, lists): never answered
        if msg.kind == "file":
            return await self._files(msg)
        return await asyncio.to_thread(self.respond, msg)  # one thread hop for the whole job

    def _who(self, msg: InboundMessage) -> Person | None:
        person = self.directory.resolve(msg.channel, msg.tenant, msg.sender_id)
        if person is None:
            self.directory.note_unknown(msg.channel, msg.tenant, msg.sender_id, msg.sender_name)
            log.info("unknown sender %s/%s/%s recorded for approval", msg.channel, msg.tenant, msg.sender_id)
        return person

    def respond(self, msg: InboundMessage) -> list[Reply]:
        person = self._who(msg)
        if person is None:
            return [Reply(text=self.prompts.msg("unknown_user", language(msg.text) if msg.text else "zh"), kind="notice")]
        lang = language(msg.text) if msg.text else person.language
        if msg.kind == "event":
            if msg.event in ("subscribe", "enter_agent", "enter_chat"):
                return [Reply(text=self.prompts.msg("welcome", person.language, name=person.name), kind="notice")]
            if msg.event == "location":
                return [Reply(text=self.prompts.msg("location", lang), kind="notice")]
            return []  # other platform events need no answer
        if msg.kind == "action" and msg.action is not None:
            return self.agent.act(person, msg.action, msg.conversation_key, at=msg.received_at)
        if not msg.text.strip():
            return [Reply(text=self.prompts.msg("unsupported", lang), kind="notice")]
        return self.agent.handle(person, msg, self.preview(msg) if self.preview else None)

    async def _files(self, msg: InboundMessage) -> list[Reply]:
        person = await asyncio.to_thread(self._who, msg)
        if person is None:
            return [Reply(text=self.prompts.msg("unknown_user", "zh"), kind="notice")]
        replies = []
        by_mail = msg.mail is not None  # nothing from email is published without approval
        if by_mail and not (person.role == "enablement" and msg.mail.sender_verified):
            log.info("attachments mailed by %s (%s) are never ingested", person.id, person.role)
            return [Reply(text=self.prompts.msg("mail_files_not_ingested", person.language), kind="notice")]
        for att in msg.attachments:
            if self.fetch is None or self.ingest_file is None:
                replies.append(Reply(text=self.prompts.msg("unsupported", person.language), kind="notice"))
                continue
            try:
                data = await self.fetch(msg, att)
            except CannotFetch as exc:  # the channel carries no files: say so, not "expired"
                log.info("%s", exc)
                replies.append(Reply(text=self.prompts.msg("unsupported", person.language), kind="notice"))
                continue
            except Exception as exc:
                log.warning("cannot fetch %s from %s: %s", att.name, msg.channel, exc)
                replies.append(Reply(text=self.prompts.msg("download_failed", person.language, name=att.name), kind="notice"))
                continue
            replies.append(await asyncio.to_thread(self.ingest_file, person, att.name, data, draft=by_mail))
        return replies
