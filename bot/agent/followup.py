"""Follow-up questions: "那专业版呢？", "它多少钱", "and for 50 seats?" read against the conversation.

A short question that leans on the one before (a pronoun, "X呢", "what about X", "and for X") is rewritten
into a standalone question from the conversation's previous question and the documents its answer cited:
by the model when there is one (prompts/rewrite.md), else — or when the model fails — by rules:
- "X呢 / what about X / and for X": X takes the place of its kind in the previous question (an edition for an
  edition, a competitor for a competitor, a number of seats for a number), else is added to it;
- a pronoun ("它", "这个", "it", "they") becomes what the previous question named, else the competitor or
  title of the document its answer cited first.
The previous question is the last answer turn of the conversation (AgentTurn evidence), within FRESH.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.agent.answerable import OURS, Answerability
from bot.agent.llm import ChatModel, ModelUnavailable
from bot.agent.tables import AgentTurn
from bot.prompts import Prompts
from rag.text import has_cjk, normalize

FRESH = timedelta(minutes=30)
# "那专业版呢？" "专业版的呢" "what about the Enterprise edition?" "and for 50 seats?" "how about Lanhai?"
_ELLIPSIS = re.compile(r"^(?:那么?|那个|还有|另外)?\s*(?P<x>.{1,20}?)\s*(?:的话)?\s*呢\s*[?？]?$|"
                       r"^(?:and\s+)?(?:what|how)\s+about\s+(?P<y>.+?)\s*\??$|^and\s+(?:for\s+|with\s+|in\s+)?(?P<z>.+?)\s*\??$", re.I)
_PRONOUN_ZH = re.compile(r"^(?:那|那么)?(它们|它|他们|这个|那个|这家|那家|这款|该产品|其)")
_PRONOUN_EN = re.compile(r"\b(it|its|they|them|their|this one|that one)\b", re.I)
_NUMBER_UNIT = re.compile(r"(\d[\d,.]*)\s*(seats?|users?|licen[cs]es?|个用户|用户|个席位|席位|家门店|家店|个仓库?|人)", re.I)


class FollowUps:
    def __init__(self, engine: Engine, answerability: Answerability, prompts: Prompts, model: ChatModel | None) -> None:
        self.engine = engine
        self.answerability = answerability
        self.prompts = prompts
        self.model = model

    def previous(self, rep_id: str, conversation: str) -> dict | None:
        """The conversation's last answered question and what its answer cited, if recent."""
        t = AgentTurn.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.evidence, t.c.created_at).where(
                t.c.conversation_key == conversation, t.c.rep_id == rep_id, t.c.job == "answer").order_by(t.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
        ev = json.loads(row.evidence)
        ev["question"] = ev.get("asked") or ev.get("question")  # the standalone form of a follow-up the rep asked before
        if not ev["question"] or datetime.now(timezone.utc) - at > FRESH:
            return None
        return ev

    @staticmethod
    def leans(text: str) -> bool:
        """The question cannot stand alone: an ellipsis or a pronoun, in a short question."""
        t = normalize(text)
        short = len(t) <= 16 if has_cjk(t) else len(t.split()) <= 8
        return short and bool(_ELLIPSIS.match(t) or _PRONOUN_ZH.match(t) or (not has_cjk(t) and _PRONOUN_EN.search(t)))

    def resolve(self, text: str, tenant: str, rep_id: str, conversation: str, actor: str = "") -> str:
        if not conversation or not self.leans(text):
            return text
        prev = self.previous(rep_id, conversation)
        if prev is None:
            return text
        cited = [p for p in prev.get("passages", []) if p.get("doc_id") in set(prev.get("cited_doc_ids", []))] or prev.get("passages", [])
        if self.model is not None and self.model.configured:
            try:
                system, user = self.prompts.prompt("rewrite").render(
                    previous=prev["question"], text=text, cited="; ".join(dict.fromkeys(p["title"] for p in cited[:3])))
                out = self.model.complete(system, user, actor=actor, conversation=conversation, job="rewrite").text.strip()
                line = out.splitlines()[0].strip() if out else ""
                if line and "NOT_IN_KB" not in line and len(line) <= 4 * len(prev["question"]) + len(text):
                    return line
            except ModelUnavailable:
                pass
        return self.rewrite(text, prev["question"], cited, tenant)

    def rewrite(self, text: str, previous: str, cited: list[dict], tenant: str) -> str:
        """The rules: the follow-up's missing part filled from the previous question and its cited documents."""
        t, prev = normalize(text), normalize(previous).rstrip("?？。. ")
        lex = self.answerability.lexicon(tenant)
        m = _ELLIPSIS.match(t)
        if m:
            x = (m.group("x") or m.group("y") or m.group("z") or "").strip()
            x = re.sub(r"^(?:the|for)\s+", "", x, flags=re.I)
            num = _NUMBER_UNIT.search(x)
            if num and _NUMBER_UNIT.search(prev):
                return _NUMBER_UNIT.sub(x, prev, count=1) + ("?" if not has_cjk(prev) else "？")
            swapped = self._swap(prev, x, lex) or _same_head(prev, x)
            if swapped is not None:
                return swapped + ("？" if has_cjk(prev) else "?")
            return (f"{x} {prev}？" if has_cjk(prev) else f"{prev} for {x}?")
        subject = self._subject(prev, cited, lex)
        if not subject:
            return text
        mz = _PRONOUN_ZH.match(t)
        if mz:
            return t[: mz.start(1)] + subject + t[mz.end(1):]
        return _PRONOUN_EN.sub(lambda mm: subject + ("'s" if mm.group(1).lower() in ("its", "their") else ""), t, count=1)

    @staticmethod
    def _named(text: str, lex) -> list[str]:
        low = text.lower()
        return sorted({a for a in lex.terms if len(a) >= 2 and a in low}, key=lambda a: low.find(a))

    def _swap(self, prev: str, x: str, lex) -> str | None:
        """`prev` with the term of the same kind as `x` replaced by `x` (专业版 for 标准版, 蓝海 for 星图)."""
        xs = self._named(x, lex)
        if not xs:
            return None
        group = lex.terms[xs[0]]
        competitor = group in {c.lower() for c in lex.competitors}
        for a in self._named(prev, lex):
            g = lex.terms[a]
            if g == group:
                continue
            same_kind = (competitor and g in {c.lower() for c in lex.competitors}) or g in lex.siblings.get(group, set())
            if same_kind and not any(a in b and a != b for b in self._named(prev, lex)):
                return re.sub(re.escape(a), x, prev, count=1, flags=re.I)
        if competitor and OURS.search(prev):  # "Does Yunfan support SSO?" → "What about Lanhai?"
            return OURS.sub(x, prev, count=1)
        return None

    def _subject(self, prev: str, cited: list[dict], lex) -> str:
        """What the previous question was about: a competitor or term it named, else its first cited document's subject."""
        low = prev.lower()
        for c, names in lex.competitors.items():
            hit = [a for a in names if a in low]
            if hit:
                return max(hit, key=len) if has_cjk(prev) else next((a for a in names if a.isascii()), c)
        named = [a for a in self._named(prev, lex) if not re.fullmatch(r"[a-z]{1,3}", a)]
        if named:
            return max(named, key=len)
        for p in cited[:1]:
            return p.get("competitor") or p.get("title", "")
        return ""


def _same_head(prev: str, x: str) -> str | None:
    """"the Enterprise edition" in place of "the Professional edition": the phrase of `prev` ending in x's head word."""
    words = x.split()
    if has_cjk(x) or len(words) < 2:
        return None
    if words[-1].lower() in ("one", "ones"):  # "and the Professional one?": the name before the previous noun
        m = re.search(r"\b(?:the|a|an|our|your|their|its)\s+((?:[A-Z][\w-]*\s+){%d})[a-z]" % (len(words) - 1), prev)
        return prev[: m.start(1)] + " ".join(words[:-1]) + " " + prev[m.end(1):] if m else None
    m = re.search(r"\b" + r"\s+".join([r"\S+"] * (len(words) - 1) + [re.escape(words[-1])]) + r"\b", prev, re.I)
    return prev[: m.start()] + x + prev[m.end():] if m else None
