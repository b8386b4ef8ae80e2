"""Answerability: do the sentences chosen for an answer state what was asked?

A passage on the right topic is not an answer when it does not state the asked thing ("never
invented"). The question is read for its structure, not matched against known questions:
- the **entities** it names: competitors, products, editions, customers, recognised from the knowledge's
  own metadata (competitor names, tags, title parts, the Latin words of document ids) and any Latin
  name, acronym or code (SAP, Linux, X9) or Chinese noun the knowledge never uses;
- the **attribute** it asks (asks.py's ASKS: price, limit, date, duration, revenue, headcount, SLA, share, supports…)
  and the kind of value that states it (an amount, a number, a date, a percentage), and what the value is of;
- its **subject**: a named competitor, or us; a sentence's subject comes from its document's metadata
  (a battlecard speaks of its competitor unless the sentence names us).
`Answerability.judge` keeps the sentences that fit and says what is missing when none do. Reads the
knowledge through rag/ only; knows no platform and no model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import jieba.posseg
from sqlalchemy import select
from sqlmodel import Session

from bot.agent.asks import ASKS, COMPETITOR_WORDS, OURS, SUPPORTS, WHERE_ASKED, YEAR, YEAR_ASKED, asked_of, asked_per, places_in
from rag.retrieve import Hit, Retriever
from rag.store import Document, DocVersion
from rag.text import STOPWORDS, has_cjk, normalize, tokenize

# Latin words a question is built from, not what it is about
_EN_PLAIN = frozenset(
    "how what which who whom when where why if does do did is are was were can could should would will give tell show list "
    "please i we you our your us my me a an the there any some".split())
_NAME_SUFFIX = re.compile(r"(?:系统|软件|科技|公司|有限公司|集团|机械|超市|药业|股份|Analytics|Inc\.?|Ltd\.?)$", re.I)
_SPLIT = re.compile(r"[：:（）()\[\]【】《》“”\"'、，,—\-–/|·]+")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9.+#&]*[A-Za-z0-9+#]|[A-Za-z]*\d+[A-Za-z0-9]*")
LEAD_CHARS = 300  # a document's opening: what it is about
_EDITION = re.compile(r"\S版$|\bedition$", re.I)
_QUESTION_NOUNS = frozenset("客户 问题 情况 东西 时候 公司 方面 多少 事情 办法 建议 区别 什么 地方 意思 原因 样子 时间 系统 产品 软件 "
                            "程度 地步 水平".split())
_ASKED_AFTER = re.compile(r"怎么|怎样|如何|是多少|多少|是什么|是谁|是哪|有哪些|有多|什么时候|何时|几时|在哪|哪里")  # the noun before them is what is asked


@dataclass
class Lexicon:
    """What the knowledge itself names: terms (lower case) → group, competitor aliases, corpus vocabulary."""

    terms: dict[str, str]
    siblings: dict[str, set[str]]  # term group → groups named beside it in one tag list
    competitors: dict[str, set[str]]  # competitor name → its aliases (lower case)
    doc_terms: dict[str, str]  # doc_id → its metadata words (title, tags, competitor, id), lower case
    vocabulary: frozenset[str]
    ours: frozenset[str] = frozenset()  # our editions (专业版, Enterprise edition): tagged in our documents, in no competitor's


@dataclass
class Asked:
    text: str
    asks: list[tuple[str, str, str]]  # (key, stating words, value pattern)
    supports: bool
    competitors: set[str]
    any_competitor: bool
    ours: bool
    terms: set[str]  # entity term groups named
    required: list[str]  # Latin names/codes and unknown nouns that must be covered
    unit: str = ""  # the measure word of a count (多少家 → 家)
    places: list[str] = field(default_factory=list)  # regions and organisations: stated by the sentences' documents
    per: tuple[str, ...] = ()  # the unit a price or limit is asked per (as asked), and its other names
    of: str = ""  # what a count counts or a price prices (多少家分公司 → 分公司, 工程师的单价 → 工程师): named beside the value


@dataclass
class Verdict:
    ok: bool
    kept: list[tuple[str, Hit]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what is not stated: named terms, or an ask key as "ask:<key>"


def _aliases(name: str) -> set[str]:
    name = normalize(name).strip()
    out = {name.lower()} if len(name) >= 2 else set()
    core = _NAME_SUFFIX.sub("", name).strip()
    if len(core) >= 2:
        out.add(core.lower())
    return out


def _known(word: str, vocabulary: frozenset[str]) -> bool:
    """An English word the corpus uses in some form (scanning ~ scanned)."""
    stem = word[: max(4, len(word) - 3)]
    return word in vocabulary or any(v.startswith(stem) for v in vocabulary if v[:1] == word[:1])


def _has(text: str, term: str) -> bool:
    """`term` (lower case) occurs in `text` (lower case): Latin terms at a word start, CJK anywhere."""
    if has_cjk(term):
        return term in text
    return re.search(r"(?<![a-z0-9])" + re.escape(term), text) is not None


class Answerability:
    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever
        self._lex: dict[str, tuple[int, Lexicon]] = {}

    # what the knowledge names --------------------------------------------------------------------
    def lexicon(self, tenant: str) -> Lexicon:
        gen = self.retriever.generation(tenant)
        cached = self._lex.get(tenant)
        if cached is not None and cached[0] == gen:
            return cached[1]
        stmt = (select(Document.doc_id, DocVersion.title, DocVersion.tags, DocVersion.competitor)
                .join(DocVersion, DocVersion.id == Document.live_version_id).where(Document.tenant == tenant))
        with Session(self.retriever.engine) as s:
            rows = s.execute(stmt).all()
        terms: dict[str, str] = {}
        siblings: dict[str, set[str]] = {}
        competitors: dict[str, set[str]] = {}
        doc_terms: dict[str, str] = {}
        for doc_id, title, tags, competitor in rows:
            tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
            groups = []
            for tag in tag_list:
                for a in _aliases(tag):
                    terms.setdefault(a, tag.lower())
                groups.append(tag.lower())
            for g in groups:
                siblings.setdefault(g, set()).update(x for x in groups if x != g)
            for part in _SPLIT.split(normalize(title or "")):
                if 2 <= len(part.strip()) <= 12 and not tokenize(part.strip()) == []:
                    for a in _aliases(part):
                        terms.setdefault(a, part.strip().lower())
            words = [w for w in re.split(r"[-_.\s]+", doc_id.lower()) if len(w) >= 4 and w.isascii() and w.isalpha()]
            if competitor:
                names = _aliases(competitor) | {w for w in words}
                names |= {t.lower() for t in tag_list if any(t.lower() in n or n in t.lower() for n in _aliases(competitor))}
                competitors[competitor] = names
                for a in names:
                    terms[a] = competitor.lower()
            doc_terms[doc_id] = " ".join([(title or "").lower(), (tags or "").lower(), (competitor or "").lower(), " ".join(words)])
        theirs = {t.strip().lower() for _, _, tags, competitor in rows if competitor for t in (tags or "").split(",")}
        ours = {t.strip().lower() for _, _, tags, competitor in rows if not competitor for t in (tags or "").split(",")
                if _EDITION.search(t.strip())} - theirs
        lex = Lexicon(terms, siblings, competitors, doc_terms, frozenset(self.retriever.idf(tenant)), frozenset(ours))
        self._lex[tenant] = (gen, lex)
        return lex

    # what the question asks ----------------------------------------------------------------------
    def read(self, question: str, tenant: str) -> Asked:
        lex = self.lexicon(tenant)
        q = normalize(question)
        low = q.lower()
        clause = re.split(r"[，。；;：:]|,(?!\d)", q.rstrip("，。,;； "))[-1]  # "客户电话 139…，他问实施周期多长？" asks a duration
        asks = [(k, stating, YEAR if k in ("release", "date") and YEAR_ASKED.search(clause) else value)
                for k, rx, stating, value in ASKS if re.search(rx, clause, re.I)]
        if WHERE_ASKED.search(clause):
            asks.insert(0, ("where", "", ""))
        competitors = {c for c, names in lex.competitors.items() if any(_has(low, a) for a in names)}
        named, spans = set(), []
        for term in sorted(lex.terms, key=len, reverse=True):
            if len(term) >= 2 and _has(low, term) and not any(a <= low.find(term) < b for a, b in spans):
                named.add(lex.terms[term])
                spans.append((low.find(term), low.find(term) + len(term)))
        ours_names = {t for t in named if OURS.search(t)}
        asked_words = "|".join(rx for k, rx, _, _ in ASKS if any(k == a[0] for a in asks)) or "$^"
        supports = bool(SUPPORTS.search(q))  # "Does Lanhai offer a free trial, and for how many days?"
        required: list[str] = []
        for m in _LATIN.finditer(re.sub(r"\S+@\S+|\d{7,}", " ", q)):
            w, lw = m.group(0), m.group(0).lower()
            if (w.isdigit() or lw in _EN_PLAIN or lw in STOPWORDS or OURS.fullmatch(w) or lw in lex.terms  # a number is no name
                    or re.fullmatch(asked_words, w, re.I)):
                continue
            if (m.start() == 0 and not w.isupper()) or not (has_cjk(q) or w[0].isupper() or any(ch.isdigit() for ch in w)):
                if supports and len(lw) >= 4 and not _known(lw, lex.vocabulary):  # "automotive", "trial"
                    required.append(lw)
                continue
            required.append(lw)
        places: list[str] = []
        if has_cjk(q):
            words = list(jieba.posseg.cut(q))
            for i, tok in enumerate(words):
                w = tok.word.strip().lower()
                if len(w) < 2 or not has_cjk(w) or w in _QUESTION_NOUNS or re.search(asked_words, w) or any(w in t or t in w for t in lex.terms):
                    continue
                # a region, organisation or product the answer must be about (not the kind asked: 哪个城市)
                place = tok.flag in ("ns", "nt", "nz") and not WHERE_ASKED.search(words[i - 1].word + w if i else w)
                asked_noun = (tok.flag.startswith("n") and i > 0 and words[i - 1].word in ("什么", "哪种", "哪个", "哪类", "何种")
                              and w not in lex.vocabulary)
                before_ask = i + 1 < len(words) and _ASKED_AFTER.match(words[i + 1].word)  # 电费怎么算, 年会什么时候
                unknown = ((supports or before_ask) and tok.flag.startswith(("n", "vn")) and w not in lex.vocabulary  # 支持鸿蒙吗
                           and not all(t in lex.vocabulary for t in tokenize(w)))  # 客户案例: 客户 + 案例
                if place:
                    places.append(w)
                elif asked_noun or unknown:
                    required.append(w)
        unit = re.search(r"(?:多少|(?<!哪)几)\s*([家个名次张台位款项种人])(?![天次])", q)
        return Asked(q, asks, supports, competitors, bool(COMPETITOR_WORDS.search(q)), bool(OURS.search(q)),
                     named - {lex.terms[a] for c in competitors for a in lex.competitors[c]} - ours_names, required, unit.group(1) if unit else "", places,
                     asked_per(q) if any(k in ("price", "limit", "count") for k, _, _ in asks) else (),
                     asked_of(q, words if has_cjk(q) else [], asks[0][0] if asks else ""))

    # does what was chosen state it -----------------------------------------------------------------
    def subject(self, sentence: str, hit: Hit, tenant: str) -> str:
        """The competitor a sentence speaks of ('' for us): its document's, unless it names us or one of our editions
        (a battlecard's "专业版需要 6–8 周", split from "云帆标准版同样是 3–4 周上线；", is ours)."""
        low = sentence.lower()
        if hit.competitor and not OURS.search(sentence) and not any(_has(low, e) for e in self.lexicon(tenant).ours):
            return hit.competitor
        return ""

    def judge(self, asked: Asked, chosen: list[tuple[str, Hit]], tenant: str, full_text=None) -> Verdict:
        """The chosen sentences that fit the question, or what the knowledge does not state.

        `full_text(hit)`: the whole text of a hit's document, where a name the sentence leaves out may be stated."""
        lex = self.lexicon(tenant)
        kept = list(chosen)
        if asked.competitors:
            about = [(s, h) for s, h in kept if self.subject(s, h, tenant) in asked.competitors or any(
                _has(s.lower(), a) for c in asked.competitors for a in lex.competitors[c])]
            if not about:
                return Verdict(False, missing=sorted(asked.competitors))
            others = set(lex.competitors) - asked.competitors
            kept = [(s, h) for s, h in kept if self.subject(s, h, tenant) not in others] if asked.ours else about
        elif asked.ours and not asked.any_competitor:
            kept = [(s, h) for s, h in kept if not self.subject(s, h, tenant)]
            if not kept:
                return Verdict(False, missing=["ask:ours"])
        for key, stating, value in asked.asks[:1] if asked.asks else []:
            if key == "count" and asked.unit:
                unit = "[名位人]" if asked.unit == "人" else "[个名位人项]" if asked.unit in "个名位" else asked.unit
                value = rf"(?:\d[\d,.]*|[两三四五六七八九十百千万][一二两三四五六七八九十百千万]*)\s*[多余万千百]*\s*{unit}(?![天次月])"
            fits = [(s, h) for s, h in kept if (not stating or re.search(stating, f"{h.heading} {s}", re.I))
                    and (not value or any(key != "name" or m.group(0).lower() not in asked.text.lower() for m in re.finditer(value, s, re.I)))]
            if key == "where":  # a place named that the question does not name
                fits = [(s, h) for s, h in kept if places_in(s) - places_in(asked.text)]
            if asked.of:  # 36 家分公司 answers 多少家分公司; 4,000 名员工 does not answer 顾问有多少人 (in the question's language)
                fits = [(s, h) for s, h in fits if (2 * sum(ch in s for ch in asked.of) >= len(asked.of) if has_cjk(asked.of)  # 仓 ~ 仓库
                                                    else has_cjk(s) or _has(s.lower(), asked.of[:max(4, len(asked.of) - 2)]))]
            if key == "which":  # a customer story answers "which customer" in its title
                fits = [(s, h) for s, h in kept if any(len(p) >= 2 and p.lower() not in asked.text.lower() for p in _SPLIT.split(h.title)[1:])]
            if value:  # a question in the knowledge ("Can you invoice in USD?") states no value
                fits = [(s, h) for s, h in fits if not s.rstrip("\"'”’」）) ").endswith(("?", "？"))]
            if not fits:
                return Verdict(False, missing=[f"ask:{key}"])
            if asked.per:  # asked per user: a price per site does not answer it
                fits = [(s, h) for s, h in fits if any(_has(f"{h.heading} {s}".lower(), u) for u in asked.per)]
                if not fits:
                    return Verdict(False, missing=[asked.per[0]])
            kept = fits  # what is shown states the value: the names asked about must be stated beside it
        gaps = [self._gaps(asked, [x], lex, full_text) for x in kept]  # each sentence shown must be about what was named
        fitting = [x for x, g in zip(kept, gaps) if not g]
        if not fitting:
            together = self._gaps(asked, kept, lex, full_text)  # what none of them states, else what the best one lacks
            return Verdict(False, missing=together or gaps[0] if kept else ["ask:answer"])
        return Verdict(True, kept=fitting)

    def _gaps(self, asked: Asked, chosen: list[tuple[str, Hit]], lex: Lexicon, full_text) -> list[str]:
        """The names, codes and places of the question that the chosen sentences (with their documents) leave unstated."""
        missing: list[str] = []
        said = " ".join(s.lower() for s, _ in chosen)
        body = " ".join(full_text(h).lower() for h in {h.doc_id: h for _, h in chosen}.values()) if full_text else ""
        meta = " ".join(lex.doc_terms.get(h.doc_id, "") + " " + h.heading.lower() for _, h in chosen)
        # where a value is asked, a name must be where the value is: its passage or its document's opening ("核心产品是
        # 星图 ERP X9"), not any line of the document ("报表：依赖星图 BI" does not make a licence price BI's price)
        near = " ".join([h.text.lower() for _, h in chosen] + [full_text(h)[:LEAD_CHARS].lower() for h in {h.doc_id: h for _, h in chosen}.values()]
                        if full_text else [h.text.lower() for _, h in chosen])
        for group in sorted(asked.terms):
            aliases = {a for a, g in lex.terms.items() if g == group} | {group}
            if any(_has(said, a) or _has(meta, a) for a in aliases):
                continue
            rivals = {a for a, g in lex.terms.items() if g in lex.siblings.get(group, set())}
            if any(_has(body, a) for a in aliases) and not any(_has(said, r) for r in rivals):
                continue
            missing.append(group)
        for term in asked.required:
            if has_cjk(term):
                if not all(ch in said or ch in meta for ch in term):
                    missing.append(term)
            elif not (_has(said, term) or _has(meta, term) or _has(near if asked.asks else body, term)):
                missing.append(term)
        for term in asked.places:
            if not (all(ch in said or ch in meta for ch in term) or term in body):
                missing.append(term)
        return missing

    def named_in(self, sentence: str, hit: Hit, tenant: str) -> bool:
        """The sentence names its document's competitor itself."""
        names = self.lexicon(tenant).competitors.get(hit.competitor, set())
        return any(_has(sentence.lower(), a) for a in names)


_FIGURE = re.compile(r"\d+(?:[.,]\d+)*")


def figures_stated(text: str, passages: list[Hit], question: str = "") -> bool:
    """Every figure of a model's answer (citation numbers aside) is written in the passages it was given (or the question)."""
    body = re.sub(r"(?<=\d),(?=\d)", "", normalize(" ".join(h.text for h in passages) + " " + question))
    for n in _FIGURE.findall(re.sub(r"\[\d{1,2}\]", "", normalize(text))):
        if n.replace(",", "") not in body:
            return False
    return True
