"""Reply -> Feishu messages: interactive cards (JSON 2.0) with the answer, its sources and confirmation
buttons, or plain text where cards are off.

The card body is connectors.markup's Feishu dialect (markdown elements, tables, the sources under a rule,
spread over several cards when one would pass ~30 KB). A button's click comes back as a
`card.action.trigger` callback carrying the button's `value` ({"k": action key, "r": pending item,
"c": chat type, "l": label}), which parse.py turns into an Action; a choice that cannot be clicked (no
pending item) is offered as the typed line ("回复 1 确认 / 2 修改 / 3 取消"). In groups the answer @s the asker.
The words added are catalogue labels in the reply's language.
"""
from __future__ import annotations

from connectors.labels import Labels, label
from connectors.markup import CARD_BYTES, feishu_cards, feishu_elements, plain_parts, untagged
from connectors.message import Button, Reply

TEXT_LIMIT = 8000  # per plain-text message (Feishu takes 150 KB; shorter messages read better)
CARD_ROOM = CARD_BYTES - 3000  # for the header, the mention and the buttons
BUTTON_TYPES = {"confirm": "primary_filled", "approve": "primary_filled", "reject": "danger", "cancel": "danger"}


def cards(reply: Reply, *, chat_type: str = "p2p", mention: str = "", labels: Labels | None = None) -> list[dict]:
    """The reply as one or more cards (the first is the one a preview created); the last has the buttons."""
    clickable = [b for b in reply.buttons if b.key and b.ref]
    bodies = feishu_cards(reply, labels, buttons=len(clickable) < len(reply.buttons), limit=CARD_ROOM) or [[]]
    if mention and chat_type != "p2p":
        bodies[0].insert(0, {"tag": "markdown", "content": f"<at id={mention}></at>"})
    bodies[-1] += _buttons(clickable, chat_type)
    return [card(_title(reply, labels), body, _template(reply)) for body in bodies]


def preview_card(text: str, lang: str = "zh", labels: Labels | None = None) -> dict:
    """The card while the answer is written: the text so far (no sources yet: they are numbered at the end)."""
    body = feishu_elements(Reply(text=text, lang=lang), labels) or [{"tag": "markdown", "content": text}]
    return card(label(labels, lang, "channel_app_name"), [*body, {"tag": "markdown", "content": "▍"}], "blue")


def card(title: str, elements: list[dict], template: str = "blue") -> dict:
    return {"schema": "2.0", "config": {"update_multi": True, "summary": {"content": title}},
            "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
            "body": {"elements": elements}}


def text_messages(reply: Reply, labels: Labels | None = None) -> list[str]:
    """The plain-text fallback: citations and typed choices, split under the limit. A Feishu text message acts on
    <at user_id="all"> (everyone in the group is mentioned): text never carries one."""
    return [untagged(part) for part in plain_parts(reply, TEXT_LIMIT, "chars", labels)]


def _buttons(buttons: list[Button], chat_type: str) -> list[dict]:
    out = []
    for b in buttons:
        value = {"k": b.key, "r": b.ref, "c": "p2p" if chat_type == "p2p" else "group", "l": b.label[:40]}
        out.append({"tag": "button", "text": {"tag": "plain_text", "content": b.label[:40]}, "type": BUTTON_TYPES.get(b.key, "default"),
                    "behaviors": [{"type": "callback", "value": value}]})
    return [{"tag": "column_set", "flex_mode": "flow", "columns": [{"tag": "column", "width": "auto", "elements": [b]} for b in out]}] if out else []


def _title(reply: Reply, labels: Labels | None) -> str:
    key = {"confirm": "channel_card_confirm", "draft": "channel_card_draft"}.get(reply.kind, "channel_app_name")
    return label(labels, reply.lang, key)


def _template(reply: Reply) -> str:
    return {"confirm": "orange", "draft": "orange", "error": "red", "nudge": "turquoise"}.get(reply.kind, "blue")
