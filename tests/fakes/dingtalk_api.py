"""A local DingTalk open platform for tests and the benchmark: tokens, robot sends, files, webhooks.

Endpoints and errors as DingTalk documents them: `POST /v1.0/oauth2/accessToken` (400
invalidClientIdOrSecret; tokens expire, and `expire_tokens()` revokes them early so the next call
answers 401 InvalidAuthentication), the robot sends (`oToMessages/batchSend`, `groupMessages/send`:
400 for an unknown robot code or bad parameters), `messageFiles/download` (a downloadUrl served
here), a per-message sessionWebhook (errcode 300001 once expired), `gateway/connections/open`
(a ticket for the fake Stream server) and the oapi `gettoken` / `user/*` that dingtalk-sdk calls.
Everything sent is recorded in `sent`; `outages` makes the robot send endpoints answer 503 for a while.
The interactive-card APIs (createAndDeliver, updateCardData, streaming, callback registration) are `cards`
(tests/fakes/dingtalk_cards.py).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.dingtalk_cards import FakeCards
from tests.fakes.dingtalk_stream_server import FakeStreamServer

MSG_KEYS = {"sampleText", "sampleMarkdown", "sampleActionCard", "sampleActionCard2", "sampleActionCard3",
            "sampleActionCard4", "sampleActionCard5", "sampleLink", "sampleImageMsg", "sampleFile"}


@dataclass
class FakeApp:
    app_key: str
    secret: str
    robot_code: str
    corp_id: str


@dataclass
class Sent:
    via: str  # webhook | oto | group
    app_key: str
    to: str  # staff id (oto), open conversation id (group / webhook)
    kind: str  # msgtype (webhook) or msgKey (API)
    text: str
    body: dict
    at: list[str] = field(default_factory=list)


class FakeDingTalk:
    _last_ts = 0  # the last callback timestamp handed out (ms): each request gets a later one

    def __init__(self, stream: FakeStreamServer | None = None, *, token_ttl: int = 7200) -> None:
        self.stream = stream
        self.token_ttl = token_ttl
        self.base = ""
        self.apps: dict[str, FakeApp] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (app key, expires at)
        self.token_requests: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.sessions: dict[str, tuple[str, str, float]] = {}  # session -> (app key, conversation, expires at in ms)
        self.files: dict[str, tuple[str, bytes]] = {}  # downloadCode -> (app key, bytes)
        self.urls: dict[str, bytes] = {}
        self.stream_opens = 0
        self.login_codes: dict[str, tuple[str, str]] = {}  # web login authCode -> (app key, unionId)
        self.user_tokens: dict[str, str] = {}  # a signed-in person's token -> unionId
        self.members: dict[tuple[str, str], str] = {}  # (app key, unionId) -> the member's userid in the app's corp
        self.outages: dict[str, int] = {}  # path -> how many more calls answer 503 (a DingTalk hiccup)
        self._changed = asyncio.Event()
        self.cards = FakeCards(self)

    def bind(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def add_app(self, app_key: str, secret: str, robot_code: str | None = None, corp_id: str = "dingcorp") -> FakeApp:
        self.apps[app_key] = FakeApp(app_key, secret, robot_code or app_key, corp_id)
        return self.apps[app_key]

    # test levers -----------------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        """DingTalk invalidated every token early (the client's cache still thinks they are good)."""
        self.tokens = {t: (a, 0.0) for t, (a, _) in self.tokens.items()}

    def expire_session(self, webhook_url: str) -> None:
        """DingTalk ended the session early: the webhook answers errcode 300001 though its time says valid."""
        session = webhook_url.rsplit("session=", 1)[-1]
        app_key, conv, _ = self.sessions[session]
        self.sessions[session] = (app_key, conv, 0.0)

    def add_file(self, app_key: str, data: bytes) -> str:
        code = "dc" + secrets.token_urlsafe(12)
        self.files[code] = (app_key, data)
        return code

    def message(self, app_key: str, *, sender: str, text: str = "", group: bool = False, at: bool = True,
                msg_id: str | None = None, conversation: str | None = None, nick: str = "", msgtype: str = "text",
                content: dict | None = None, webhook_ttl: float = 5400.0) -> dict:
        """A robot message as DingTalk sends it (HTTP callback body or Stream `data`)."""
        app = self.apps[app_key]
        conv = conversation or (f"cidGroup{app_key}==" if group else f"cidP2P{app_key}{sender}==")
        session = secrets.token_urlsafe(12)
        expires = time.time() * 1000 + webhook_ttl * 1000
        self.sessions[session] = (app_key, conv, expires)
        data = {
            "conversationId": conv, "conversationType": "2" if group else "1", "chatbotCorpId": app.corp_id,
            "chatbotUserId": f"$:LWCP_v1:$bot{app_key}", "msgId": msg_id or f"msg{secrets.token_hex(8)}",
            "senderNick": nick or sender, "isAdmin": False, "senderStaffId": sender, "senderId": f"$:LWCP_v1:${sender}",
            "sessionWebhookExpiredTime": int(expires), "createAt": int(time.time() * 1000), "senderCorpId": app.corp_id,
            "robotCode": app.robot_code, "msgtype": msgtype,
            "sessionWebhook": f"{self.base}/robot/sendBySession?session={session}",
        }
        if group:
            data.update(conversationTitle="华东区销售群", isInAtList=at,
                        atUsers=[{"dingtalkId": data["chatbotUserId"]}] if at else [])
        if content is not None:
            data["content"] = content
        else:
            data["text"] = {"content": (" " + text) if group and at else text}  # DingTalk leaves a space where the @ was
        return data

    @staticmethod
    def signed_headers(secret: str, timestamp_ms: int | None = None) -> dict:
        """The headers DingTalk puts on a robot callback (computed here, independently of the connector): a fresh
        timestamp per request (the sign covers only the timestamp, so the connector takes a sign once)."""
        if timestamp_ms is None:
            timestamp_ms = max(int(time.time() * 1000), FakeDingTalk._last_ts + 1)
            FakeDingTalk._last_ts = timestamp_ms
        ts = str(timestamp_ms)
        mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
        return {"timestamp": ts, "sign": base64.b64encode(mac).decode(), "Content-Type": "application/json"}

    async def wait_sent(self, n: int, timeout: float = 20.0, **match: str) -> list[Sent]:
        deadline = time.monotonic() + timeout
        while True:
            got = [s for s in self.sent if all(getattr(s, k) == v for k, v in match.items())]
            left = deadline - time.monotonic()
            if len(got) >= n or left <= 0:
                return got
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    def _record(self, sent: Sent) -> None:
        self.sent.append(sent)
        self._changed.set()

    # the server ------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.post("/v1.0/oauth2/accessToken", self._token),
            web.post("/v1.0/gateway/connections/open", self._open_stream),
            web.post("/v1.0/robot/oToMessages/batchSend", self._oto),
            web.post("/v1.0/robot/groupMessages/send", self._group),
            web.post("/v1.0/robot/messageFiles/download", self._download),
            web.get("/files/{token}", self._file),
            web.post("/robot/sendBySession", self._webhook),
            web.get("/gettoken", self._oapi_token),
            web.post("/v1.0/oauth2/userAccessToken", self._user_token), web.get("/v1.0/contact/users/me", self._me),
            web.get("/user/getUseridByUnionid", self._userid_by_unionid),
            web.get("/user/get_org_user_count", self._oapi_count),
            *self.cards.routes(),
        ])
        return app

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"code": code, "requestid": secrets.token_hex(8).upper(), "message": message}, status=status)

    async def _json(self, request: web.Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"code": "MissingBody", "message": "body is mandatory"}),
                                     content_type="application/json") from None
        return body if isinstance(body, dict) else {}

    async def _token(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        app = self.apps.get(str(body.get("appKey")))
        if app is None or body.get("appSecret") != app.secret:
            return self._error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = secrets.token_hex(16)
        self.tokens[token] = (app.app_key, time.monotonic() + self.token_ttl)
        self.token_requests[app.app_key] = self.token_requests.get(app.app_key, 0) + 1
        return web.json_response({"accessToken": token, "expireIn": self.token_ttl})

    def _auth(self, request: web.Request) -> FakeApp | web.Response:
        app_key, until = self.tokens.get(request.headers.get("x-acs-dingtalk-access-token", ""), ("", 0.0))
        if not app_key or until < time.monotonic():
            return self._error(401, "InvalidAuthentication", "不合法的access_token")
        return self.apps[app_key]

    async def _robot(self, request: web.Request) -> tuple[FakeApp, dict, dict] | web.Response:
        if self.outages.get(request.path, 0) > 0:
            self.outages[request.path] -= 1
            return self._error(503, "ServiceUnavailable", "服务暂不可用，请稍后重试")
        app = self._auth(request)
        if isinstance(app, web.Response):
            return app
        body = await self._json(request)
        if body.get("robotCode") != app.robot_code:
            return self._error(400, "resource.not.found", "robot not exist")
        if body.get("msgKey") not in MSG_KEYS:
            return self._error(400, "invalidParameter.msgKey", f"msgKey {body.get('msgKey')} 不存在")
        try:
            param = json.loads(body.get("msgParam") or "")
        except (TypeError, ValueError):
            return self._error(400, "invalidParameter.msgParam", "msgParam 不是合法的 JSON")
        return app, body, param

    async def _oto(self, request: web.Request) -> web.Response:
        got = await self._robot(request)
        if isinstance(got, web.Response):
            return got
        app, body, param = got
        users = body.get("userIds")
        if not isinstance(users, list) or not 1 <= len(users) <= 20:
            return self._error(400, "invalidParameter.userIds", "userIds 需要 1 到 20 个")
        for u in users:
            self._record(Sent("oto", app.app_key, str(u), body["msgKey"], str(param.get("text") or param.get("content") or ""), param))
        return web.json_response({"processQueryKey": secrets.token_hex(8), "invalidStaffIdList": [], "flowControlledStaffIdList": []})

    async def _group(self, request: web.Request) -> web.Response:
        got = await self._robot(request)
        if isinstance(got, web.Response):
            return got
        app, body, param = got
        if not body.get("openConversationId"):
            return self._error(400, "invalidParameter.openConversationId", "openConversationId 不能为空")
        self._record(Sent("group", app.app_key, str(body["openConversationId"]), body["msgKey"],
                          str(param.get("text") or param.get("content") or ""), param))
        return web.json_response({"processQueryKey": secrets.token_hex(8)})

    async def _download(self, request: web.Request) -> web.Response:
        app = self._auth(request)
        if isinstance(app, web.Response):
            return app
        body = await self._json(request)
        if body.get("robotCode") != app.robot_code:
            return self._error(400, "resource.not.found", "robot not exist")
        owner, data = self.files.get(str(body.get("downloadCode")), ("", b""))
        if owner != app.app_key:
            return self._error(400, "invalidParameter.downloadCode", "downloadCode 无效或已过期")
        token = secrets.token_urlsafe(16)
        self.urls[token] = data
        return web.json_response({"downloadUrl": f"{self.base}/files/{token}"})

    async def _file(self, request: web.Request) -> web.Response:
        data = self.urls.get(request.match_info["token"])
        if data is None:
            return web.Response(status=404, text="NoSuchKey")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _webhook(self, request: web.Request) -> web.Response:
        app_key, conv, expires = self.sessions.get(request.query.get("session", ""), ("", "", 0.0))
        if not app_key or expires < time.time() * 1000:
            return web.json_response({"errcode": 300001, "errmsg": "session webhook 已失效"})
        body = await self._json(request)
        kind = str(body.get("msgtype"))
        part = body.get(kind) if isinstance(body.get(kind), dict) else {}
        at = list((body.get("at") or {}).get("atUserIds") or [])
        self._record(Sent("webhook", app_key, conv, kind, str(part.get("text") or part.get("content") or ""), body, at))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _open_stream(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        app = self.apps.get(str(body.get("clientId")))
        if app is None or body.get("clientSecret") != app.secret or self.stream is None:
            return self._error(401, "authFailed", "鉴权失败")
        subs = body.get("subscriptions") or []
        if not any(isinstance(s, dict) and s.get("topic") for s in subs):
            return self._error(400, "invalidParameter.subscriptions", "subscriptions 不能为空")
        self.stream_opens += 1
        return web.json_response({"endpoint": self.stream.ws_url, "ticket": self.stream.issue_ticket(app.app_key)})

    async def _oapi_token(self, request: web.Request) -> web.Response:
        app = self.apps.get(request.query.get("appkey", ""))
        if app is None or request.query.get("appsecret") != app.secret:
            return web.json_response({"errcode": 40089, "errmsg": "不合法的appkey或appsecret"})
        token = secrets.token_hex(16)
        self.tokens[token] = (app.app_key, time.monotonic() + self.token_ttl)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl})

    def login_code(self, app_key: str, union_id: str) -> str:
        """What DingTalk's login page hands the browser (authCode) after the person `union_id` scanned (once)."""
        code = f"auth-{len(self.login_codes)}-{secrets.token_hex(4)}"
        self.login_codes[code] = (app_key, union_id)
        return code

    async def _user_token(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        app = self.apps.get(str(body.get("clientId")))
        if app is None or body.get("clientSecret") != app.secret:
            return self._error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        found = self.login_codes.pop(str(body.get("code")), None)
        if found is None or found[0] != app.app_key or body.get("grantType") != "authorization_code":
            return self._error(400, "invalidAuthCode", "无效的authCode")
        token = "u-" + secrets.token_hex(12)
        self.user_tokens[token] = found[1]
        return web.json_response({"accessToken": token, "refreshToken": secrets.token_hex(8), "expireIn": 7200, "corpId": app.corp_id})

    async def _me(self, request: web.Request) -> web.Response:
        union_id = self.user_tokens.get(request.headers.get("x-acs-dingtalk-access-token", ""))
        if union_id is None:
            return self._error(401, "InvalidAuthentication", "不合法的access_token")
        return web.json_response({"nick": union_id, "unionId": union_id, "openId": "o-" + union_id})

    async def _userid_by_unionid(self, request: web.Request) -> web.Response:
        app_key, until = self.tokens.get(request.query.get("access_token", ""), ("", 0.0))
        if not app_key or until < time.monotonic():
            return web.json_response({"errcode": 40014, "errmsg": "不合法的access_token"})
        userid = self.members.get((app_key, request.query.get("unionid", "")))
        if userid is None:
            return web.json_response({"errcode": 60121, "errmsg": "找不到该用户"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "contactType": 0, "userid": userid})

    async def _oapi_count(self, request: web.Request) -> web.Response:
        app_key, until = self.tokens.get(request.query.get("access_token", ""), ("", 0.0))
        if not app_key or until < time.monotonic():
            return web.json_response({"errcode": 40014, "errmsg": "不合法的access_token"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "count": 10})


async def serve_with_stream(aiohttp_server, *apps: tuple[str, str], **stream_options) -> FakeDingTalk:
    """A fake DingTalk and its Stream gateway, both served by pytest-aiohttp's `aiohttp_server`, with `apps`
    (app key, secret) added; `stream_options` go to FakeStreamServer (redeliver_after, max_deliveries)."""
    stream = FakeStreamServer(**stream_options)
    stream.bind(str((await aiohttp_server(stream.app())).make_url("")))
    fake = FakeDingTalk(stream)
    fake.bind(str((await aiohttp_server(fake.app())).make_url("")))
    for key, secret in apps:
        fake.add_app(key, secret)
    return fake
