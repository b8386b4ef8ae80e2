"""Every user-facing sentence lives in one catalogue per language (prompts/messages.zh.toml, messages.en.toml).

The two catalogues have the same keys and each key the same {placeholders}; `Prompts.msg` fills them,
falls back to the other language for a key one of them lacks, and names what is missing. No Chinese
string literal is left in bot/, crm/ or connectors/ outside the reading of Chinese input (regexes,
vocabularies) and the developer-facing platform console paths listed below: crm/ returns codes and
parameters that bot/ words, and the connectors get their labels (channel_*) from the factory.
"""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from bot.prompts import LANGS, Prompts, placeholders

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "prompts"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # ideographs; punctuation such as "；" is no sentence

# Chinese that is read, never shown -----------------------------------------------------------------
# Files that parse Chinese input throughout.
ALLOWED_FILES = {
    "bot/agent/extract.py": "dates, times, amounts, stages, activity kinds and topics in reps' words",
    "bot/agent/asks.py": "the words that ask for an attribute (价格, 上限, 营收) and the values that state it, in questions and passages",
    "bot/agent/answerable.py": "the nouns a question is built from (客户, 问题) and the words after which a noun is what is asked",
    "crm/match.py": "titles (总, 经理), compound surnames and their pinyin: matching the names reps write to contacts",
}
# Module-level constants (file, name): vocabulary matched against what people write or against document headings.
ALLOWED_CONSTANTS = {
    ("bot/agent/__init__.py", "INTENTS"): "phrases that route a plain-words request to a job",
    ("bot/agent/compare.py", "ASPECTS"): "battlecard section headings and the words that ask about them (shown via compare_aspect_*)",
    ("bot/agent/draft.py", "SECTIONS"): "words in the headings of playbook template sections",
    ("crm/validate.py", "_TRUE"): "yes-words in imported spreadsheets (是, 合格)",
    ("crm/validate.py", "_FALSE"): "no-words in imported spreadsheets (否, 不合格)",
    ("connectors/email/quote.py", "_HEADER_KEYS"): "the header labels mail clients write above a quoted mail (发件人, 主题)",
    ("bot/agent/llm.py", "WAN"): "the ten-thousand unit in written amounts (120万), matched to mask amounts, never shown",
}
# Single literals (file, the literal contains): operator tools, not the chat.
ALLOWED_LITERALS = {
    ("bot/cli/wecom.py", "企业微信"): "CLI help: the platform's own name",
    ("bot/cli/report.py", "华东区"): "CLI help: a sample team name as an example",
    ("bot/cli/reps.py", "华东区"): "CLI help: a sample team name as an example",
    ("bot/cli/report.py", "全部团队"): "operator's terminal report title",
    ("crm/stores.py", "市"): "reading the city out of a store's address (上海市…)",
}
# Platform console paths in doctor checks and fix hints: developer-facing, named as the console shows them.
CONSOLE = {
    "connectors/wecom/client.py": ("应用管理", "我的企业", "通讯录"),
    "connectors/wecom/config.py": ("应用管理", "接收消息", "随机获取"),
    "connectors/wecom/connector.py": ("应用管理", "可见范围", "进入应用事件"),
    "connectors/wecom/robot_config.py": ("智能机器人", "API 模式"),
    "connectors/dingtalk/config.py": ("凭证与基础信息",),
    "connectors/dingtalk/connector.py": ("企业内部应用", "凭证与基础信息", "机器人与消息推送", "权限管理", "互动卡片"),
    "connectors/feishu/client.py": ("机器人",),
    "connectors/feishu/config.py": ("开发者后台", "凭证与基础信息", "加密策略", "长连接"),
    "connectors/feishu/connector.py": ("开发者后台", "凭证与基础信息", "添加应用能力", "事件与回调"),
    "connectors/email/imap.py": ("授权码",),  # the mail providers' own word for an app password
    "connectors/email/send.py": ("授权码",),
}
ALLOWED_LITERALS.update({(f, part): "a platform console path in a doctor check or fix hint" for f, parts in CONSOLE.items() for part in parts})
SCANNED = ("bot", "crm", "connectors")
REGEX_CALLS = {"compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split"}


def catalogue(lang: str) -> dict[str, str]:
    return tomllib.loads((PROMPTS / f"messages.{lang}.toml").read_text(encoding="utf-8"))


# the catalogues -----------------------------------------------------------------------------------
def test_both_catalogues_have_the_same_keys_and_placeholders():
    zh, en = catalogue("zh"), catalogue("en")
    assert zh and set(zh) == set(en), f"only in zh: {sorted(set(zh) - set(en))}, only in en: {sorted(set(en) - set(zh))}"
    for key in zh:
        assert isinstance(zh[key], str) and isinstance(en[key], str), f"{key}: messages are flat key = \"text\""
        assert zh[key].strip() and en[key].strip(), f"{key} is empty"
        assert placeholders(zh[key]) == placeholders(en[key]), f"{key}: zh {placeholders(zh[key])} vs en {placeholders(en[key])}"
        assert not CJK.search(en[key]), f"{key}: Chinese in the English catalogue"


