"""Answerability: do the sentences chosen for an answer state what was asked?

A passage on the right topic is not an answer when it does not state the asked thing ("never
invented"). The question is read for its structure, not matched against known questions:
- the **entities** it names: competitors, products, editions, customers, recognised from the knowledge's
  own metadata (competitor names, tags, title parts, the Latin words of document ids) and any Latin
  name, acronym or code (SAP, Linux, X9) or Chinese noun the knowledge never uses;
- the **attribute** it asks (ASKS: price, limit, date, duration, revenue, headcount, SLA, share, supports…)
  and the kind of value that states it (an amount, a number, a date, a percentage);
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

from rag.retrieve import Hit, Retriever
from rag.store import Document, DocVersion
from rag.text import STOPWORDS, has_cjk, normalize, tokenize

NUMBER = r"\d|[一二两三四五六七八九十百千万]+\s*(?:个|家|次|名|人|天|周|月|年|倍|张|台|项|种|小时|分钟)"
_COUNTED = r"(?![行条人次个家张台件笔字份名户位项套])"  # "50 万行" counts rows: no amount
MONEY = rf"[¥￥$]|\d[\d,.]*\s*(?:元|[万亿]{_COUNTED}|美元|k\b|K\b|million|%)|CNY|USD|RMB|人民币|美元|免费|\bfree\b|折|百分之"
PERCENT = r"\d[\d.]*\s*%|百分之|\d+\s*个百分点|[一二三四五六七八九]成|约占|\d+\s*折"
DATE = (r"\d{4}\s*年|\d{1,2}\s*月|\d{1,2}\s*[日号]|周[一二三四五六日末]|星期|每[月周年天日]|季度|\bQ[1-4]\b|\b(?:19|20)\d{2}\b|"
        r"\d{1,2}:\d{2}|凌晨|上午|下午|之前|以前|截止|之内|以内|内\b|第\s*\d+\s*(?:天|周|个工作日)|"
        r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December|Monday|Friday|weekly|monthly|daily|before|within)\b")
DURATION = (r"(?<![\d.])(?!(?:19|20)\d\d\s*年)(?:\d+(?:\.\d+)?|[一二两三四五六七八九十半])\s*[-–~～至到]?\s*\d*\s*(?:个)?\s*(?:天|周|月|年|小时|分钟|工作日|人天)|"
            r"\d+\s*(?:days?|weeks?|months?|years?|hours?|minutes?)\b|每\s*[天日周月年季]|实时|隔天|次日|当天|"
            r"\b(?:daily|weekly|monthly|hourly|real-time|same day|next day)\b")
DATE = DATE + "|" + DURATION  # "when will they answer?" → "within 24 hours"

# (key, words that ask for it, words a sentence stating it uses or "" for none, the value it needs or "")
# checked in order; a question can ask several (its most specific one decides what is missing).
ASKS = [
    ("revenue", r"营收|营业收入|营业额|年收入|收入多少|销售额|利润|revenue|turnover|profit|earnings",
     r"营收|营业收入|营业额|收入|销售额|利润|revenue|turnover|profit|earnings",
     rf"[¥￥$]|\d[\d,.]*\s*(?:元|[万亿]{_COUNTED}|美元|million|billion)|CNY|USD|RMB"),
    ("headcount", r"员工|雇员|人员规模|headcount|employees|staff size|how many people",
     r"员工|雇员|employees|staff|people", r"\d[\d,]*\s*(?:名|人)(?![天民])|\d[\d,]*\s*(?:employees|staff|people)"),
    ("funding", r"融资|估值|投资方|投资人|上市|funding|valuation|raised|investors?|\bIPO\b",
     r"融资|估值|投资|上市|funding|valuation|raised|investor|IPO", ""),
    ("share", r"市场份额|市占率|占有率|market share", r"份额|占有率|市占|占比|约占|share", PERCENT),
    ("rate", r"续约率|续费率|流失率|离职率|留存率|转化率|满意度|好评率|净推荐|churn|retention|renewal rate|attrition|satisfaction|\bNPS\b|net promoter",
     r"续约率|续费率|流失|离职|留存|转化率|满意度|好评|推荐|churn|retention|renewal rate|attrition|satisfaction|NPS|promoter", PERCENT),
    ("sla", r"\bSLA\b|可用性|可用率|服务等级|uptime|availability", r"SLA|可用|服务等级|uptime|availability", PERCENT),
    ("people", r"董事长|总裁|首席执行官|创始人|负责人是谁|联系人是谁|\bCEO\b|\bCTO\b|founder|president|chairman",
     r"董事长|总裁|首席执行官|创始人|CEO|CTO|founder|president|chairman", ""),
    ("contact", r"电话|热线|手机号|邮箱|地址|官网|网址|phone|hotline|e-?mail address|website|address",
     r"电话|热线|\d{3,}[-\s]?\d{3,}|@|邮箱|地址|官网|www|http|phone|hotline|website|address", ""),
    ("weakness", r"短板|弱点|劣势|缺点|不足|毛病|weak|downside|drawback|shortcoming", "", ""),
    ("limit", r"上限|限额|限流|频率|调用次数|最多|最大|rate limits?|limits?\b|quota|maximum|\bmax\b|throttl",
     r"上限|最多|最大|至多|不超过|以内|以上|限额|限流|限制|limit|max|up to|at most|per (?:minute|second|hour|day)|每\s*(?:分钟|秒|小时|天)", NUMBER),
    ("price", r"价格|多少钱|费用|收费|报价(?!单)|成本|单价|售价|年费|订阅费|价位|金额|几折|折扣|price|priced|pricing|cost|fee|charge|how much|pay\b",
     "", MONEY),
    ("name", r"叫什么|名字|名称|what is the name|what.s the name|called", "",
     r"\b[A-Z][a-z]{2,}\b|[「“\"《]|[\u4e00-\u9fff]{2,}(?:公司|集团|科技|软件|伙伴)(?!的)"),
    ("which", r"哪家客户|哪个客户|哪家公司|哪家企业|which (?:customer|company|account)", "", ""),
    ("release", r"发布|推出|上市|新版本|release|launch", r"发布|推出|上市|版本|release|launch", DATE),
    ("date", r"什么时候|何时|哪天|哪一天|哪年|几号|几月|日期|截止|发布时间|when\b|what date|which year|release date|deadline", "", DATE),
    ("duration", r"多久|多长时间|多长|几天|几周|几个月|几年|多少天|how long|how many (?:days|weeks|months|years|hours)", "", DURATION),
    ("count", r"多少|(?<!哪)几\s*[个家次名台张位项]|how many|number of", "", NUMBER),
]
ASKS.insert(0, ("code", r"代码|编号|编码|号码|证书号|注册号|ticker|stock symbol|\bcode\b|\bID\b", "",  # 股票代码是多少: an identifier
                r"\b(?=[A-Z0-9-]*[A-Z])(?=[A-Z0-9-]*\d)[A-Z0-9-]{4,}\b|"  # letters and digits (ISO-9001, 600588 is below)
                r"(?<![\d.,])(?!(?:19|20)\d\d(?!\d))\d{4,}(?![\d.,%])(?!\s*(?:年|万|元|人|家|个|行|条|天|次))"))
_YEAR_ASKED = re.compile(r"哪年|哪一年|什么年份|哪个年份|\b(?:which|what) year\b", re.I)  # a year, not any date
YEAR = r"(?<!\d)(?:19|20)\d{2}(?!\d)"
# a place asked by its kind ("总部在哪个城市"): a place name answers it, the kind's own word need not be stated
_WHERE_ASKED = re.compile(r"(?:哪个|哪座|哪些|什么|哪)\s*(?:城市|国家|省份?|地区|区域|地方)|\b(?:which|what) (?:city|country|province|region)\b", re.I)
# a yes/no question about a thing: the thing itself must be named by the answer (does it support X? any case in X?)
SUPPORTS = re.compile(r"支持|兼容|对接|集成|打通|适配|认证|接入|导出到|有没有|有无|是否有|"
                      r"^(?:does|do|is|are|can|will|could)\b.*\b(?:support|integrate|compatible|certified|offer|run on|work with|have (?:a|an|any))", re.I)
COMPETITOR_WORDS = re.compile(r"竞品|竞争对手|对手|友商|competitor|rival", re.I)
OURS = re.compile(r"我们|咱们|我司|我方|云帆|\bwe\b|\bus\b|\bour\b|\bours\b|yunfan", re.I)  # also the router's "about us"
# Latin words a question is built from, not what it is about
_EN_PLAIN = frozenset(
    "how what which who whom when where why if does do did is are was were can could should would will give tell show list "
    "please i we you our your us my me a an the there any some".split())
_NAME_SUFFIX = re.compile(r"(?:系统|软件|科技|公司|有限公司|集团|机械|超市|药业|股份|Analytics|Inc\.?|Ltd\.?)$", re.I)
_SPLIT = re.compile(r"[：:（）()\[\]【】《》“”\"'、，,—\-–/|·]+")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9.+#&]*[A-Za-z0-9+#]|[A-Za-z]*\d+[A-Za-z0-9]*")
_QUESTION_NOUNS = frozenset("客户 问题 情况 东西 时候 公司 方面 多少 事情 办法 建议 区别 什么 地方 意思 原因 样子 时间 系统 产品 软件 "
                            "程度 地步 水平".split())
_ASKED_AFTER = re.compile(r"怎么|怎样|如何|是多少|多少|是什么|是谁|是哪|有哪些|有多|什么时候|何时|几时|在哪|哪里")  # the noun before them is what is asked
# the unit a price or a limit is asked per ("per additional user", "每增加一个仓库"): the answer must be stated per it
_PER_EN = re.compile(r"\b(?:per|for each|for every|each)\s+(?:additional\s+|extra\s+|new\s+|more\s+)?([a-z]{3,})", re.I)
_PER_ZH = re.compile(r"每(?:增加|多加|多|加|新增|添加)?\s*(?:一|1)?\s*(?:个|家|位|名|台|套)?\s*([\u4e00-\u9fff]{2,3}?)(?=多少|要|收|的|需|[，,？?]|$)")
_PER_TIME = re.compile(r"^(?:天|日|周|月|年|季|小时|分钟|次|day|week|month|year|quarter|hour|minute|time)", re.I)
_BASES = [("用户", "user", "users", "seat", "seats", "席位", "账号", "account"), ("仓库", "仓", "warehouse", "warehouses"),
         ("门店", "店", "store", "stores", "shop"), ("站点", "site", "sites"), ("模块", "module", "modules")]


@dataclass
class Lexicon:
    """What the knowledge itself names: terms (lower case) → group, competitor aliases, corpus vocabulary."""

    terms: dict[str, str]
    siblings: dict[str, set[str]]  # term group → groups named beside it in one tag list
    competitors: dict[str, set[str]]  # competitor name → its aliases (lower case)
    doc_terms: dict[str, str]  # doc_id → its metadata words (title, tags, competitor, id), lower case
    vocabulary: frozenset[str]


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
        lex = Lexicon(terms, siblings, competitors, doc_terms, frozenset(self.retriever.idf(tenant)))
        self._lex[tenant] = (gen, lex)
        return lex

    # what the question asks ----------------------------------------------------------------------
    def read(self, question: str, tenant: str) -> Asked:
        lex = self.lexicon(tenant)
        q = normalize(question)
        low = q.lower()
        clause = re.split(r"[，。；;：:]|,(?!\d)", q.rstrip("，。,;； "))[-1]  # "客户电话 139…，他问实施周期多长？" asks a duration
        asks = [(k, stating, YEAR if k in ("release", "date") and _YEAR_ASKED.search(clause) else value)
                for k, rx, stating, value in ASKS if re.search(rx, clause, re.I)]
        if _WHERE_ASKED.search(clause):
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
                place = tok.flag in ("ns", "nt", "nz") and not _WHERE_ASKED.search(words[i - 1].word + w if i else w)  # a region, organisation or product the answer must be about
                asked_noun = (tok.flag.startswith("n") and i > 0 and words[i - 1].word in ("什么", "哪种", "哪个", "哪类", "何种")
                              and w not in lex.vocabulary)
                asked_of = i + 1 < len(words) and _ASKED_AFTER.match(words[i + 1].word)  # 电费怎么算, 年会什么时候
                unknown = ((supports or asked_of) and tok.flag.startswith(("n", "vn")) and w not in lex.vocabulary  # 支持鸿蒙吗
                           and not all(t in lex.vocabulary for t in tokenize(w)))  # 客户案例: 客户 + 案例
                if place:
                    places.append(w)
                elif asked_noun or unknown:
                    required.append(w)
        unit = re.search(r"(?:多少|(?<!哪)几)\s*([家个名次张台位款项种人])(?![天次])", q)
        return Asked(q, asks, supports, competitors, bool(COMPETITOR_WORDS.search(q)), bool(OURS.search(q)),
                     named - {lex.terms[a] for c in competitors for a in lex.competitors[c]} - ours_names, required, unit.group(1) if unit else "", places,
                     _per(q) if any(k in ("price", "limit", "count") for k, _, _ in asks) else (),
                     _asked_of(q, words if has_cjk(q) else [], asks[0][0] if asks else ""))

    # does what was chosen state it -----------------------------------------------------------------
    def subject(self, sentence: str, hit: Hit) -> str:
        """The competitor a sentence speaks of ('' for us): its document's, unless it names us."""
        if hit.competitor and not OURS.search(sentence):
            return hit.competitor
        return ""

    def judge(self, asked: Asked, chosen: list[tuple[str, Hit]], tenant: str, full_text=None) -> Verdict:
        """The chosen sentences that fit the question, or what the knowledge does not state.

        `full_text(hit)`: the whole text of a hit's document, where a name the sentence leaves out may be stated."""
        lex = self.lexicon(tenant)
        kept = list(chosen)
        if asked.competitors:
            about = [(s, h) for s, h in kept if self.subject(s, h) in asked.competitors or any(
                _has(s.lower(), a) for c in asked.competitors for a in lex.competitors[c])]
            if not about:
                return Verdict(False, missing=sorted(asked.competitors))
            others = set(lex.competitors) - asked.competitors
            kept = [(s, h) for s, h in kept if self.subject(s, h) not in others] if asked.ours else about
        elif asked.ours and not asked.any_competitor:
            kept = [(s, h) for s, h in kept if not self.subject(s, h)]
            if not kept:
                return Verdict(False, missing=["ask:ours"])
        for key, stating, value in asked.asks[:1] if asked.asks else []:
            if key == "count" and asked.unit:
                unit = "[名位人]" if asked.unit == "人" else "[个名位人项]" if asked.unit in "个名位" else asked.unit
                value = rf"(?:\d[\d,.]*|[两三四五六七八九十百千万][一二两三四五六七八九十百千万]*)\s*[多余万千百]*\s*{unit}(?![天次月])"
            fits = [(s, h) for s, h in kept if (not stating or re.search(stating, f"{h.heading} {s}", re.I))
                    and (not value or any(key != "name" or m.group(0).lower() not in asked.text.lower() for m in re.finditer(value, s, re.I)))]
            if key == "where":  # a place named that the question does not name
                fits = [(s, h) for s, h in kept if _places(s) - _places(asked.text)]
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


