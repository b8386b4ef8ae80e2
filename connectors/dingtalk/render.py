"""Reply -> DingTalk messages: markdown with citations, confirmations as ActionCard buttons.

The markdown is connectors.markup's DingTalk dialect (single newlines as hard breaks, lists kept,
tables one line per row), split under MAX_CHARS never inside a link, a row or a citation.

Each part is rendered twice: as a session-webhook body (`msgtype`) and as a robot-API template
(`msgKey` + `msgParam`), because the connector picks the route only at send time. A button sends
the user's click back as a chat message (`dtmd://dingtalkclient/sendMessage`), which parse.py
reads as an action. In groups the robot only hears messages that @ it, so a click there would be
lost: group confirmations are markdown with the typed fallback ("回复 1 确认 / 2 修改 / 3 取消").
The words added are catalogue labels (connectors/labels.py) in the reply's language.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from connectors.dingtalk.parse import click_text
from connectors.labels import Labels, label
from connectors.markup import dingtalk_markdown, dingtalk_parts, dingtalk_sources
from connectors.message import Button, Reply

MAX_CHARS = 3800  # per message; longer replies are split between paragraphs
MAX_BUTTONS = 5  # sampleActionCard2..5 on the robot API


@dataclass(frozen=True)
class Part:
    webhook: dict  # body for the sessionWebhook
    msg_key: str  # robot API template
    param: dict  # robot API msgParam


def render(reply: Reply, *, group: bool, staff_id: str = "", nick: str = "", labels: Labels | None = None) -> list[Part]:
    # the answer, its sources, the typed choices (unless the text has them), cut under the limit
    chunks = dingtalk_parts(reply, MAX_CHARS, labels) or [""]
    title = card_title(reply.text, label(labels, reply.lang, "channel_app_name"))
    parts = []
    for i, text in enumerate(chunks):
        last = i == len(chunks) - 1
        mention = group and i == 0  # in groups the answer always @s the asker
        webhook_text = f"@{staff_id} {text}" if mention and staff_id else text
        api_text = f"@{nick or staff_id} {text}" if mention and (nick or staff_id) else text
        if last and reply.buttons and not group and len(reply.buttons) <= MAX_BUTTONS:
            parts.append(_card(title, text, reply.buttons))
            continue
        webhook = {"msgtype": "markdown", "markdown": {"title": title, "text": webhook_text}}
        if mention and staff_id:
            webhook["at"] = {"atUserIds": [staff_id], "isAtAll": False}
        parts.append(Part(webhook, "sampleMarkdown", {"title": title, "text": api_text}))
    return parts


def action_url(button: Button, index: int) -> str:
    content = click_text(button.label, button.key, button.ref) if button.key and button.ref else (button.reply or str(index + 1))
    return "dtmd://dingtalkclient/sendMessage?content=" + quote(content, safe="")


def _card(title: str, text: str, buttons: list[Button]) -> Part:
    btns = [{"title": b.label, "actionURL": action_url(b, i)} for i, b in enumerate(buttons)]
    webhook = {"msgtype": "actionCard", "actionCard": {"title": title, "text": text, "btnOrientation": "0", "btns": btns}}
    if len(btns) == 1:
        return Part(webhook, "sampleActionCard", {"title": title, "text": text, "singleTitle": btns[0]["title"],
                                                  "singleURL": btns[0]["actionURL"]})
    param: dict = {"title": title, "text": text}
    for n, b in enumerate(btns, 1):
        param[f"actionTitle{n}"], param[f"actionURL{n}"] = b["title"], b["actionURL"]
    return Part(webhook, f"sampleActionCard{len(btns)}", param)


def _markdown_body(reply: Reply, labels: Labels | None = None) -> str:
    """The answer alone in DingTalk markdown (no sources, no typed choices)."""
    return dingtalk_markdown(reply, labels, buttons=False, sources=False)


def _citations(reply: Reply, labels: Labels | None) -> str:
    """The sources in DingTalk markdown ("**来源**", "[1] [title](url) v3 (2026-11-10)"), "" when none or the text lists them."""
    return dingtalk_sources(reply, labels)


def card_title(text: str, default: str) -> str:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), default)
    first = re.sub(r"[*#>`\[\]]", "", first)
    return first[:24] or default
