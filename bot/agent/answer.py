"""Grounded answers from the knowledge base, with citations; never invented.

Offline (no model) the answer is extractive: the best supporting sentences of the passages that
clear the score floor, each followed by its citation number. Nothing clears the floor: an honest
"not in the knowledge base". Stale or expired sources are flagged in the answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bot.models import Citation
from bot.prompts import Prompts
from rag.retrieve import Hit, Retriever, Viewer
from rag.text import language, sentences, tokenize

MAX_SENTENCES = 4
MAX_CHARS = 420


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    grounded: bool
    hits: list[Hit] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "citations": [{k: getattr(c, k) for k in ("doc_id", "title", "source", "version", "snippet")} for c in self.citations],
            "grounded": self.grounded,
        }


def citation_for(n: int, h: Hit, stale_days: int, url: str = "") -> Citation:
    return Citation(n=n, doc_id=h.doc_id, title=h.title, chunk_id=h.chunk_id, source=h.source, version=h.version,
                    snippet=h.snippet, heading=h.heading, updated=h.updated, url=url,
                    stale_days=h.age_days if h.age_days is not None and h.age_days > stale_days else None)


def freshness_warnings(cites: list[tuple[Citation, Hit]], prompts: Prompts, lang: str, stale_days: int) -> list[str]:
    out = []
    for c, h in cites:
        if h.expired:
            out.append(prompts.msg("expired", lang, n=c.n, title=c.title, date=h.expires))
        elif h.age_days is not None and h.age_days > stale_days:
            out.append(prompts.msg("stale", lang, n=c.n, title=c.title, days=h.age_days))
    return out


class Answerer:
    def __init__(self, retriever: Retriever, prompts: Prompts, *, floor: float, stale_days: int = 90,
                 link: Callable[[Hit, Viewer], str] | None = None) -> None:
        self.retriever = retriever
        self.link = link or (lambda h, v: "")
        self.prompts = prompts
        self.floor = floor
        self.stale_days = stale_days

    def evidence(self, question: str, viewer: Viewer, k: int = 5) -> list[Hit]:
        """Passages that clear the score floor, best first."""
        hits = self.retriever.search(question, viewer, k=k)
        return [h for h in hits if h.relevance is not None and h.relevance >= self.floor]

    def answer(self, question: str, viewer: Viewer) -> Answer:
        lang = language(question)
        hits = self.evidence(question, viewer)
        if not hits:
            return Answer(self.prompts.msg("not_found", lang), [], False)
        picked = self._pick_sentences(question, hits[:3], lang, viewer.tenant)
        numbers: dict[str, int] = {}
        cited: list[tuple[Citation, Hit]] = []
        lines = []
        for sent, h in picked:
            if h.chunk_id not in numbers:
                numbers[h.chunk_id] = len(numbers) + 1
                cited.append((citation_for(numbers[h.chunk_id], h, self.stale_days, self.link(h, viewer)), h))
            lines.append(f"{sent} [{numbers[h.chunk_id]}]")
        warnings = freshness_warnings(cited, self.prompts, lang, self.stale_days)
        text = self.prompts.msg("answer_intro", lang) + "\n" + "\n".join(f"• {line}" for line in lines)
        if warnings:
            text += "\n\n" + "\n".join(warnings)
        return Answer(text, [c for c, _ in cited], True, hits, warnings)

    def _pick_sentences(self, question: str, hits: list[Hit], lang: str, tenant: str) -> list[tuple[str, Hit]]:
        q_tokens = set(tokenize(question))
        idf = self.retriever.idf(tenant) if q_tokens else {}
        scored: list[tuple[float, int, int, str, Hit]] = []
        for rank, h in enumerate(hits):
            for pos, s in enumerate(sentences(h.text)):
                if len(s) < 4 or s.startswith("|---"):
                    continue
                toks = set(tokenize(s)) | set(tokenize(h.heading))
                overlap = sum(idf.get(t, 1.0) for t in q_tokens & toks)
                total = sum(idf.get(t, 1.0) for t in q_tokens) or 1.0
                score = overlap / total - 0.15 * rank - 0.02 * pos
                if language(s) == lang:
                    score += 0.1
                scored.append((score, rank, pos, s, h))
        scored.sort(key=lambda t: -t[0])
        best = [t for t in scored if t[0] > 0] or [t for t in scored if t[1] == 0][:2]
        out, size = [], 0
        for score, rank, pos, s, h in best:
            if len(out) >= MAX_SENTENCES or (out and size + len(s) > MAX_CHARS):
                break
            out.append((rank, pos, s, h))
            size += len(s)
        # keep the source order inside each passage so the answer reads naturally
        out.sort(key=lambda t: (t[0], t[1]))
        return [(s, h) for _, _, s, h in out]

