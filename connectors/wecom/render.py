"""Reply -> the message/send payloads for one WeCom reply (without touser/agentid, added by the sender).

- markdown or text, per corp (markdown renders only in the WeCom client, not in the WeChat plug-in),
  both rendered by connectors.markup: WeCom markdown has no lists or tables, so lists are plain
  "• " / "1. " lines and tables one line per row; the sources a grey quote with links;
- WeCom cuts text and markdown content silently past 2048 bytes: long replies are split on paragraph
  boundaries (then lines, then sentences, then characters -- never inside a UTF-8 character, a link,
  a table row or a citation), each part numbered "(1/3)";
- confirmations (Reply.buttons) get a numbered text line ("回复 1 确认 / 2 修改 / 3 取消") that works
  in every client, and a button_interaction template card whose task_id carries the pending id.
The words added (the choices line, "来源", the card's title) are catalogue labels in the reply's language.
"""
from __future__ import annotations

import hashlib
import re

from connectors.labels import Labels, label
from connectors.markup import plain_text, split, utf8_len, wecom_parts
from connectors.message import Reply
from connectors.text import fallback_line

TEXT_LIMIT = 2048  # bytes, for text and markdown content
_TASK_SAFE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Parts of at most `limit` UTF-8 bytes each, numbered when there is more than one."""
    return split(text, limit, utf8_len, numbered=True)


# confirmations -------------------------------------------------------------------------------
def task_id(ref: str, seed: str) -> str | None:
    """A card's task_id: unique per app, only [A-Za-z0-9_-@], at most 128 bytes; carries `ref` back."""
    tag = hashlib.sha256(seed.encode()).hexdigest()[:12]
    if _TASK_SAFE.match(ref):
        return f"p-{ref}@{tag}"
    hexed = ref.encode().hex()
    return f"h-{hexed}@{tag}" if 0 < len(hexed) <= 110 else None


def ref_of_task(task: str) -> str:
    """The pending id a card's task_id was made from ("" when it is not one of ours)."""
    body, sep, _ = task.rpartition("@")
    if not sep or len(task) > 128:
        return ""
    if body.startswith("p-") and _TASK_SAFE.match(body[2:]):
        return body[2:]
    if body.startswith("h-"):
        try:
            return bytes.fromhex(body[2:]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""


def template_card(reply: Reply, seed: str, labels: Labels | None = None) -> dict | None:
    buttons = reply.buttons[:6]
    refs = {b.ref for b in buttons}
    keys = [b.key for b in buttons]
    if not buttons or len(refs) != 1 or "" in refs or len(set(keys)) != len(keys):
        return None  # a card carries one pending item and distinct keys; the text line still works
    tid = task_id(refs.pop(), seed)
    if tid is None:
        return None
    title = label(labels, reply.lang, "channel_card_draft" if reply.kind == "draft" else "channel_card_confirm")
    summary = plain_text(reply, labels, buttons=False).split("\n\n")[0]  # a card shows no Markdown
    if len(summary) > 150:
        summary = summary[:149] + "…"
    return {"msgtype": "template_card", "template_card": {
        "card_type": "button_interaction",
        "source": {"desc": label(labels, reply.lang, "channel_app_name")},
        "main_title": {"title": title, "desc": fallback_line(buttons, reply.lang, labels)[:44]},
        "sub_title_text": summary,
        "task_id": tid,
        "button_list": [{"text": b.label[:10], "style": 1 if i == 0 else 2, "key": b.key} for i, b in enumerate(buttons)],
    }}


# the whole reply -------------------------------------------------------------------------------
def render(reply: Reply, *, markdown: bool, seed: str, limit: int = TEXT_LIMIT, labels: Labels | None = None) -> list[dict]:
    """The messages to send, in order: the text (split, the typed line for buttons at its end), then the
    card when there are buttons."""
    kind = "markdown" if markdown else "text"
    out = [{"msgtype": kind, kind: {"content": part}} for part in wecom_parts(reply, markdown=markdown, limit=limit, labels=labels)]
    card = template_card(reply, seed, labels) if reply.buttons else None
    if card is not None:
        out.append(card)
    return out
