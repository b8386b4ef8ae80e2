"""Replies as DingTalk interactive cards (互动卡片高级版, the AI card): what a card holds, which card is whose, and a
click on one of its buttons.

The layout. Without `card_template_id` the card is DingTalk's public AI markdown card (BUILTIN_TEMPLATE, the one
dingtalk-stream's AIMarkdownCardInstance uses): the answer streams into `msgContent`, `flowStatus` says writing (2)
or done (3), and the buttons are `msgButtons` in `sys_full_json_obj` with `request: true` (a click is a 回传请求).
An own template from 卡片平台 (an AI card) must have: a markdown component bound to the variable named by
`card_content_key` (default `content`) with streaming (流式更新) on, the `flowStatus` variable, and its buttons either
from `sys_full_json_obj` or as a loop over the `buttons` variable (a JSON list of {text, id}) whose 回传请求 sends
`{"action": "${loop.id}"}`. Every variable is filled whatever the template uses; unknown ones are ignored.

Which card is whose (CardStore, the `dingtalk_cards` table on the copilot's database, created here like the email
connector's tables). An outTrackId is deterministic: an HMAC under the app's secret of the inbound msgId (the card an
answer streams into) or of the outbox key (a reply that was not streamed), so a retry, or another process, names the
same card, and nobody without the secret can name one. Creating is idempotent on it: DingTalk refuses an outTrackId
it has, and a refused create is retried as an update (livecards.py), so a crash between DingTalk's answer and ours
costs nothing: one card per answer, never two. The table is what the ids alone cannot give: which reply finished
which card (a retried reply updates the card it finished; the first reply of a message takes the card its answer
streamed into), each card's state (new, live, done, failed: a failed one is not tried again for that reply, it
goes out as a message), and for a click, the conversation and person the card belongs to.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, Float, MetaData, String, Table, create_engine, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from connectors.dingtalk.config import DingTalkApp
from connectors.dingtalk.parse import CHANNEL
from connectors.dingtalk.render import card_title
from connectors.labels import Labels, label
from connectors.markup import dingtalk_markdown, dingtalk_sources
from connectors.message import Action, InboundMessage, Reply, Target
from connectors.sql import insert_ignore

BUILTIN_TEMPLATE = "382e4302-551d-4880-bf29-a30acfab2e71.schema"  # DingTalk's public AI markdown card
BUILTIN_CONTENT_KEY, OWN_CONTENT_KEY = "msgContent", "content"
WRITING, DONE, FAILED = "2", "3", "5"  # the AI card's flowStatus
MAX_CARD_CHARS = 12_000  # a longer reply goes out as split markdown messages instead
ACTION_ID = re.compile(r"^(?P<key>[a-z][a-z0-9_]{0,23}):(?P<ref>[\w.:\-]{1,128})$")
CALLBACK_TOPIC = "/v1.0/card/instances/callback"

metadata = MetaData()
cards_table = Table(
    "dingtalk_cards", metadata,
    Column("out_track_id", String(80), primary_key=True),
    Column("app_key", String(64), nullable=False),
    Column("msg_id", String(200), nullable=False, index=True),  # the inbound message it answers ("" when unknown)
    Column("reply_key", String(200), nullable=True, index=True),  # the outbox key of the reply that finished it
    Column("conversation_id", String(200), nullable=False),
    Column("is_group", Boolean, nullable=False),
    Column("staff_id", String(200), nullable=False),  # who it was delivered to (one-to-one) or who asked (group)
    Column("state", String(8), nullable=False),  # new | live | done | failed
    Column("updated_at", Float, nullable=False),
)


def track_id(app: DingTalkApp, kind: str, ident: str) -> str:
    """The card's outTrackId: `kind` "stream" (ident: the inbound msgId) or "reply" (ident: the outbox key)."""
    mac = hmac.new(app.app_secret.get_secret_value().encode(), f"{kind}|{app.key}|{ident}".encode(), hashlib.sha256)
    return "cp" + mac.hexdigest()[:40]