def _per(question: str) -> tuple[str, ...]:
    """The unit a price or limit is asked per as the question words it, then its other names (_BASES); () when it asks
    per nothing or per a time."""
    m = _PER_EN.search(question) or _PER_ZH.search(question)
    if not m or _PER_TIME.match(m.group(1)):
        return ()
    unit = m.group(1).lower()
    return (unit, *(n for names in _BASES if unit in names for n in names if n != unit))


_MEASURES = frozenset("家 个 名 次 张 台 位 款 项 种 人 套 本 条".split())
LEAD_CHARS = 300  # a document's opening: what it is about
_BRIDGE = frozenset("有 共 一共 总共 总计 合计 大概 大约 约 的 是 还 要 需要 人天 每年 一年 每月 每人".split())
_PRICE_WORDS = r"价格|单价|多少钱|费用|收费|报价|售价|年费|订阅费|价位"


def _asked_of(question: str, words, key: str) -> str:
    """What a count or price question asks the value of. Chinese (`words`: jieba's): the noun after 多少/几 and its
    measure word, else the noun just before them (or before the price word), over 的, 有, 一年 and the like; English:
    the word after "how many"."""
    if key not in ("count", "price"):
        return ""
    if not words:
        m = re.search(r"\bhow many\s+([a-z]{3,})", question, re.I) if key == "count" else None
        return m.group(1).lower() if m else ""
    for i, tok in enumerate(words):
        w = tok.word
        if key == "count" and w.startswith(("多少", "几")) and not w.startswith("几乎"):
            for t in words[i + 1:i + 3]:
                if t.word in _MEASURES:  # 多少 | 家 | 分公司
                    continue
                if has_cjk(t.word) and t.flag.startswith(("n", "vn")):
                    return t.word
                break
        elif not (key == "price" and re.fullmatch(_PRICE_WORDS, w)):
            continue
        for t in reversed(words[:i]):
            if t.word in _BRIDGE or t.flag in ("m", "q", "mq", "t"):
                continue
            return t.word if len(t.word) >= 2 and has_cjk(t.word) and t.flag.startswith(("n", "vn")) else ""
        return ""
    return ""


def _places(text: str) -> set[str]:
    """Place names in a text: jieba's for Chinese, capitalised words for English."""
    if has_cjk(text):
        return {t.word for t in jieba.posseg.cut(text) if t.flag == "ns" and len(t.word) >= 2}
    return set(re.findall(r"(?<!^)(?<![.?!] )\b[A-Z][a-z]{2,}\b", text))


_FIGURE = re.compile(r"\d+(?:[.,]\d+)*")


def figures_stated(text: str, passages: list[Hit], question: str = "") -> bool:
    """Every figure of a model's answer (citation numbers aside) is written in the passages it was given (or the question)."""
    body = re.sub(r"(?<=\d),(?=\d)", "", normalize(" ".join(h.text for h in passages) + " " + question))
    for n in _FIGURE.findall(re.sub(r"\[\d{1,2}\]", "", normalize(text))):
        if n.replace(",", "") not in body:
            return False
    return True
