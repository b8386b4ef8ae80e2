"""Reply -> DingTalk messages: markdown with citations, confirmations as ActionCard buttons.

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
from connectors.message import Button, Reply
from connectors.text import fallback_line, has_fallback, has_sources, split_message

MAX_CHARS = 3800  # per message; longer replies are split between paragraphs
MAX_BUTTONS = 5  # sampleActionCard2..5 on the robot API


@dataclass(frozen=True)
class Part:
    webhook: dict  # body for the sessionWebhook
    msg_key: str  # robot API template
    param: dict  # robot API msgParam


def render(reply: Reply, *, group: bool, staff_id: str = "", nick: str = "", labels: Labels | None = None) -> list[Part]:
    chunks = split_message(_markdown_body(reply), MAX_CHARS)
    tail = _citations(reply, labels)
    if reply.buttons and not has_fallback(reply.text, reply.buttons, labels):  # unless the text has it
        tail += ("\n\n" if tail else "") + fallback_line(reply.buttons, reply.lang, labels)
    if tail:
        if len(chunks[-1]) + len(tail) + 2 > MAX_CHARS:
            chunks.append(tail)
        else:
            chunks[-1] = f"{chunks[-1]}\n\n{tail}" if chunks[-1] else tail
    title = _title(reply.text, label(labels, reply.lang, "channel_app_name"))
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


def _markdown_body(reply: Reply) -> str:
    if reply.markdown.strip():
        return reply.markdown.strip()
    # DingTalk markdown joins single newlines: make each one a hard line break
    return "\n".join(line.rstrip() + "  " if line.strip() else "" for line in reply.text.strip().split("\n")).strip()


def _citations(reply: Reply, labels: Labels | None) -> str:
    if not reply.citations or has_sources(reply.text, labels):
        return ""
    lines = [f"**{label(labels, reply.lang, 'channel_sources')}**"]
    for c in reply.citations:
        name = f"[{c.title}]({c.url})" if c.url else c.title
        line = f"[{c.n}] {name}" + (f" v{c.version}" if c.version else "") + (f" · {c.updated}" if c.updated else "")
        if c.stale_days:
            line += " · " + label(labels, reply.lang, "channel_stale", days=c.stale_days)
        lines.append(line)
    return "  \n".join(lines)


def _title(text: str, default: str) -> str:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), default)
    first = re.sub(r"[*#>`\[\]]", "", first)
    return first[:24] or default
