"""Competitor comparison: a side-by-side table from the battlecards, every cell cited.

Battlecards and the product sheet share their section headings (功能, 价格区间, 交付周期, 弱点, 话术 /
Features, Price band, Delivery, Weaknesses, Talk track), so a cell is the opening of the same section
in each document. Only documents the asker may read are used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bot.agent.answer import citation_for
from bot.prompts import Prompts
from connectors.message import Citation, Reply
from rag.retrieve import Hit, Retriever, Viewer
from rag.text import language, normalize, sentences, table_rows

# (key, zh heading, en heading, words that ask about it): the headings are matched against the documents' sections;
# the table shows the messages compare_aspect_<key>, which read the same.
ASPECTS = [
    ("features", "功能", "Features", r"功能|模块|能力|feature|function|module"),
    ("price", "价格区间", "Price band", r"价格|报价|多少钱|贵|便宜|费用|成本|price|pricing|cost"),
    ("delivery", "交付周期", "Delivery", r"实施|交付|上线|周期|多久|部署|deliver|implement|go[- ]live|rollout"),
    ("weaknesses", "弱点", "Weaknesses", r"弱点|劣势|短板|缺点|不足|weak"),
    ("talk", "话术", "Talk track", r"话术|怎么说|怎么讲|怎么回|talk track|pitch|position"),
]
CELL_CHARS = 90


@dataclass
class Side:
    label: str
    doc_id: str
    sections: dict[str, Hit]  # aspect key -> the section's first passage


def _sections(hits: list[Hit]) -> dict[str, Hit]:
    out: dict[str, Hit] = {}
    for h in hits:
        last = h.heading.split(" > ")[-1].strip() if h.heading else ""
        for key, zh, en, _ in ASPECTS:
            if key not in out and (last.startswith(zh) or last.lower().startswith(en.lower())):
                out[key] = h
    return out


def _cell(h: Hit, focus: bool) -> str:
    lines = sentences(h.text)
    if h.text.startswith("|"):  # a table: its first data row, with the header
        lines = table_rows(h.text) or lines
    picked, size = [], 0
    limit = CELL_CHARS * (3 if focus else 1)
    for s in lines:
        s = re.sub(r"^(?:[-*•·]|\d+[.、)])\s+", "", s).strip()
        if not s:
            continue
        if picked and size + len(s) > limit:
            break
        picked.append(s)
        size += len(s)
    text = " ".join(picked)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Comparer:
    def __init__(self, retriever: Retriever, prompts: Prompts, stale_days: int, link) -> None:
        self.retriever = retriever
        self.prompts = prompts
        self.stale_days = stale_days
        self.link = link

    def competitors(self, viewer: Viewer) -> list[dict]:
        return [d for d in self.retriever.documents(viewer, "battlecard") if d["competitor"]]

    def named(self, viewer: Viewer, text: str) -> list[dict]:
        """Battlecards whose competitor is named in the text (by name, short name or latin name)."""
        t = normalize(text).lower()
        found = []
        for d in self.competitors(viewer):
            names = {d["competitor"].lower(), re.sub(r"(软件|系统|科技|公司)$", "", d["competitor"]).lower()}
            names |= {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z ]{2,}", d["title"] + " " + d["competitor"])}
            if any(n.strip() and n.strip() in t for n in names):
                found.append(d)
        return found

    def _ours(self, viewer: Viewer, lang: str) -> Side | None:
        best = None
        for d in self.retriever.documents(viewer, "product"):
            sections = _sections(self.retriever.document_hits(viewer, d["doc_id"]))
            rank = (len(sections), d["lang"] == lang)
            if sections and (best is None or rank > best[0]):
                best = (rank, Side(self.prompts.msg("compare_ours", lang), d["doc_id"], sections))
        return best[1] if best else None

    def compare(self, viewer: Viewer, text: str) -> tuple[Reply, dict] | None:
        lang = language(text)
        cards = self.named(viewer, text)
        if not cards:
            return None
        focus = [key for key, _, _, rx in ASPECTS if re.search(rx, text, re.I)]
        sides = [s for s in [self._ours(viewer, lang)] if s]
        for d in cards[:2]:
            sections = _sections(self.retriever.document_hits(viewer, d["doc_id"]))
            sides.append(Side(d["competitor"], d["doc_id"], sections))
        aspects = sorted(ASPECTS, key=lambda a: a[0] not in focus)
        numbers: dict[str, int] = {}
        cites: list[Citation] = []
        rows = []
        for key, _, _, _ in aspects:
            cells = []
            for side in sides:
                h = side.sections.get(key)
                if h is None:
                    cells.append("—")
                    continue
                if h.doc_id not in numbers:
                    numbers[h.doc_id] = len(numbers) + 1
                    cites.append(citation_for(numbers[h.doc_id], h, self.stale_days, self.link(h, viewer)))
                cells.append(f"{_cell(h, key in focus)} [{numbers[h.doc_id]}]")
            if any(c != "—" for c in cells):
                rows.append((self.prompts.msg(f"compare_aspect_{key}", lang), cells))
        head = [self.prompts.msg("compare_aspect", lang)] + [s.label for s in sides]
        table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        table += ["| " + " | ".join([name] + [c.replace("|", "/") for c in cells]) + " |" for name, cells in rows]
        title = self.prompts.msg("compare_title", lang, sides=" vs ".join(s.label for s in sides))
        plain = [title] + [f"【{name}】" + "；".join(f"{s.label}: {c}" for s, c in zip(sides, cells)) for name, cells in rows]
        md = title + "\n\n" + "\n".join(table)
        stale = [c for c in cites if c.stale_days]
        if stale:
            note = "；".join(self.prompts.msg("compare_stale", lang, n=c.n, days=c.stale_days) for c in stale)
            md += "\n\n" + note
            plain.append(note)
        evidence = {"passages": [{"doc_id": s.doc_id, "aspects": sorted(s.sections)} for s in sides]}
        return Reply(text="\n".join(plain), markdown=md, citations=cites, grounded=True), evidence