def callback_token(app: DingTalkApp) -> str:
    """The secret part of the HTTP card callback URL registered with DingTalk (the URL is the credential)."""
    return hmac.new(app.app_secret.get_secret_value().encode(), f"card-callback|{app.key}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Card:
    out_track_id: str
    app_key: str
    msg_id: str
    reply_key: str | None
    conversation_id: str
    is_group: bool
    staff_id: str
    state: str
    updated_at: float = 0.0


class CardStore:
    """The cards made, on the copilot's database (or, without one, an in-memory SQLite). Blocking: run in a thread."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine or create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        metadata.create_all(self.engine)

    def claim(self, out_track_id: str, app_key: str, target: Target, *, msg_id: str = "",
              reply_key: str | None = None) -> tuple[Card, bool]:
        """Write the card down as `new` unless it is known: the row as it is now, and whether this call wrote it."""
        with self.engine.begin() as conn:
            res = conn.execute(insert_ignore(conn, cards_table, dict(
                out_track_id=out_track_id, app_key=app_key, msg_id=msg_id[:200], reply_key=reply_key, state="new",
                conversation_id=target.conversation_id[:200], is_group=target.is_group, updated_at=time.time(),
                staff_id=str((target.context or {}).get("senderStaffId") or target.user_id)[:200])))
        found = self.get(out_track_id)
        assert found is not None
        return found, res.rowcount == 1

    def get(self, out_track_id: str) -> Card | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(cards_table).where(cards_table.c.out_track_id == out_track_id)).first()
        return Card(**row._mapping) if row is not None else None

    def by_reply(self, reply_key: str) -> Card | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(cards_table).where(cards_table.c.reply_key == reply_key)).first()
        return Card(**row._mapping) if row is not None else None

    def take(self, out_track_id: str, reply_key: str) -> bool:
        """The reply `reply_key` finishes the streamed card, unless another reply of the message already did."""
        with self.engine.begin() as conn:
            res = conn.execute(update(cards_table).where(cards_table.c.out_track_id == out_track_id, cards_table.c.reply_key.is_(None))
                               .values(reply_key=reply_key, updated_at=time.time()))
        return res.rowcount == 1

    def mark(self, out_track_id: str, state: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(cards_table).where(cards_table.c.out_track_id == out_track_id).values(state=state, updated_at=time.time()))


# what a card holds ---------------------------------------------------------------------------------------------
def content_key(app: DingTalkApp) -> str:
    return app.card_content_key or (OWN_CONTENT_KEY if app.card_template_id else BUILTIN_CONTENT_KEY)


def card_markdown(reply: Reply, labels: Labels | None) -> str:
    """The finished card's markdown (connectors.markup's DingTalk dialect): the answer and its sources. The buttons are
    the card's own, not typed choices, unless one carries no action to call back with."""
    return dingtalk_markdown(reply, labels, buttons=any(not (b.key and b.ref) for b in reply.buttons))


def card_buttons(reply: Reply) -> list[dict]:
    return [{"text": b.label, "id": f"{b.key}:{b.ref}", "color": "blue" if i == 0 else "gray", "request": True}
            for i, b in enumerate(reply.buttons) if b.key and b.ref and ACTION_ID.match(f"{b.key}:{b.ref}")]


def card_data(app: DingTalkApp, text: str, *, status: str, reply: Reply | None = None, labels: Labels | None = None) -> dict[str, str]:
    """cardParamMap: every value a string (DingTalk's rule), lists as JSON."""
    buttons = card_buttons(reply) if reply is not None else []
    title = card_title(reply.text if reply is not None else text, label(labels, reply.lang if reply is not None else "zh", "channel_app_name"))
    full: dict[str, Any] = {"order": ["msgTitle", "msgContent", "staticMsgContent", "msgButtons"]}
    if buttons:
        full["msgButtons"] = buttons
    sources = dingtalk_sources(reply, labels) if reply is not None else ""  # also on its own, for a template with a field for it
    return {content_key(app): text, "flowStatus": status, "msgTitle": title, "title": title, "sources": sources,
            "sys_full_json_obj": json.dumps(full, ensure_ascii=False), "buttons": json.dumps(buttons, ensure_ascii=False)}


