"""The words a channel adds around a reply (the typed choices, "来源", a stale warning, a card's title) are
catalogue labels in the reply's language, handed to the connectors by the factory."""
from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from bot.prompts import Prompts
from bot.settings import PROMPTS_DIR
from connectors.dingtalk.render import render as dingtalk_render
from connectors.labels import label, shipped
from connectors.message import Button, Citation, Reply, Target
from connectors.text import has_fallback, render_text
from connectors.wecom.render import render as wecom_render

REPO = Path(__file__).resolve().parents[2]
BUTTONS = [Button(key="confirm", label="Confirm", ref="p1", reply="1"), Button(key="reject", label="Cancel", ref="p1", reply="3")]
CITED = [Citation(n=1, doc_id="bc", title="Battlecard: Xingtu", version="3", updated="2026-07-01", url="https://kb/bc", stale_days=120)]


def test_an_english_reply_gets_english_labels_everywhere():
    reply = Reply(text="Log this visit?", kind="confirm", buttons=BUTTONS, lang="en")
    assert render_text(reply).endswith("Reply 1 Confirm / 3 Cancel")
    text, card = wecom_render(reply, markdown=False, seed="s")
    assert text["text"]["content"].endswith("Reply 1 Confirm / 3 Cancel")
    assert card["template_card"]["main_title"]["title"] == "Please confirm"
    assert card["template_card"]["source"]["desc"] == "Sales Copilot"
    draft = wecom_render(reply.model_copy(update={"kind": "draft"}), markdown=True, seed="s")[-1]
    assert draft["template_card"]["main_title"]["title"] == "Draft to approve"
    answer = Reply(text="Xingtu takes about 5 months. [1]", citations=CITED, lang="en")
    assert "> **Sources**" in wecom_render(answer, markdown=True, seed="s")[0]["markdown"]["content"]
    [part] = dingtalk_render(answer, group=False)
    assert "**Sources**" in part.webhook["markdown"]["text"] and "⚠ not updated for 120 days" in part.webhook["markdown"]["text"]


def test_a_chinese_reply_keeps_the_old_words():
    reply = Reply(text="要写入吗？", kind="confirm", buttons=[Button(key="confirm", label="确认", ref="p1", reply="1")])
    assert reply.lang == "zh" and render_text(reply).endswith("回复 1 确认")
    card = wecom_render(reply, markdown=False, seed="s")[-1]["template_card"]
    assert (card["main_title"]["title"], card["source"]["desc"]) == ("请确认", "销售助手")
    [part] = dingtalk_render(Reply(text="星图约 5 个月。[1]", citations=CITED), group=False)
    assert "**来源**" in part.webhook["markdown"]["text"] and "⚠ 120 天未更新" in part.webhook["markdown"]["text"]


def test_a_line_the_agent_wrote_itself_is_recognised_in_either_language():
    assert has_fallback("Reply 1 to confirm", BUTTONS) and has_fallback("回复 1 确认", BUTTONS) and not has_fallback("OK?", BUTTONS)
    listed = Reply(text="Answer [1]\nSources: Battlecard", citations=CITED, lang="en")
    assert render_text(listed) == listed.text  # its own list of sources is not repeated


def test_the_deployments_catalogue_reaches_the_connectors(tmp_path, make_settings):
    """A deployment's own catalogue (COPILOT_PROMPTS_DIR) words what the channels add: through ChannelContext
    for the connectors and through Channels for the text fallback."""
    from bot.app import channel_context
    from bot.pipeline.channels import Channels

    folder = tmp_path / "prompts"
    folder.mkdir()
    for lang in ("zh", "en"):
        text = (PROMPTS_DIR / f"messages.{lang}.toml").read_text(encoding="utf-8")
        folder.joinpath(f"messages.{lang}.toml").write_text(text.replace('channel_reply_choices = "回复 {choices}"', 'channel_reply_choices = "请回复 {choices}"')
                                                            .replace('channel_reply_choices = "Reply {choices}"', 'channel_reply_choices = "Answer {choices}"'),
                                                            encoding="utf-8")
    labels = Prompts(folder).labels("channel_")
    assert labels["zh"]["channel_reply_choices"] == "请回复 {choices}" and all(k.startswith("channel_") for k in labels["en"])
    ctx = channel_context(make_settings(prompts_dir=str(folder)), "wecom")
    assert ctx.labels == labels
    reply = Reply(text="Log it?", buttons=BUTTONS, lang="en")
    assert wecom_render(reply, markdown=False, seed="s", labels=ctx.labels)[0]["text"]["content"].endswith("Answer 1 Confirm / 3 Cancel")

    class TextOnly:
        name, text_limit, text_unit = "plain", 2000, "chars"

        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_text(self, target: Target, text: str, key: str) -> None:
            self.sent.append(text)

    plain = TextOnly()
    asyncio.run(Channels([plain], labels=labels).send(Target(channel="plain", conversation_id="c"), reply.model_copy(update={"lang": "zh"}), "k"))
    assert plain.sent == ["Log it?\n\n请回复 1 Confirm / 3 Cancel"]


def test_every_label_the_connectors_use_is_in_both_catalogues():
    used = set()
    for path in (REPO / "connectors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("channel_") and node.value != "channel_":
                used.add(node.value)
    assert {"channel_reply_choices", "channel_sources", "channel_stale", "channel_card_done", "channel_app_name"} <= used
    for lang in ("zh", "en"):
        assert used <= set(shipped()[lang]), f"{lang}: {sorted(used - set(shipped()[lang]))}"
    assert label(None, "fr", "channel_sources") == "来源" and label(None, "en", "channel_sources") == "Sources"
