"""Reply -> the message/send payloads for one WeCom reply (without touser/agentid, added by the sender).

- markdown or text, per corp (markdown renders only in the WeCom client, not in the WeChat plug-in);
- WeCom cuts text and markdown content silently past 2048 bytes: long replies are split on paragraph
  boundaries (then lines, then sentences, then characters -- never inside a UTF-8 character), each
  part numbered "(1/3)", the citations kept whole at the end;
- confirmations (Reply.buttons) get a numbered text line ("回复 1 确认 / 2 修改 / 3 取消") that works
  in every client, and a button_interaction template card whose task_id carries the pending id.
The words added (the choices line, "来源", the card's title) are catalogue labels in the reply's language.
"""
from __future__ import annotations

import hashlib
import re

from connectors.labels import Labels, label
from connectors.message import Citation, Reply
from connectors.text import fallback_line, has_fallback, has_sources, render_text, split_message, utf8_len

TEXT_LIMIT = 2048  # bytes, for text and markdown content
_MARK_RESERVE = 16  # room for the "(12/34)\n" part marker
_TASK_SAFE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Parts of at most `limit` UTF-8 bytes each, numbered when there is more than one."""
    text = text.strip()
    if utf8_len(text) <= limit:
        return [text] if text else []
    parts = split_message(text, limit - _MARK_RESERVE, utf8_len)
    n = len(parts)
    return [f"({i}/{n})\n{p}" for i, p in enumerate(parts, 1)]


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
    summary = reply.text.strip().split("\n\n")[0]
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
    """The messages to send, in order: the text (split), then the card when there are buttons."""
    if markdown:
        body = _markdown(reply, labels)
    else:
        body = render_text(reply, numbered_buttons=False, labels=labels)
    if reply.buttons and not has_fallback(body, reply.buttons, labels):  # unless the agent wrote it
        body = f"{body.rstrip()}\n\n{fallback_line(reply.buttons, reply.lang, labels)}"
    kind = "markdown" if markdown else "text"
    out = [{"msgtype": kind, kind: {"content": part}} for part in split_text(body, limit)]
    card = template_card(reply, seed, labels) if reply.buttons else None
    if card is not None:
        out.append(card)
    return out


def _markdown(reply: Reply, labels: Labels | None) -> str:
    text = (reply.markdown or reply.text).rstrip()
    if not reply.citations or has_sources(text, labels):
        return text
    lines = [f"> **{label(labels, reply.lang, 'channel_sources')}**"] + [f"> {_cite_md(c)}" for c in reply.citations]
    return text + "\n\n" + "\n".join(lines)


def _cite_md(c: Citation) -> str:
    title = c.title.replace("[", "(").replace("]", ")")
    line = f"[{c.n}] [{title}]({c.url})" if c.url else f"[{c.n}] {title}"
    if c.version:
        line += f" v{c.version}"
    if c.updated:
        line += f" ({c.updated})"
    return line
