"""The copilot agent: turns a rep's words into answers, drafts and CRM proposals.

Knows no platform: it sees a `Person` (who asks) and text, and returns `Reply`s. Must never
import connectors.
"""
from __future__ import annotations

import re

from bot.agent.answer import Answer, Answerer
from bot.directory import Person
from bot.models import Reply
from bot.prompts import Prompts
from rag.retrieve import Viewer
from rag.text import language

COMMANDS = ("ask", "compare", "draft", "log", "todo", "help", "why", "start")
_CMD = re.compile(r"^\s*[/／]\s*([a-zA-Z]+)\b\s*(.*)$", re.S)


def parse_command(text: str) -> tuple[str | None, str]:
    m = _CMD.match(text)
    if not m:
        return None, text.strip()
    return m.group(1).lower(), m.group(2).strip()


def viewer_of(person: Person) -> Viewer:
    return Viewer(tenant=person.tenant, role=person.role, team=person.team, user_id=person.id)


def answer_reply(ans: Answer) -> Reply:
    return Reply(text=ans.text, citations=ans.citations, grounded=ans.grounded, kind="answer" if ans.grounded else "notice")


class Agent:
    def __init__(self, answerer: Answerer, prompts: Prompts) -> None:
        self.answerer = answerer
        self.prompts = prompts

    def handle(self, person: Person, text: str, conversation_key: str = "") -> list[Reply]:
        cmd, arg = parse_command(text)
        lang = language(arg or text) if (arg or text) else person.language
        if cmd in ("help", "start") or (cmd is None and not arg):
            return [Reply(text=self.prompts.msg("help", lang), kind="notice")]
        if cmd in (None, "ask"):
            if not arg:
                return [Reply(text=self.prompts.msg("help", lang), kind="notice")]
            return [answer_reply(self.answerer.answer(arg, viewer_of(person), actor=person.id, conversation=conversation_key))]
        return [Reply(text=self.prompts.msg("help", lang), kind="notice")]

    def act(self, person: Person, action, conversation_key: str = "") -> list[Reply]:  # noqa: ANN001
        return [Reply(text="没有待确认的操作。/ Nothing is waiting for confirmation.", kind="notice")]
