"""A decrypted intelligent-robot callback (JSON) -> what it asks of us: a message for the inbox, a stream poll, or nothing.

What each callback becomes:
  text                      -> kind "text" (in a group, the @robot mention that brought it is stripped)
  mixed (text and images)   -> kind "text" with the images as attachments (kind "file" when it has no text)
  voice                     -> kind "text": WeCom's transcription
  image, file               -> kind "file": one Attachment whose ref names the robot and the download url
  stream                    -> a poll for the answer so far of stream `stream.id` (never stored: it asks, it says nothing)
  event template_card_event -> kind "action": Action(key=event_key, ref=the pending id in the task_id)
  event enter_chat, feedback_event and others -> nothing: acknowledged (no response_url comes with them to answer later)

Identity is `from.userid` of the signed, decrypted body, nothing else. Messages keep WeCom's msgid (WeCom resends a
callback it got no answer to with the same msgid). A message's answer is stream `stream_id(robot, msgid)`: a
resent callback gets the same stream, never a second answer. Card clicks are keyed on the user, the card and the
button, so a button tapped twice is one action.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from connectors.message import Action, Attachment, InboundMessage
from connectors.wecom.crypto import BadPayload, BadSignature
from connectors.wecom.render import ref_of_task
from connectors.wecom.robot_config import RobotConfig

CHANNEL = "wecom"  # the same people as the app's: their WeCom userid, linked once in the directory
MAX_TEXT = 8000
_USER = re.compile(r"^[\w.@\-]{1,64}$")
_ID = re.compile(r"^[\w+/=\-.:@]{1,128}$")
_URL = re.compile(r"^https?://[^\s]{1,2000}$")
_MENTION = re.compile(r"^\s*@\S+\s*")


@dataclass(frozen=True)
class Callback:
    kind: Literal["message", "poll", "ignore"]
    msg: InboundMessage | None = None
    stream_id: str = ""  # poll: the stream asked about; message: the stream that answers it ("" when none does)
    response_url: str = ""


def stream_id(robot: str, msgid: str) -> str:
    """The stream that answers message `msgid`: the same for every delivery of it, in every process."""
    return "s" + hashlib.sha256(f"{robot}\x1f{msgid}".encode()).hexdigest()[:31]


def parse(f: dict[str, Any], robot: RobotConfig) -> Callback:
    aibotid = _s(f, "aibotid")
    if robot.robot_id and aibotid and aibotid != robot.robot_id:
        raise BadSignature(f"callback for robot {aibotid[:64]!r}, not this one")
    msg_type = _s(f, "msgtype")
    if msg_type == "stream":
        sid = _s(_d(f, "stream"), "id")
        if not _ID.match(sid):
            raise BadPayload("stream poll without a usable stream.id")
        return Callback("poll", stream_id=sid)
    sender = _s(_d(f, "from"), "userid")
    if not _USER.match(sender):
        raise BadPayload("from.userid is missing or malformed")
    msgid = _s(f, "msgid")
    if not _ID.match(msgid):
        raise BadPayload("msgid is missing or malformed")
    group = _s(f, "chattype") == "group"
    chat = _s(f, "chatid")
    if group and not _ID.match(chat):
        raise BadPayload("a group callback without a usable chatid")
    url = _s(f, "response_url")
    url = url if _URL.match(url) and robot.response_url_ok(url) else ""  # the reply is POSTed there: WeCom's host only
    context = {"robot": robot.key, "chat": chat if group else "", "response_url": url}
    base: dict[str, Any] = dict(channel=CHANNEL, tenant=robot.tenant, sender_id=sender, is_group=group,
                                conversation_id=f"robot:{robot.key}:g:{chat}" if group else f"robot:{robot.key}:{sender}",
                                raw={"msgtype": msg_type, "aibotid": aibotid, "chattype": _s(f, "chattype")})
    if msg_type == "event":
        return _event(f, sender, url, context, base)
    sid = stream_id(robot.key, msgid)
    text, attachments = _content(f, msg_type, robot, msgid)
    mentions: tuple[str, ...] = ()
    if group and text:
        text, mentions = _strip_mention(text, robot.name)
    kind = "file" if attachments and not text else "text"
    msg = InboundMessage(platform_msg_id=msgid, text=text[:MAX_TEXT], kind=kind, attachments=attachments, mentions=mentions,
                         reply_context={**context, "stream": sid}, **base)
    return Callback("message", msg, stream_id=sid, response_url=url)


def _content(f: dict[str, Any], msg_type: str, robot: RobotConfig, msgid: str) -> tuple[str, tuple[Attachment, ...]]:
    if msg_type == "text":
        return _s(_d(f, "text"), "content"), ()
    if msg_type == "voice":
        return _s(_d(f, "voice"), "content"), ()
    if msg_type in ("image", "file"):
        return "", (_attachment(robot, msg_type, _s(_d(f, msg_type), "url"), msgid, 0),)
    if msg_type == "mixed":
        items = _d(f, "mixed").get("msg_item")
        texts, files = [], []
        for i, item in enumerate(items[:20] if isinstance(items, list) else []):
            kind = _s(item, "msgtype") if isinstance(item, dict) else ""
            if kind == "text":
                texts.append(_s(_d(item, "text"), "content"))
            elif kind == "image":
                files.append(_attachment(robot, "image", _s(_d(item, "image"), "url"), msgid, i))
        return "\n".join(t for t in texts if t), tuple(files)
    return "", ()  # what WeCom adds later: an empty text gets the "please send text" note


def _attachment(robot: RobotConfig, kind: str, url: str, msgid: str, n: int) -> Attachment:
    if not _URL.match(url):
        raise BadPayload(f"{kind} without a usable url")
    tag = hashlib.sha256(f"{msgid}\x1f{n}".encode()).hexdigest()[:12]
    name = f"image-{tag}.jpg" if kind == "image" else f"file-{tag}"
    return Attachment(name=name, mime="image/jpeg" if kind == "image" else "application/octet-stream", ref=f"robot:{robot.key}|{url}")


def _event(f: dict[str, Any], sender: str, url: str, context: dict, base: dict[str, Any]) -> Callback:
    event = _d(f, "event")
    if _s(event, "eventtype") != "template_card_event":
        return Callback("ignore")  # enter_chat, feedback_event...: nothing to answer later with
    card = _d(event, "template_card_event")
    task, key = _s(card, "task_id"), _s(card, "event_key")
    ref = ref_of_task(task)
    if not key or not ref:
        raise BadPayload("template_card_event without event_key or a task_id of ours")
    digest = hashlib.sha256(f"{sender}\x1f{task}\x1f{key}".encode()).hexdigest()[:40]
    msg = InboundMessage(platform_msg_id="card:" + digest, kind="action", action=Action(key=key, ref=ref),
                         reply_context=context, **{**base, "raw": {**base["raw"], "task_id": task}})
    return Callback("message", msg, response_url=url)


def _strip_mention(text: str, name: str) -> tuple[str, tuple[str, ...]]:
    """In a group the robot hears only what @-mentions it: take the mention out of the question."""
    if name and f"@{name}" in text:
        return re.sub(rf"@{re.escape(name)}\s*", "", text).strip(), (name,)
    m = _MENTION.match(text)
    if m is None:
        return text.strip(), ()
    return text[m.end():].strip(), (m.group(0).strip()[1:],)


def _d(f: Any, key: str) -> dict[str, Any]:
    v = f.get(key) if isinstance(f, dict) else None
    return v if isinstance(v, dict) else {}


def _s(f: Any, key: str) -> str:
    v = f.get(key, "") if isinstance(f, dict) else ""
    return v if isinstance(v, str) else ""
