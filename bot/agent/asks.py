"""What a question can ask, and the values that state it: the attribute kinds (ASKS: price, limit, date, revenue…),
the value patterns that state each, and how a question's wording names the unit a price is asked per or the thing a
count or price is of. Read by answerable.py (Answerability) on questions and on the passages' sentences.
"""
from __future__ import annotations

import re

import jieba.posseg

from rag.text import has_cjk

NUMBER = r"\d|[一二两三四五六七八九十百千万]+\s*(?:个|家|次|名|人|天|周|月|年|倍|张|台|项|种|小时|分钟)"
_COUNTED = r"(?![行条人次个家张台件笔字份名户位项套])"  # "50 万行" counts rows: no amount
# a share of a fee ("维保费为许可费的 22%") is a price; 99.9% uptime is not
MONEY = (rf"[¥￥$]|\d[\d,.]*\s*(?:元|[万亿]{_COUNTED}|美元|k\b|K\b|million)|CNY|USD|RMB|人民币|美元|免费|\bfree\b|折|"
         r"(?:费|价|成本|补贴|优惠|返点|赔|金|报销|保额|cost|price|fee|charge|discount|rebate|premium|compensat|reimburs)"
         r"[^。；;]{0,40}?(?:\d[\d.]*\s*%|百分之)|"
         r"(?:\d[\d.]*\s*%|百分之)[^。；;]{0,8}?(?:费|价|折扣|补贴|优惠|返点|赔|报销|off\b|discount|rebate|premium)")
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
    ("code", r"代码|编号|编码|号码|证书号|注册号|ticker|stock symbol|\bcode\b|\bID\b", "",  # 股票代码是多少: an identifier
     r"\b(?=[A-Z0-9-]*[A-Z])(?=[A-Z0-9-]*\d)[A-Z0-9-]{4,}\b|"  # letters and digits (ISO-9001); digits, not a year or an amount
     r"(?<![\d.,])(?!(?:19|20)\d\d(?!\d))\d{4,}(?![\d.,%])(?!\s*(?:年|万|元|人|家|个|行|条|天|次))"),
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
YEAR_ASKED = re.compile(r"哪年|哪一年|什么年份|哪个年份|\b(?:which|what) year\b", re.I)  # a year, not any date
YEAR = r"(?<!\d)(?:19|20)\d{2}(?!\d)"
# a place asked by its kind ("总部在哪个城市"): a place name answers it, the kind's own word need not be stated
WHERE_ASKED = re.compile(r"(?:哪个|哪座|哪些|什么|哪)\s*(?:城市|国家|省份?|地区|区域|地方)|\b(?:which|what) (?:city|country|province|region)\b", re.I)
# a yes/no question about a thing: the thing itself must be named by the answer (does it support X? any case in X?)
SUPPORTS = re.compile(r"支持|兼容|对接|集成|打通|适配|认证|接入|导出到|有没有|有无|是否有|"
                      r"^(?:does|do|is|are|can|will|could)\b.*\b(?:support|integrate|compatible|certified|offer|run on|work with|have (?:a|an|any))", re.I)
COMPETITOR_WORDS = re.compile(r"竞品|竞争对手|对手|友商|competitor|rival", re.I)
OURS = re.compile(r"我们|咱们|我司|我方|云帆|\bwe\b|\bus\b|\bour\b|\bours\b|yunfan", re.I)  # also the router's "about us"
# the unit a price or a limit is asked per ("per additional user", "每增加一个仓库"): the answer must be stated per it
_PER_EN = re.compile(r"\b(?:per|for each|for every|each)\s+(?:additional\s+|extra\s+|new\s+|more\s+)?([a-z]{3,})", re.I)
_PER_ZH = re.compile(r"每(?:增加|多加|多|加|新增|添加)?\s*(?:一|1)?\s*(?:个|家|位|名|台|套)?\s*([\u4e00-\u9fff]{2,3}?)(?=多少|要|收|的|需|[，,？?]|$)")
_PER_TIME = re.compile(r"^(?:天|日|周|月|年|季|小时|分钟|次|day|week|month|year|quarter|hour|minute|time)", re.I)
_BASES = [("用户", "user", "users", "seat", "seats", "席位", "账号", "account"), ("仓库", "仓", "warehouse", "warehouses"),
         ("门店", "店", "store", "stores", "shop"), ("站点", "site", "sites"), ("模块", "module", "modules")]


def asked_per(question: str) -> tuple[str, ...]:
    """The unit a price or limit is asked per as the question words it, then its other names (_BASES); () when it asks
    per nothing or per a time."""
    m = _PER_EN.search(question) or _PER_ZH.search(question)
    if not m or _PER_TIME.match(m.group(1)):
        return ()
    unit = m.group(1).lower()
    return (unit, *(n for names in _BASES if unit in names for n in names if n != unit))


_MEASURES = frozenset("家 个 名 次 张 台 位 款 项 种 人 套 本 条".split())
_BRIDGE = frozenset("有 共 一共 总共 总计 合计 大概 大约 约 的 是 还 要 需要 人天 每年 一年 每月 每人".split())
_PRICE_WORDS = r"价格|单价|多少钱|费用|收费|报价|售价|年费|订阅费|价位"


def asked_of(question: str, words, key: str) -> str:
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


def places_in(text: str) -> set[str]:
    """Place names in a text: jieba's for Chinese, capitalised words for English."""
    if has_cjk(text):
        return {t.word for t in jieba.posseg.cut(text) if t.flag == "ns" and len(t.word) >= 2}
    return set(re.findall(r"(?<!^)(?<![.?!] )\b[A-Z][a-z]{2,}\b", text))
