"""A local Feishu (飞书) open platform for tests: tenant tokens, messages, card updates, files, sign-in, the long connection.

Endpoints and answers as Feishu documents them: `POST /open-apis/auth/v3/tenant_access_token/internal` (code 10014
for a wrong secret; `expire_tokens()` revokes tokens early, so the next call answers 99991663), the bot's
`/open-apis/bot/v3/info`, message create (`?receive_id_type=`) and reply, each deduplicated on its `uuid` as Feishu
does (the same uuid again returns the first message, sends nothing), `PATCH /open-apis/im/v1/messages/:id` (a card
update: only an interactive message of this app, only a shared card; every update recorded), message resources
(a file sent in a chat, by message id, key and type), the authen v2 token and v1 user_info of the web sign-in, and
`POST /callback/ws/endpoint` with the websocket that speaks lark-oapi's own protobuf `Frame` (pbbp2): pings are
answered with a pong carrying the ClientConfig, events go out as data frames and the client's answers are recorded.

It also writes the events Feishu sends: `message_event`, `card_event`, encrypted with the app's Encrypt Key
(`encrypt`) and signed (`signed_headers`), and delivers them to the copilot's callback with Feishu's retries (`deliver`).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from Crypto.Cipher import AES
from lark_oapi.ws.const import HEADER_MESSAGE_ID, HEADER_SEQ, HEADER_SUM, HEADER_TRACE_ID, HEADER_TYPE
from lark_oapi.ws.enum import FrameType, MessageType
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

BOT_OPEN_ID = "ou_bot0000000000000000000000000001"
TENANT_KEY = "tenantkey0001"


@dataclass
class FakeApp:
    app_id: str
    secret: str
    encrypt_key: str
    token: str  # the verification token


@dataclass
class Sent:
    via: str  # reply | create
    app_id: str
    to: str  # the message replied to, or the receive id
    msg_type: str
    content: dict
    uuid: str
    message_id: str
    updates: list[dict] = field(default_factory=list)  # the card as each PATCH left it
    update_times: list[float] = field(default_factory=list)
    created_at: float = field(default_factory=time.monotonic)

    @property
    def card(self) -> dict:
        return self.updates[-1] if self.updates else self.content

    def text(self) -> str:
        """What the reader sees, as text: a text message's text, a card's markdown elements and buttons."""
        if self.msg_type == "text":
            return self.content["text"]
        return card_text(self.card)


def card_text(card: dict) -> str:
    out = []
    for el in card.get("body", {}).get("elements", []):
        if el.get("tag") == "markdown":
            out.append(el["content"])
        elif el.get("tag") == "column_set":
            out += [b["text"]["content"] for col in el["columns"] for b in col["elements"] if b.get("tag") == "button"]
    return "\n".join(out)


class FakeFeishu:
    def __init__(self) -> None:
        self.base = ""
        self.apps: dict[str, FakeApp] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (app id, expires at)
        self.token_requests: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.by_uuid: dict[tuple[str, str], Sent] = {}
        self.messages: dict[str, Sent] = {}
        self.files: dict[tuple[str, str], tuple[str, bytes]] = {}  # (message id, file key) -> (type, bytes)
        self.users: dict[str, dict] = {}  # open_id -> {union_id, user_id, name, tenant_key}
        self.login_codes: dict[str, tuple[str, str, str]] = {}  # code -> (app id, open_id, redirect_uri)
        self.user_tokens: dict[str, str] = {}
        self.ws: dict[str, list[web.WebSocketResponse]] = {}  # app id -> open connections
        self.ws_opened: dict[str, int] = {}
        self.answers: dict[str, dict] = {}  # data frame message id -> the client's answer payload
        self.on_answer = None  # called with the message id when an answer arrives (before it is recorded)
        self.pings = 0
        self._changed = asyncio.Event()

    def bind(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def add_app(self, app_id: str, secret: str, encrypt_key: str = "", token: str = "") -> FakeApp:
        self.apps[app_id] = FakeApp(app_id, secret, encrypt_key or "ek-" + secrets.token_hex(8), token or "vt-" + secrets.token_hex(8))
        return self.apps[app_id]

    def add_user(self, open_id: str, user_id: str, name: str, tenant_key: str = TENANT_KEY) -> None:
        self.users[open_id] = {"open_id": open_id, "union_id": "on_" + open_id[3:], "user_id": user_id, "name": name, "tenant_key": tenant_key}

    def expire_tokens(self) -> None:
        self.tokens = {t: (a, 0.0) for t, (a, _) in self.tokens.items()}

    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, check, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while not (got := check()):
            if time.monotonic() > deadline:
                return got
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=0.2)
            except asyncio.TimeoutError:
                pass
        return got

    async def wait_sent(self, n: int, timeout: float = 20.0) -> list[Sent]:
        await self.wait(lambda: len(self.sent) >= n, timeout)
        return list(self.sent)

    # events Feishu sends ---------------------------------------------------------------------------------
    def message_event(self, app_id: str, *, sender: str, text: str = "", chat_type: str = "p2p", chat_id: str = "",
                      message_id: str = "", msg_type: str = "text", content: dict | None = None, mention_bot: bool = False,
                      others: tuple[tuple[str, str], ...] = (), event_id: str = "") -> dict:
        """An im.message.receive_v1 event; `mention_bot` puts the bot's @ (`@_user_1`) in front of the text, `others` are
        mentioned as @_user_2, @_user_3... (write those placeholders into `text`)."""
        mentions, prefix = [], ""
        for i, (open_id, name) in enumerate(([(BOT_OPEN_ID, "销售助手")] if mention_bot else []) + list(others), 1):
            mentions.append({"key": f"@_user_{i}", "id": {"open_id": open_id, "union_id": "on_x", "user_id": ""}, "name": name,
                             "tenant_key": TENANT_KEY})
            if mention_bot and i == 1:
                prefix = "@_user_1 "  # others' placeholders stand where the caller wrote them in `text`
        user = self.users.get(sender, {})
        message_id = message_id or "om_" + secrets.token_hex(12)
        chat_id = chat_id or ("oc_group000000000000000000000001" if chat_type == "group" else "oc_p2p" + sender[-20:])
        return {"schema": "2.0",
                "header": {"event_id": event_id or secrets.token_hex(16), "event_type": "im.message.receive_v1", "create_time": str(int(time.time() * 1000)),
                           "token": self.apps[app_id].token, "app_id": app_id, "tenant_key": TENANT_KEY},
                "event": {"sender": {"sender_id": {"open_id": sender, "union_id": user.get("union_id", ""), "user_id": user.get("user_id", "")},
                                     "sender_type": "user", "tenant_key": TENANT_KEY},
                          "message": {"message_id": message_id, "create_time": str(int(time.time() * 1000)), "chat_id": chat_id,
                                      "chat_type": chat_type, "message_type": msg_type, "mentions": mentions or None,
                                      "content": json.dumps(content if content is not None else {"text": prefix + text}, ensure_ascii=False)}}}

    def card_event(self, app_id: str, *, operator: str, value: dict, card_message_id: str, chat_id: str) -> dict:
        """A card.action.trigger callback: `operator` clicked a button whose callback value is `value`."""
        user = self.users.get(operator, {})
        return {"schema": "2.0",
                "header": {"event_id": secrets.token_hex(16), "event_type": "card.action.trigger", "create_time": str(int(time.time() * 1000)),
                           "token": self.apps[app_id].token, "app_id": app_id, "tenant_key": TENANT_KEY},
                "event": {"operator": {"tenant_key": TENANT_KEY, "open_id": operator, "union_id": user.get("union_id", ""),
                                       "user_id": user.get("user_id", "")},
                          "token": "c-" + secrets.token_hex(8), "action": {"value": value, "tag": "button"}, "host": "im_message",
                          "context": {"open_message_id": card_message_id, "open_chat_id": chat_id}}}

    @staticmethod
    def encrypt(event: dict, encrypt_key: str) -> bytes:
        """The HTTP body Feishu posts when an Encrypt Key is set: {"encrypt": base64(iv + AES-256-CBC(json))}."""
        plain = json.dumps(event, ensure_ascii=False).encode()
        pad = 16 - len(plain) % 16
        iv = secrets.token_bytes(16)
        ct = AES.new(hashlib.sha256(encrypt_key.encode()).digest(), AES.MODE_CBC, iv).encrypt(plain + bytes([pad]) * pad)
        return json.dumps({"encrypt": base64.b64encode(iv + ct).decode()}).encode()

    @staticmethod
    def signed_headers(body: bytes, encrypt_key: str, timestamp: int | None = None, nonce: str | None = None) -> dict:
        ts, nonce = str(int(time.time()) if timestamp is None else timestamp), nonce or secrets.token_hex(8)
        sig = hashlib.sha256((ts + nonce + encrypt_key).encode() + body).hexdigest()
        return {"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": sig, "Content-Type": "application/json"}

    def request(self, app_id: str, event: dict, **kw) -> tuple[bytes, dict]:
        """(body, headers) of one delivery of `event`, encrypted and signed; each delivery is signed afresh."""
        app = self.apps[app_id]
        body = self.encrypt(event, app.encrypt_key)
        return body, self.signed_headers(body, app.encrypt_key, **kw)

    async def deliver(self, url: str, app_id: str, event: dict, *, attempts: int = 1, pause: float = 0.05) -> list[int]:
        """POST `event` to the copilot's callback `url` as Feishu does: encrypted, signed afresh for every attempt, and
        delivered again (up to `attempts` times) while the answer is not a 200. The statuses, in order."""
        import aiohttp

        statuses: list[int] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(attempts):
                body, headers = self.request(app_id, event)
                async with http.post(url, data=body, headers=headers) as r:
                    statuses.append(r.status)
                if r.status == 200:
                    break
                await asyncio.sleep(pause)
        return statuses

    def add_file(self, message_id: str, kind: str, data: bytes) -> str:
        key = f"{'file' if kind == 'file' else 'img'}_v3_" + secrets.token_hex(8)
        self.files[(message_id, key)] = (kind, data)
        return key

    def login_code(self, app_id: str, open_id: str, redirect_uri: str = "") -> str:
        """The code Feishu's authorize page hands back for `open_id`; the exchange must repeat `redirect_uri` (RFC 6749 4.1.3)."""
        code = secrets.token_hex(16)
        self.login_codes[code] = (app_id, open_id, redirect_uri)
        return code

    # the API ---------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        a = web.Application()
        a.add_routes([
            web.post("/open-apis/auth/v3/tenant_access_token/internal", self._token),
            web.get("/open-apis/bot/v3/info", self._bot),
            web.post("/open-apis/im/v1/messages", self._create),
            web.post("/open-apis/im/v1/messages/{mid}/reply", self._reply),
            web.patch("/open-apis/im/v1/messages/{mid}", self._patch),
            web.get("/open-apis/im/v1/messages/{mid}/resources/{key}", self._resource),
            web.post("/open-apis/authen/v2/oauth/token", self._user_token),
            web.get("/open-apis/authen/v1/user_info", self._user_info),
            web.post("/callback/ws/endpoint", self._ws_endpoint),
            web.get("/ws", self._ws),
        ])
        return a

    @staticmethod
    def _err(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _caller(self, request: web.Request) -> str | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        app_id, until = self.tokens.get(token, ("", 0.0))
        return app_id if app_id and until > time.time() else None

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        app = self.apps.get(str(body.get("app_id")))
        if app is None or body.get("app_secret") != app.secret:
            return self._err(10014, "app secret invalid")
        self.token_requests[app.app_id] = self.token_requests.get(app.app_id, 0) + 1
        token = "t-" + secrets.token_hex(16)
        self.tokens[token] = (app.app_id, time.time() + 7200)
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200})

    async def _bot(self, request: web.Request) -> web.Response:
        if self._caller(request) is None:
            return self._err(99991663, "Invalid access token for authorization. Please make a request with token attached.")
        return web.json_response({"code": 0, "msg": "ok", "bot": {"activate_status": 2, "app_name": "销售助手", "open_id": BOT_OPEN_ID}})

    async def _send(self, request: web.Request, via: str, to: str) -> web.Response:
        app_id = self._caller(request)
        if app_id is None:
            return self._err(99991663, "Invalid access token for authorization.")
        body = await request.json()
        msg_type, uuid = str(body.get("msg_type") or ""), str(body.get("uuid") or "")
        if msg_type not in ("text", "interactive", "post") or len(uuid) > 50:
            return self._err(230001, "invalid msg_type or uuid")
        try:
            content = json.loads(body.get("content"))
        except (TypeError, ValueError):
            return self._err(230001, "content is not a JSON string")
        if msg_type == "interactive" and not isinstance(content.get("body", {}).get("elements"), list):
            return self._err(230099, "Failed to create card content")
        if uuid and (app_id, uuid) in self.by_uuid:  # Feishu's idempotency: the same uuid is one message
            return web.json_response({"code": 0, "msg": "success", "data": {"message_id": self.by_uuid[(app_id, uuid)].message_id}})
        sent = Sent(via, app_id, to, msg_type, content, uuid, "om_" + secrets.token_hex(12))
        self.sent.append(sent)
        self.messages[sent.message_id] = sent
        if uuid:
            self.by_uuid[(app_id, uuid)] = sent
        self._changed_now()
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": sent.message_id, "msg_type": msg_type}})

    async def _create(self, request: web.Request) -> web.Response:
        if request.query.get("receive_id_type") not in ("open_id", "user_id", "union_id", "email", "chat_id"):
            return self._err(99992402, "field validation failed: receive_id_type")
        body = await request.json()
        return await self._send(request, "create", str(body.get("receive_id") or ""))

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._send(request, "reply", request.match_info["mid"])

    async def _patch(self, request: web.Request) -> web.Response:
        app_id = self._caller(request)
        if app_id is None:
            return self._err(99991663, "Invalid access token for authorization.")
        sent = self.messages.get(request.match_info["mid"])
        if sent is None or sent.app_id != app_id or sent.msg_type != "interactive":
            return self._err(230011, "The message was not found or is not a card of this app")
        card = json.loads((await request.json())["content"])
        if not card.get("config", {}).get("update_multi"):
            return self._err(230099, "only a shared card (update_multi) can be updated")
        sent.updates.append(card)
        sent.update_times.append(time.monotonic())
        self._changed_now()
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        if self._caller(request) is None:
            return self._err(99991663, "Invalid access token for authorization.")
        found = self.files.get((request.match_info["mid"], request.match_info["key"]))
        if found is None or found[0] != request.query.get("type"):
            return self._err(234003, "File not in msg.")
        return web.Response(body=found[1], content_type="application/octet-stream")

    async def _user_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        found = self.login_codes.pop(str(body.get("code")), None)
        app = self.apps.get(str(body.get("client_id")))
        if found is None or app is None or body.get("client_secret") != app.secret or found[0] != app.app_id or \
                (found[2] and body.get("redirect_uri") != found[2]):
            return web.json_response({"code": 20003, "error": "invalid_grant", "error_description": "the code is invalid or used"}, status=400)
        token = "u-" + secrets.token_hex(16)
        self.user_tokens[token] = found[1]
        return web.json_response({"code": 0, "access_token": token, "expires_in": 7200, "token_type": "Bearer", "scope": ""})

    async def _user_info(self, request: web.Request) -> web.Response:
        open_id = self.user_tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if open_id is None:
            return self._err(99991668, "Invalid access token")
        user = self.users.get(open_id, {"open_id": open_id, "union_id": "", "user_id": "", "name": "?", "tenant_key": "other-tenant"})
        return web.json_response({"code": 0, "msg": "success", "data": {**user, "avatar_url": ""}})

    # the long connection ----------------------------------------------------------------------------------
    async def _ws_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        app = self.apps.get(str(body.get("AppID")))
        if app is None or body.get("AppSecret") != app.secret:
            return web.json_response({"code": 403, "msg": "app id or secret is wrong"})
        ws = self.base.replace("http", "ws", 1) + f"/ws?device_id={secrets.token_hex(6)}&service_id=7&app={app.app_id}"
        return web.json_response({"code": 0, "msg": "ok", "data": {"URL": ws, "ClientConfig": {
            "ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 1, "PingInterval": 120}}})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        app_id = request.query.get("app", "")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws.setdefault(app_id, []).append(ws)
        self.ws_opened[app_id] = self.ws_opened.get(app_id, 0) + 1
        self._changed_now()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                frame = Frame()
                frame.ParseFromString(msg.data)
                headers = {h.key: h.value for h in frame.headers}
                if frame.method == FrameType.CONTROL.value and headers.get(HEADER_TYPE) == MessageType.PING.value:
                    self.pings += 1
                    pong = Frame(service=frame.service, method=FrameType.CONTROL.value, SeqID=0, LogID=0,
                                 payload=json.dumps({"PingInterval": 120}).encode())
                    h = pong.headers.add()
                    h.key, h.value = HEADER_TYPE, MessageType.PONG.value
                    await ws.send_bytes(pong.SerializeToString())
                elif frame.method == FrameType.DATA.value:
                    mid = headers.get(HEADER_MESSAGE_ID, "")
                    if self.on_answer is not None:
                        self.on_answer(mid)
                    self.answers[mid] = json.loads(frame.payload)
                    self._changed_now()
        finally:
            self.ws[app_id].remove(ws)
        return ws

    async def push(self, app_id: str, event: dict, *, kind: str = MessageType.EVENT.value, parts: int = 1) -> str:
        """Send `event` over the app's open connection (in `parts` frames, as Feishu splits large payloads)."""
        [ws] = self.ws[app_id]
        mid = secrets.token_hex(8)
        payload = json.dumps(event, ensure_ascii=False).encode()
        size = -(-len(payload) // parts)
        for seq in range(parts):
            frame = Frame(SeqID=seq, LogID=0, service=7, method=FrameType.DATA.value, payload=payload[seq * size:(seq + 1) * size])
            for k, v in ((HEADER_TYPE, kind), (HEADER_MESSAGE_ID, mid), (HEADER_SUM, str(parts)), (HEADER_SEQ, str(seq)),
                         (HEADER_TRACE_ID, secrets.token_hex(4))):
                h = frame.headers.add()
                h.key, h.value = k, v
            await ws.send_bytes(frame.SerializeToString())
        return mid

    async def answered(self, mid: str, timeout: float = 20.0) -> dict | None:
        return await self.wait(lambda: self.answers.get(mid), timeout)

    async def drop(self, app_id: str) -> None:
        for ws in list(self.ws.get(app_id, [])):
            await ws.close()
