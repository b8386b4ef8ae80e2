"""Grounded answers from the knowledge base, with citations; never invented.

Offline (no model) the answer is extractive: the best supporting sentences of the passages that
clear the score floor, each followed by its citation number. Nothing clears the floor: an honest
"not in the knowledge base". Stale or expired sources are flagged in the answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from bot.agent.answerable import Answerability, Asked, Verdict, figures_stated
from bot.agent.llm import ChatModel, ModelUnavailable
from bot.prompts import Prompts
from connectors.message import Citation
from rag.retrieve import Hit, Retriever, Viewer
from rag.text import language, sentences, statement_text, statements, tokenize

MAX_SENTENCES = 4
MAX_CHARS = 420
SENTENCE_MARGIN = 0.03  # keep sentences scoring within this of the best one
POOL_MARGIN, POOL_SIZE = 0.06, 14  # the sentences the answerability check may choose from
WIDE_MARGIN, WIDE_SIZE = 0.12, 30  # and where it looks for the asked value when those do not state it
LEXICAL_WEIGHT, SAME_LANGUAGE = 0.08, 0.01  # a sentence's score: its cosine, plus these for shared rare words and language
PASSAGE_WEIGHT = 1.0  # minus this times how far its passage ranks below the best one (the retrieval's fused score)
WHOLE_DOCS = 2  # where the asked value is not in the passages found: every passage of this many best documents


class Unverified(Exception):
    """The model's answer cites none of the passages it was given: it is not shown."""


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
    def __init__(self, retriever: Retriever, prompts: Prompts, *, floor: float, floor_en: float | None = None, stale_days: int = 90,
                 link: Callable[[Hit, Viewer], str] | None = None, model: ChatModel | None = None, check_answerable: bool = True) -> None:
        self.retriever = retriever
        self.model = model
        self.link = link or (lambda h, v: "")
        self.prompts = prompts
        self.floor = floor
        self.floor_en = floor if floor_en is None else floor_en
        self.stale_days = stale_days
        self.answerability = Answerability(retriever)
        self.check_answerable = check_answerable  # off only to measure what the check changes (bench answerability)

    def evidence(self, question: str, viewer: Viewer, k: int = 8) -> list[Hit]:
        """Passages of the best-ranked documents, when the best of them clears the score floor.

        multilingual-e5 similarities are compressed (unrelated Chinese text still scores ~0.84)
        and lower across languages, hence a floor per question language (see docs/retrieval.md).
        """
        hits = self.retriever.search(question, viewer, k=k, per_doc=2)
        floor = self.floor_en if language(question) == "en" else self.floor
        best = max((h.relevance or 0.0 for h in hits), default=0.0)
        if best < floor:
            return []
        return [h for h in hits if (h.relevance or 0.0) >= floor - 0.03]

    def answer(self, question: str, viewer: Viewer, *, actor: str = "", conversation: str = "",
               on_text: Callable[[str], None] | None = None) -> Answer:
        lang = language(question)
        hits = self.evidence(question, viewer)
        if not hits:
            return Answer(self.prompts.msg("not_found", lang), [], False)
        note = ""
        asked = self.answerability.read(question, viewer.tenant) if self.check_answerable else None
        if self.model is not None and self.model.configured:
            try:
                return self._generate(question, hits, viewer, lang, actor, conversation, on_text, asked)
            except Unverified:
                pass  # the passages themselves, rather than an answer we cannot tie to them
            except ModelUnavailable:
                note = self.prompts.msg("model_down", lang)
        return self._extractive(question, hits, viewer, lang, note, asked)

    def declined(self, verdict: Verdict, hits: list[Hit], lang: str) -> Answer:
        """What the knowledge does not state, and what it does say near the question (no citation: nothing is answered)."""
        names = []
        for m in verdict.missing:
            if m.startswith("ask:"):
                names.append(self.prompts.msg(f"ask_{m[4:]}", lang))
            else:
                names.append(self.prompts.msg("missing_term", lang, term=m))
        near, seen = [], set()
        for h in hits:
            if h.doc_id not in seen and len(seen) < 3:
                seen.add(h.doc_id)
                near.append(self.prompts.msg("near_item", lang, title=h.title, section=h.heading.split(" > ")[-1] if h.heading else ""))
        what = self.prompts.msg("list_sep", lang).join(dict.fromkeys(names))
        text = self.prompts.msg("not_stated", lang, what=what) + ("\n" + "\n".join(near) if near else "")
        return Answer(text, [], False, hits)

    def _full_text(self, viewer: Viewer):
        cache: dict[str, str] = {}

        def text(h: Hit) -> str:
            if h.doc_id not in cache:
                cache[h.doc_id] = "\n".join(p.text for p in self.retriever.document_hits(viewer, h.doc_id))
            return cache[h.doc_id]
        return text

    def _finish(self, lines_or_text: str, cited: list[tuple[Citation, Hit]], hits: list[Hit], lang: str, note: str = "") -> Answer:
        warnings = freshness_warnings(cited, self.prompts, lang, self.stale_days)
        text = (note + "\n" if note else "") + lines_or_text
        if warnings:
            text += "\n\n" + "\n".join(warnings)
        return Answer(text, [c for c, _ in cited], True, hits, warnings)

    def _extractive(self, question: str, hits: list[Hit], viewer: Viewer, lang: str, note: str = "", asked: Asked | None = None) -> Answer:
        picked = self._pick_sentences(question, hits[:6], lang, viewer.tenant, asked, viewer)
        if isinstance(picked, Verdict) and asked is not None:
            for passages, wide in self._elsewhere(picked, hits, asked, viewer):
                again = self._pick_sentences(question, passages, lang, viewer.tenant, asked, viewer, wide=wide)
                if not isinstance(again, Verdict):
                    picked = again
                    break
        if isinstance(picked, Verdict):
            return self.declined(picked, hits, lang)
        numbers: dict[str, int] = {}
        cited: list[tuple[Citation, Hit]] = []
        lines = []
        for sent, h in picked:
            if h.doc_id not in numbers:  # one citation per document, pointing at its first passage used
                numbers[h.doc_id] = len(numbers) + 1
                cited.append((citation_for(numbers[h.doc_id], h, self.stale_days, self.link(h, viewer)), h))
            if h.competitor and asked is not None and h.competitor not in asked.competitors and self.answerability.subject(
                    sent, h, viewer.tenant) and not self.answerability.named_in(sent, h, viewer.tenant):  # never shown as if it were ours
                sent = self.prompts.msg("about_competitor", lang, competitor=h.competitor, text=sent)
            lines.append(f"{sent} [{numbers[h.doc_id]}]")
        body = self.prompts.msg("answer_intro", lang) + "\n" + "\n".join(f"• {line}" for line in lines)
        return self._finish(body, cited, hits, lang, note)

    def _generate(self, question: str, hits: list[Hit], viewer: Viewer, lang: str, actor: str, conversation: str,
                  on_text: Callable[[str], None] | None = None, asked: Asked | None = None) -> Answer:
        """The model writes the answer from numbered passages; only citations it was given survive,
        and an answer without any valid citation is not trusted (extractive fallback)."""
        passages = hits[:6]
        listing = "\n\n".join(f"[{i}] {h.title}{' › ' + h.heading.split(' > ')[-1] if h.heading else ''} (v{h.version}, {h.updated})\n{h.text}"
                               for i, h in enumerate(passages, 1))
        system, user = self.prompts.prompt("answer").render(question=question, passages=listing)
        preview = None
        if on_text is not None:  # the numbers are renumbered at the end: the preview shows none
            def preview(text: str) -> None:
                t = text.strip()
                if t and not ("NOT_IN_KB".startswith(t) or t.startswith("NOT_IN_KB")):  # a refusal is not previewed
                    on_text(re.sub(r"\s*\[\d{1,2}\]", "", text))
        out = self.model.complete(system, user, actor=actor, conversation=conversation, job="answer", on_text=preview)
        text = out.text.strip()
        if text.startswith("NOT_IN_KB"):
            return self.declined(Verdict(False, missing=[f"ask:{asked.asks[0][0]}" if asked.asks else "ask:answer"]), hits, lang) if asked is not None else Answer(
                self.prompts.msg("not_found", lang), [], False, hits)
        used = [int(n) for n in dict.fromkeys(re.findall(r"\[(\d{1,2})\]", text)) if 1 <= int(n) <= len(passages)]
        if not used:
            raise Unverified("the model answered without citing the passages")
        if asked is not None:  # the cited passages must state what was asked, and every figure the model wrote
            stated = [(s, passages[n - 1]) for n in used for s in sentences(passages[n - 1].text)]
            verdict = self.answerability.judge(asked, stated, viewer.tenant, self._full_text(viewer))
            if not verdict.ok:  # the passages it cited do not state it; others may (else the extractive path declines)
                raise Unverified("the model's cited passages do not state what was asked")
            if not figures_stated(text, passages, question):
                raise Unverified("the model wrote a figure none of its passages states")
        # renumber to the order of first use, one citation per passage used
        mapping = {n: i for i, n in enumerate(used, 1)}
        text = re.sub(r"\[(\d{1,2})\]", lambda m: f"[{mapping[int(m.group(1))]}]" if int(m.group(1)) in mapping else "", text)
        cited = [(citation_for(mapping[n], passages[n - 1], self.stale_days, self.link(passages[n - 1], viewer)), passages[n - 1]) for n in used]
        return self._finish(text, cited, hits, lang)

    def _elsewhere(self, verdict: Verdict, hits: list[Hit], asked: Asked, viewer: Viewer):
        """Where else what was asked may be stated, with how wide to look there: the named competitor's own card,
        where the search did not look ("How is NorthPeak priced?"), then, for an asked value, every section of the
        best documents ("…, and what would it cost?")."""
        own = [h for d in self.retriever.documents(viewer) if d["competitor"] in asked.competitors
               for h in self.retriever.document_hits(viewer, d["doc_id"])] if asked.competitors else []
        if own:
            yield own, 1.0
        if any(m.startswith("ask:") for m in verdict.missing):
            best = list(dict.fromkeys(h.doc_id for h in hits))[:WHOLE_DOCS]
            yield [x for d in best for x in self.retriever.document_hits(viewer, d)], WIDE_MARGIN

    def _pick_sentences(self, question: str, hits: list[Hit], lang: str, tenant: str, asked: Asked | None = None,
                        viewer: Viewer | None = None, wide: float = WIDE_MARGIN) -> list[tuple[str, Hit]] | Verdict:
        """Score each sentence of the top passages by meaning (e5, works across languages) and by
        shared rare words (BM25 idf); keep the best few that state what was asked (else the Verdict saying
        what is not stated)."""
        cands = [(s, h) for h in hits for s in statements(h.text)]
        if not cands:
            return []
        q_tokens = set(tokenize(question))
        idf = self.retriever.idf(tenant) if q_tokens else {}
        total = sum(idf.get(t, 1.0) for t in q_tokens) or 1.0
        qv = self.retriever.embedder.embed_queries([question])[0]
        sv = self.retriever.embedder.embed_passages([statement_text(h.heading, s) for s, h in cands])  # cached at ingestion
        best = max(h.score for h in hits)
        scored = []
        for (s, h), cos in zip(cands, sv @ qv):
            lexical = sum(idf.get(t, 1.0) for t in q_tokens & set(tokenize(s))) / total
            score = (float(cos) + LEXICAL_WEIGHT * lexical + (SAME_LANGUAGE if language(s) == lang else 0.0)
                     - PASSAGE_WEIGHT * (best - h.score))
            scored.append((score, s, h))
        scored.sort(key=lambda t: -t[0])
        top = scored[0][0]
        if asked is not None:
            full = self._full_text(viewer) if viewer is not None else None
            pool = [t for t in scored if t[0] >= top - POOL_MARGIN][:POOL_SIZE]
            verdict = self.answerability.judge(asked, [(s, h) for _, s, h in pool], tenant, full)
            if not verdict.ok and any(m.startswith("ask:") for m in verdict.missing):  # the value may sit a little lower
                pool = [t for t in scored if t[0] >= top - wide][:WIDE_SIZE]  # (a Chinese price row for an English question)
                verdict = self.answerability.judge(asked, [(s, h) for _, s, h in pool], tenant, full)
            if not verdict.ok:
                return verdict
            order = {(s, h.chunk_id): i for i, (s, h) in enumerate(verdict.kept)}
            scored = sorted((t for t in pool if (t[1], t[2].chunk_id) in order), key=lambda t: order[(t[1], t[2].chunk_id)])
            top = scored[0][0]
        out, size = [], 0
        for score, s, h in scored:
            if len(out) >= MAX_SENTENCES or score < top - SENTENCE_MARGIN or (out and size + len(s) > MAX_CHARS):
                break
            out.append((s, h))
            size += len(s)
        return out  # best first
