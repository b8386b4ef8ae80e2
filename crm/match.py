"""Finding CRM records named in a rep's free text: accounts by name or alias, contacts by full name or
honorific (王总, 李经理, 张工, 陈老师, Mr. Wang), stores by their short names (天河店).

Pure functions over lists of records, so the service can cache the lists per tenant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from crm.models import Account, Contact, Store

_ASCII = re.compile(r"^[\x00-\x7f]+$")

# Honorifics: the title a rep uses -> words in the contact's job title that fit it ("" = any title)
_HONORIFICS: dict[str, tuple[str, ...]] = {
    "总经理": ("总经理", "总裁", "CEO", "GM"), "总监": ("总监", "Director", "Head"), "总": ("总", "CEO", "COO", "CIO", "CFO", "CTO", "VP", "Director", "Head"),
    "经理": ("经理", "Manager"), "工": ("工程师", "IT", "技术", "Engineer"), "老师": ("",), "主任": ("主任",), "厂长": ("厂长",),
    "部长": ("部长",), "院长": ("院长",), "博士": ("",), "医生": ("医生", "Dr"), "董": ("董事",),
}
_COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "尉迟", "长孙", "夏侯", "公孙", "司徒",
                      "宇文", "端木", "独孤", "南宫", "闻人", "轩辕", "呼延")
# words that start with an honorific's character but are not one: 小王总结了 (总结), 这周工作 (工作)
_NOT_AFTER = {"总": "结是共部额体价之算数计裁会量包分归在有能", "工": "作厂程资具人期艺业地序时单位商行伤会"}
_ZH_HONORIFIC = re.compile("(" + "|".join(_COMPOUND_SURNAMES) + r"|[\u4e00-\u9fff])(" + "|".join(
    h + (f"(?![{_NOT_AFTER[h]}])" if h in _NOT_AFTER else "") for h in sorted(_HONORIFICS, key=len, reverse=True)) + ")")
_EN_HONORIFIC = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+([A-Z][A-Za-z'\-]+)")
# the pinyin of common surnames, for "Mr. Wang" about 王建国 (covers most of the population)
_PINYIN = dict(p.split(":") for p in (
    "王:wang 李:li 张:zhang 刘:liu 陈:chen 杨:yang 黄:huang 赵:zhao 吴:wu 周:zhou 徐:xu 孙:sun 马:ma 朱:zhu 胡:hu 郭:guo 何:he "
    "高:gao 林:lin 罗:luo 郑:zheng 梁:liang 谢:xie 宋:song 唐:tang 许:xu 韩:han 冯:feng 邓:deng 曹:cao 彭:peng 曾:zeng 肖:xiao "
    "田:tian 董:dong 袁:yuan 潘:pan 于:yu 蒋:jiang 蔡:cai 余:yu 杜:du 叶:ye 程:cheng 苏:su 魏:wei 吕:lv 丁:ding 任:ren 沈:shen "
    "姚:yao 卢:lu 姜:jiang 崔:cui 钟:zhong 谭:tan 陆:lu 汪:wang 范:fan 金:jin 石:shi 廖:liao 贾:jia 夏:xia 韦:wei 付:fu 方:fang "
    "白:bai 邹:zou 孟:meng 熊:xiong 秦:qin 邱:qiu 江:jiang 尹:yin 薛:xue 闫:yan 段:duan 雷:lei 侯:hou 龙:long 史:shi 陶:tao "
    "黎:li 贺:he 顾:gu 毛:mao 郝:hao 龚:gong 邵:shao 万:wan 钱:qian 严:yan 覃:qin 武:wu 戴:dai 莫:mo 孔:kong 向:xiang 汤:tang "
    "欧阳:ouyang 司马:sima 诸葛:zhuge 上官:shangguan").split())
_WONG = {"wong": "huang", "chan": "chen", "lee": "li", "cheung": "zhang", "chang": "zhang", "lau": "liu", "ng": "wu", "ho": "he",
         "tsang": "zeng", "leung": "liang", "kwok": "guo", "tang": "deng"}  # Cantonese spellings of the same surnames


@dataclass(frozen=True)
class Hit:
    id: str
    length: int  # how much text the match covers: longer = more specific
    start: int
    end: int


def _spans(term: str, text: str, folded: str) -> Iterable[tuple[int, int]]:
    """Where `term` occurs; ASCII terms only as whole words ("BDA" is not in "BDAY")."""
    if not term:
        return
    if _ASCII.match(term):
        for m in re.finditer(r"(?<![A-Za-z0-9])" + re.escape(term.casefold()) + r"(?![A-Za-z0-9])", folded):
            yield m.span()
        return
    start = text.find(term)
    while start >= 0:
        yield start, start + len(term)
        start = text.find(term, start + 1)


def best_hits(terms: Iterable[tuple[str, str]], text: str) -> list[Hit]:
    """(id, term) pairs found in text -> one hit per id, most specific first. A hit inside a longer
    hit of another record is dropped: "华东医疗集团" names the group, not 华东医疗器械 ("华东医疗")."""
    folded = text.casefold()
    best: dict[str, Hit] = {}
    for rid, term in terms:
        for a, b in _spans(term, text, folded):
            h = Hit(rid, b - a, a, b)
            if rid not in best or h.length > best[rid].length:
                best[rid] = h
    hits = sorted(best.values(), key=lambda h: (-h.length, h.start))
    return [h for h in hits if not any(o.id != h.id and o.length > h.length and o.start <= h.start and h.end <= o.end for o in hits)]


def match_accounts(accounts: Sequence[Account], text: str) -> list[Account]:
    text = text.strip()
    if not text:
        return []
    by_id = {a.id: a for a in accounts}
    hits = best_hits(((a.id, t) for a in accounts for t in {a.name, *a.alias_list()}), text)
    found = [h.id for h in hits]
    if len(text) >= 2:  # the text starts a name or alias ("华东" -> both 华东 accounts; "精工" -> 精工机械)
        q = text.casefold()
        found += sorted((a.id for a in accounts if a.id not in found and any(n.casefold().startswith(q) for n in (a.name, *a.alias_list()))),
                        key=lambda i: by_id[i].name)
    return [by_id[i] for i in found]


def surname(name: str) -> str:
    if _ASCII.match(name):
        parts = name.split()
        return parts[-1] if parts else ""
    return name[:2] if name[:2] in _COMPOUND_SURNAMES else name[:1]


def _title_fits(honorific: str, title: str) -> bool:
    words = _HONORIFICS.get(honorific, ("",))
    return any(w == "" or w.casefold() in title.casefold() for w in words)


def match_contacts(contacts: Sequence[Contact], text: str, *, scoped: bool = False) -> list[Contact]:
    """Full names first, then honorifics. `scoped` (the caller narrowed to a few accounts) also
    accepts an English given name alone ("Emily asked...")."""
    by_id = {c.id: c for c in contacts}
    found = [h.id for h in best_hits(((c.id, c.name) for c in contacts if c.name), text)]
    if scoped:
        given = ((c.id, c.name.split()[0]) for c in contacts if _ASCII.match(c.name) and len(c.name.split()) > 1)
        found += [h.id for h in best_hits(given, text) if h.id not in found]
    for m in _ZH_HONORIFIC.finditer(text):
        sur, hon = m.group(1), m.group(2)
        same = [c for c in contacts if not _ASCII.match(c.name) and surname(c.name) == sur and c.name != m.group(0)]
        fitting = [c for c in same if _title_fits(hon, c.title)] or same
        found += [c.id for c in fitting if c.id not in found]
    for m in _EN_HONORIFIC.finditer(text):
        last = m.group(1).casefold()
        last = _WONG.get(last, last) if not any(surname(c.name).casefold() == last for c in contacts if _ASCII.match(c.name)) else last
        for c in contacts:
            sur = surname(c.name)
            if (sur.casefold() == last if _ASCII.match(c.name) else _PINYIN.get(sur) == last) and c.id not in found:
                found.append(c.id)
    return [by_id[i] for i in found]


def store_terms(store: Store, account_names: Sequence[str]) -> set[str]:
    """A store's name and its short forms: 鲜丰超市广州天河店 -> 广州天河店 -> 天河店."""
    terms = {store.name, store.id}
    short = store.name
    for n in sorted(account_names, key=len, reverse=True):
        if n and short.startswith(n) and len(short) > len(n) + 1:
            short = short[len(n):]
            break
    terms.add(short)
    city = store.address.split("市", 1)[0] if "市" in store.address[:6] else ""
    if city and short.startswith(city) and len(short) > len(city) + 1:
        terms.add(short[len(city):])
    return {t for t in terms if len(t) >= 2}


def match_stores(stores: Sequence[Store], accounts: dict[str, Account], text: str) -> list[Store]:
    by_id = {s.id: s for s in stores}
    terms = []
    for s in stores:
        acc = accounts.get(s.account_id)
        names = [acc.name, *acc.alias_list()] if acc else []
        terms += [(s.id, t) for t in store_terms(s, names)]
    return [by_id[h.id] for h in best_hits(terms, text)]