def create_body(app: DingTalkApp, out_track_id: str, target: Target, data: dict[str, str]) -> dict:
    """createAndDeliver for the robot chat with the person (IM_ROBOT.<userid>) or the group (IM_GROUP.<openConversationId>);
    clicks come back over the Stream connection (Stream mode) or to the registered HTTP callback route."""
    ctx = target.context or {}
    staff = str(ctx.get("senderStaffId") or target.user_id)
    body: dict[str, Any] = {"cardTemplateId": app.card_template_id or BUILTIN_TEMPLATE, "outTrackId": out_track_id,
                            "cardData": {"cardParamMap": data}, "userIdType": 1,
                            "callbackType": "STREAM" if app.mode == "stream" else "HTTP"}
    if app.mode != "stream":
        body["callbackRouteKey"] = route_key(app)
    if target.is_group:
        body["openSpaceId"] = f"dtv1.card//IM_GROUP.{ctx.get('openConversationId') or target.conversation_id}"
        body["imGroupOpenSpaceModel"] = {"supportForward": False}
        body["imGroupOpenDeliverModel"] = {"robotCode": app.robot_code, **({"atUserIds": {staff: str(ctx.get("senderNick") or staff)}}
                                                                          if staff else {})}
    else:
        body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{staff}"
        body["imRobotOpenSpaceModel"] = {"supportForward": False}  # a forwarded card's buttons would answer for someone else
        body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": app.robot_code}
    return body


def route_key(app: DingTalkApp) -> str:
    return f"copilot-{app.key}"


# a click ------------------------------------------------------------------------------------------------------
class NotOurs(ValueError):
    """A card callback that names no card of ours, or a click someone may not make."""


def click(data: Any, *, app: DingTalkApp, card: Card | None) -> InboundMessage:
    """A card callback (HTTP body or Stream `data`) -> an action message in the card's conversation."""
    if not isinstance(data, dict):
        raise NotOurs("a card callback must be a JSON object")
    if card is None or card.app_key != app.key:
        raise NotOurs("no card of this app has that outTrackId")
    user = str(data.get("userId") or "").strip()
    if not user or len(user) > 200:
        raise NotOurs("the callback names nobody")
    if app.corp_id and str(data.get("corpId") or "") not in ("", app.corp_id):
        raise NotOurs("the callback names another corp")
    if not card.is_group and user != card.staff_id:
        raise NotOurs("only the person a one-to-one card was sent to can click it")
    content = data.get("content")
    try:
        content = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        raise NotOurs("the callback's content is not JSON") from None
    private = (content or {}).get("cardPrivateData") if isinstance(content, dict) else None
    private = private if isinstance(private, dict) else {}
    params = private.get("params") if isinstance(private.get("params"), dict) else {}
    ids = private.get("actionIds") if isinstance(private.get("actionIds"), list) else []
    candidates = [params.get("action"), params.get("id"), *ids]
    m = next((ACTION_ID.match(c) for c in candidates if isinstance(c, str) and ACTION_ID.match(c)), None)
    if m is None:
        raise NotOurs("the click names no action of a copilot button")
    digest = hashlib.sha256(f"{card.out_track_id}|{user}|{m.group(0)}".encode()).hexdigest()[:40]
    return InboundMessage(
        channel=CHANNEL, tenant=app.tenant, conversation_id=card.conversation_id, sender_id=user, kind="action",
        action=Action(key=m["key"], ref=m["ref"]), is_group=card.is_group, platform_msg_id=f"card-{digest}",
        text=m.group(0), reply_context={"conversationType": "2" if card.is_group else "1", "openConversationId": card.conversation_id,
                                        "senderStaffId": user, "robotCode": app.robot_code, "card": card.out_track_id},
        raw={"msgtype": "cardCallback"})
