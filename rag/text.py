"""Chinese-aware text helpers: normalisation, tokenisation for BM25, sentence splitting."""
from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba

jieba.setLogLevel(logging.WARNING)

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w", re.UNICODE)
# Sentence ends: Chinese 。！？； and English . ! ? followed by space/end. Keeps closing quotes with the sentence.
_SENT_END = re.compile(r"(?<=[。！？!?；;])[”’」』）)]*|(?<=[a-zA-Z0-9\)][.])(?=\s)")
STOPWORDS = frozenset(
    "的 了 和 是 在 我 我们 你 你们 他 她 它 吗 呢 吧 啊 么 什么 怎么 怎么样 如何 哪些 哪个 多少 有 有没有 没有 "
    "与 及 或 就 都 也 还 被 把 对 这 那 这个 那个 一个 一下 请 请问 能 能否 可以 是否 会 要 "
    "a an the is are was were be been of to in on for and or with what how which who do does did can could "
    "should would our we you your i me my it its this that these those about vs versus".split()
)


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str, *, t2s: bool = False) -> str:
    """Full-width to half-width (NFKC), collapse spaces, optionally traditional to simplified.

    NFKC also turns full-width punctuation into ASCII, so Chinese punctuation that matters for
    sentence splitting is restored afterwards.
    """
    text = unicodedata.normalize("NFKC", text)
    if t2s and _CJK.search(text):
        text = _t2s().convert(text)
    return re.sub(r"[ \t\u3000]+", " ", text).strip()


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def language(text: str) -> str:
    """'zh' when the text has a meaningful share of Chinese characters, else 'en'."""
    cjk = len(_CJK.findall(text))
    latin = len(re.findall(r"[A-Za-z]+", text))
    return "zh" if cjk and cjk >= latin else "en"


def tokenize(text: str) -> list[str]:
    """BM25 tokens: jieba search-mode words for Chinese, lower-cased words for Latin; no stopwords."""
    text = normalize(text).lower()
    out = []
    for tok in jieba.cut_for_search(text):
        tok = tok.strip()
        if tok and tok not in STOPWORDS and _WORD.search(tok):
            out.append(tok)
    return out


def sentences(text: str) -> list[str]:
    """Split into sentences on Chinese and English sentence ends and line breaks; never drops text."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        start = 0
        for m in _SENT_END.finditer(line):
            end = m.end()
            if end > start:
                piece = line[start:end].strip()
                if piece:
                    out.append(piece)
                start = end
        tail = line[start:].strip()
        if tail:
            out.append(tail)
    return out


_IDENTIFIER = re.compile(r"[A-Za-z_.-]*\d[A-Za-z0-9_.-]*")


def embed_text(title: str, heading: str, text: str) -> str:
    """What is embedded for a passage: its document title and heading path give it context. A title that is only an
    identifier (a file named dev0412.md or IMG_2041.png, no title inside) says nothing about the passage: left out."""
    return "\n".join(x for x in ("" if _IDENTIFIER.fullmatch(title) else title, heading, text) if x)


_LIST_MARK = re.compile(r"^(?:[-*•·]|\d+[.、)])\s+")


def table_rows(text: str) -> list[str]:
    """A Markdown table chunk as one line per row that names its columns: "版本: 专业版；年费: ¥20–45万"."""
    lines = [ln.strip().strip("|").split("|") for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 3:
        return []
    header = [c.strip() for c in lines[0]]
    return ["；".join(f"{h}: {c.strip()}" for h, c in zip(header, row) if c.strip()) for row in lines[2:]]


def statements(text: str) -> list[str]:
    """What a passage states, one unit each: its sentences (list marks dropped), or a table's rows."""
    units = table_rows(text) if text.startswith("|") else sentences(text)
    return [u for u in (_LIST_MARK.sub("", x).strip() for x in units) if len(u) >= 4]


def statement_text(heading: str, statement: str) -> str:
    """What is embedded for one statement: its section's name gives it context ("价格区间: 标准版…")."""
    return f"{heading.split(' > ')[-1]}: {statement}" if heading else statement


def statement_texts(heading: str, text: str) -> list[str]:
    """What is embedded for each statement of a passage, in order."""
    return [statement_text(heading, x) for x in statements(text)]