def test_every_message_key_used_in_bot_exists():
    """msg("key", ...) / raw("key", ...) with a literal key, anywhere in bot/, names a catalogue key."""
    keys = set(catalogue("zh"))
    used = set()
    for path in (REPO / "bot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("msg", "raw", "both")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                used.add((node.args[0].value, path.relative_to(REPO).as_posix()))
    assert len(used) > 100
    assert not [u for u in used if u[0] not in keys]


def test_msg_fills_falls_back_and_names_what_is_missing(tmp_path):
    (tmp_path / "messages.zh.toml").write_text('hello = "你好，{name}！"\nonly_zh = "只有中文"\n', encoding="utf-8")
    (tmp_path / "messages.en.toml").write_text('hello = "Hi {name}!"\nonly_en = "English only"\n', encoding="utf-8")
    p = Prompts(tmp_path)
    assert p.msg("hello", "zh", name="王五") == "你好，王五！"
    assert p.msg("hello", "en", name="Wang") == "Hi Wang!"
    assert p.msg("hello", "fr", name="Wang") == "你好，Wang！"  # anything but en reads Chinese
    assert p.msg("only_zh", "en") == "只有中文" and p.msg("only_en", "zh") == "English only"
    assert p.both("hello", name="W") == "你好，W！\nHi W!"
    assert p.raw("hello", "en") == "Hi {name}!"
    with pytest.raises(KeyError, match="'missing' is in none of"):
        p.msg("missing", "zh")
    with pytest.raises(KeyError, match=r"'hello' \(en\) needs name"):
        p.msg("hello", "en")


def test_the_shipped_catalogue_renders_the_old_texts():
    p = Prompts(PROMPTS)
    assert set(LANGS) == {"zh", "en"}
    assert p.msg("welcome", "zh", name="张伟").startswith("你好，张伟！")
    assert p.msg("crm_logged", "en", written="activity a1") == "Logged to the CRM ✓ activity a1"
    assert p.msg("health_coach_head", "zh", name="张伟", streak=3, score=41.6, target=60.0).startswith("张伟，最近 3 个工作日你的跟进节奏偏慢（昨天 42 分，目标 60）")


# no sentence left inline -----------------------------------------------------------------------------
def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _patterns(tree: ast.AST) -> set[int]:
    """The string nodes that are the pattern of a re.compile/search/sub/... call."""
    ids = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in REGEX_CALLS
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"):
            args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg == "pattern"]
            for a in args:
                ids |= {id(n) for n in ast.walk(a)}
    return ids


def _constants(tree: ast.Module, names: set[str]) -> set[int]:
    ids = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]  # A, B = ... names both
        if any(isinstance(t, ast.Name) and t.id in names for t in flat):
            ids |= {id(n) for n in ast.walk(node)}
    return ids


def inline_chinese(source: str, rel: str) -> list[tuple[int, str]]:
    """(line, literal) for each string literal with Chinese in it that is neither a docstring, a regex pattern,
    an allowed constant nor an allowed literal."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _patterns(tree) | _constants(tree, {n for f, n in ALLOWED_CONSTANTS if f == rel})
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip and CJK.search(node.value):
            if not any(f == rel and part in node.value for f, part in ALLOWED_LITERALS):
                found.append((node.lineno, node.value))
    return sorted(found)


@pytest.mark.parametrize("folder", SCANNED)
def test_no_user_facing_chinese_is_inline(folder):
    offenders = []
    for path in sorted((REPO / folder).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in ALLOWED_FILES:
            continue
        offenders += [f"{rel}:{line}: {text!r}" for line, text in inline_chinese(path.read_text(encoding="utf-8"), rel)]
    assert not offenders, "move these into prompts/messages.{zh,en}.toml (or allow-list them here, saying why):\n" + "\n".join(offenders)


def test_the_scan_catches_what_it_should():
    code = '''
"""模块说明：docstrings are fine."""
import re
YES = re.compile(r"确认|好的")
INTENTS = [("todo", r"待办")]

def reply(zh):
    """函数说明."""
    if re.search(r"巡店", "x"):
        pass
    return "已取消。" if zh else "Cancelled."

def label(zh):
    return f"对比：{zh}"
'''
    assert [t for _, t in inline_chinese(code, "bot/agent/__init__.py")] == ["已取消。", "对比："]
    assert [t for _, t in inline_chinese(code, "bot/agent/other.py")] == ["待办", "已取消。", "对比："]  # INTENTS is allowed in one file only
    assert [t for _, t in inline_chinese(code.replace("INTENTS", "WORDS"), "bot/agent/__init__.py")] == ["待办", "已取消。", "对比："]
    assert all(f.split("/")[0] in SCANNED and (REPO / f).is_file() for f in ALLOWED_FILES)
    assert [t for _, t in inline_chinese('_TRUE, _FALSE = {"是"}, {"否"}\nC = "对"', "crm/validate.py")] == ["对"]  # tuple targets
    assert all((REPO / f).is_file() and name in (REPO / f).read_text(encoding="utf-8") for f, name in ALLOWED_CONSTANTS)
    assert all((REPO / f).is_file() and part in (REPO / f).read_text(encoding="utf-8") for f, part in ALLOWED_LITERALS)
