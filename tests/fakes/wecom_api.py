"""A local server that speaks the parts of the WeCom server API the connector uses.

gettoken (tokens expire; wrong corp id / secret answer 40013 / 40001), message/send (records every
message; enforces WeCom's per-member limits of 30 a minute and 1000 an hour and its duplicate check
by dropping the excess silently, as WeCom does), media/get (serves bytes, 40007 for unknown ids),
user/get, user/list, agent/get, message/update_template_card (a response_code works once).
Switches: `expire_on_next_send` (the token dies mid-send: 42001), `untrusted_ip` (60020 on every
call but gettoken, as for an app whose trusted IPs lack ours), `gettoken_delay` (to see concurrent
callers share one refresh). The bottom half is WeCom's other side: corps A and B, their members,
and callbacks encrypted with wechatpy exactly as WeCom sends them.
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

LIMIT_BYTES = 2048


@dataclass
class FakeCorp:
    corp_id: str
    secret: str
    agent_id: int
    users: list[dict] = field(default_factory=list)  # {"userid", "name", "email", "department": [1]}
    agent_name: str = "销售助手"


class FakeWeCom:
    def __init__(self, *, token_ttl: int = 7200, per_minute: int = 30, per_hour: int = 1000) -> None:
        self.corps: dict[str, FakeCorp] = {}
        self.token_ttl = token_ttl
        self.per_minute, self.per_hour = per_minute, per_hour
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (corp id, expires at)
        self.gettoken_calls: dict[str, int] = defaultdict(int)
        self.sent: list[dict] = []  # every accepted message/send body, with "corp_id"
        self.dropped: list[dict] = []  # over a member limit or duplicate: accepted, never delivered
        self.refused: list[dict] = []  # answered with an errcode
        self.media: dict[str, tuple[bytes, str, str]] = {}  # media id -> (bytes, file name, content type)
        self.card_updates: list[dict] = []  # message/update_template_card bodies (a response_code works once)
        self.expire_on_next_send = False
        self.untrusted_ip = False
        self.gettoken_delay = 0.0
        self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._recent: dict[tuple[str, str, str], float] = {}
        self._changed = asyncio.Condition()
        self.login_codes: dict[str, tuple[str, str]] = {}  # web login code -> (corp id, userid)

    def add_corp(self, corp: FakeCorp) -> FakeCorp:
        self.corps[corp.corp_id] = corp
        return corp

    def add_media(self, data: bytes, name: str, ctype: str = "application/octet-stream") -> str:
        media_id = "3" + secrets.token_urlsafe(30)
        self.media[media_id] = (data, name, ctype)
        return media_id

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.get("/cgi-bin/gettoken", self._gettoken), web.post("/cgi-bin/message/send", self._send),
            web.get("/cgi-bin/media/get", self._media), web.get("/cgi-bin/user/get", self._user_get),
            web.get("/cgi-bin/user/list", self._user_list), web.get("/cgi-bin/auth/getuserinfo", self._getuserinfo), web.get("/cgi-bin/agent/get", self._agent_get),
            web.post("/cgi-bin/message/update_template_card", self._update_card),
        ])
        return app

    async def wait_sent(self, pred: Callable[[dict], bool], n: int = 1, timeout: float = 20.0) -> list[dict]:
        """The first `n` sent messages matching `pred`, waiting up to `timeout` seconds for them."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: len([m for m in self.sent if pred(m)]) >= n), timeout)
            except asyncio.TimeoutError:
                pass
        return [m for m in self.sent if pred(m)]

    # helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _err(code: int, msg: str) -> web.Response:
        hint = f", hint: [{int(time.time())}{secrets.randbelow(10**9)}], from ip: 203.0.113.7, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
        return web.json_response({"errcode": code, "errmsg": msg + hint})

    def _auth(self, request: web.Request) -> tuple[FakeCorp | None, web.Response | None]:
        token = request.query.get("access_token")
        if not token:
            return None, self._err(41001, "access_token missing")
        found = self.tokens.get(token)
        if found is None:
            return None, self._err(40014, "invalid access_token")
        corp_id, expires = found
        if time.time() >= expires:
            return None, self._err(42001, "access_token expired")
        if self.untrusted_ip:
            return None, self._err(60020, "not allow to access from your ip")
        return self.corps[corp_id], None

    # endpoints ----------------------------------------------------------------------------------
    async def _gettoken(self, request: web.Request) -> web.Response:
        corp = self.corps.get(request.query.get("corpid", ""))
        if corp is None:
            return self._err(40013, "invalid corpid")
        if request.query.get("corpsecret") != corp.secret:
            return self._err(40001, "invalid credential")
        self.gettoken_calls[corp.corp_id] += 1
        if self.gettoken_delay:
            await asyncio.sleep(self.gettoken_delay)
        token = secrets.token_urlsafe(48)
        self.tokens[token] = (corp.corp_id, time.time() + self.token_ttl)
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl})

    async def _send(self, request: web.Request) -> web.Response:
        corp, err = self._auth(request)
        body: dict[str, Any] = await request.json()
        if err is None and self.expire_on_next_send:
            self.expire_on_next_send = False
            self.tokens[request.query["access_token"]] = (corp.corp_id, time.time() - 1)
            err = self._err(42001, "access_token expired")
        if err is None and body.get("agentid") != corp.agent_id:
            err = self._err(40056, "invalid agentid")
        msgtype = body.get("msgtype")
        if err is None and (msgtype not in ("text", "markdown", "template_card") or not isinstance(body.get(msgtype), dict)):
            err = self._err(40008, "invalid message type")
        if err is None and msgtype in ("text", "markdown") and not body[msgtype].get("content"):
            err = self._err(44004, "empty content")
        if err is not None:
            self.refused.append({**body, "errcode": json.loads(err.text)["errcode"]})
            return err
        known = {u["userid"] for u in corp.users}
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        invalid = [u for u in users if u not in known]
        record = {**body, "corp_id": corp.corp_id, "at": time.time()}
        if msgtype in ("text", "markdown"):
            raw = body[msgtype]["content"].encode("utf-8")
            record["bytes"] = len(raw)
            if len(raw) > LIMIT_BYTES:  # WeCom cuts silently: keep what a user would see
                record[msgtype] = {"content": raw[:LIMIT_BYTES].decode("utf-8", "ignore")}
                record["truncated"] = True
        async with self._changed:
            for u in users:
                if u in invalid:
                    continue
                if self._duplicate(corp.corp_id, u, body) or not self._within_limits(corp.corp_id, u):
                    self.dropped.append({**record, "touser": u})
                else:
                    self.sent.append({**record, "touser": u})
            self._changed.notify_all()
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": secrets.token_hex(16),
                                  **({"response_code": secrets.token_hex(8)} if msgtype == "template_card" else {})})

    def _duplicate(self, corp_id: str, user: str, body: dict) -> bool:
        if not body.get("enable_duplicate_check"):
            return False
        key = (corp_id, user, json.dumps({k: body.get(k) for k in ("msgtype", body.get("msgtype"))}, sort_keys=True, ensure_ascii=False))
        now, interval = time.time(), float(body.get("duplicate_check_interval", 1800))
        seen = self._recent.get(key)
        if seen is not None and now - seen < interval:
            return True
        self._recent[key] = now
        return False

    def _within_limits(self, corp_id: str, user: str) -> bool:
        window = self._windows[(corp_id, user)]
        now = time.time()
        while window and now - window[0] > 3600:
            window.popleft()
        last_minute = sum(1 for t in window if now - t < 60)
        if last_minute >= self.per_minute or len(window) >= self.per_hour:
            return False
        window.append(now)
        return True

    async def _update_card(self, request: web.Request) -> web.Response:
        corp, err = self._auth(request)
        if err is not None:
            return err
        body = await request.json()
        if any(u.get("response_code") == body.get("response_code") for u in self.card_updates):
            return self._err(40003, "invalid response_code")  # used already
        self.card_updates.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        corp, err = self._auth(request)
        if err is not None:
            return err
        item = self.media.get(request.query.get("media_id", ""))
        if item is None:
            return self._err(40007, "invalid media_id")
        data, name, ctype = item
        return web.Response(body=data, headers={"Content-Type": ctype, "Content-Disposition": f'attachment; filename="{name}"'})

    async def _user_get(self, request: web.Request) -> web.Response:
        corp, err = self._auth(request)
        if err is not None:
            return err
        for u in corp.users:
            if u["userid"] == request.query.get("userid"):
                return web.json_response({"errcode": 0, "errmsg": "ok", **u})
        return self._err(60111, "invalid string value `userid`")

    def login_code(self, corp_id: str, userid: str) -> str:
        """What WeCom's login page hands the browser after `userid` of `corp_id` scanned (valid once, 5 minutes)."""
        code = f"code-{len(self.login_codes)}-{userid}"
        self.login_codes[code] = (corp_id, userid)
        return code

    async def _getuserinfo(self, request: web.Request) -> web.Response:
        corp, err = self._auth(request)
        if err is not None:
            return err
        found = self.login_codes.pop(request.query.get("code", ""), None)
        if found is None or found[0] != corp.corp_id:
            return self._err(40029, "invalid code")
        return web.json_response({"errcode": 0, "errmsg": "ok", "userid": found[1]})

    async def _user_list(self, request: web.Request) -> web.Response:
        corp, err = self._auth(request)
        if err is not None:
            return err
        dept = int(request.query.get("department_id", "0") or 0)
        users = [u for u in corp.users if dept == 1 or dept in u.get("department", [1])]
        return web.json_response({"errcode": 0, "errmsg": "ok", "userlist": users})

    async def _agent_get(self, request: web.Request) -> web.Response:
        corp, err = self._auth(request)
        if err is not None:
            return err
        if str(corp.agent_id) != request.query.get("agentid"):
            return self._err(40056, "invalid agentid")
        return web.json_response({"errcode": 0, "errmsg": "ok", "agentid": corp.agent_id, "name": corp.agent_name,
                                  "allow_userinfos": {"user": [{"userid": u["userid"]} for u in corp.users]},
                                  "allow_partys": {"partyid": [1]}, "close": 0, "isreportenter": 1})


# WeCom's side of a callback: two corps, their members, and messages encrypted with wechatpy as WeCom sends them
A = dict(corp_id="ww6a1f0c0d2b3e0001", token="Tok1A2b3C4d", aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", agent_id=1000002, secret="secret-A")
B = dict(corp_id="ww6a1f0c0d2b3e0002", token="Tok9Z8y7X6w", aes_key="ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", agent_id=1000005, secret="secret-B")
USERS_A = [
    {"userid": "ZhangWei", "name": "张伟", "email": "zhangwei@yunfan.example.com", "department": [2]},
    {"userid": "ChenJing", "name": "陈静", "email": "chenjing@yunfan.example.com", "department": [3]},
    {"userid": "LiJun", "name": "李军", "department": [2]},
    {"userid": "Stranger", "name": "路人", "department": [9]},
    {"userid": "NewHire", "name": "新同事", "email": "newhire@yunfan.example.com", "department": [2]},
]
USERS_B = [{"userid": "ZhangWei", "name": "张伟（东区）", "department": [1]}, {"userid": "LiJun", "name": "李军（东区）", "department": [1]}]


def callback(corp: dict, xml: str, *, ts: str | None = None, nonce: str | None = None) -> tuple[dict, bytes]:
    ts = ts or str(int(time.time()))
    nonce = nonce or str(random.randrange(10**9, 10**10))
    key = base64.b64decode(corp["aes_key"] + "=")
    encrypted = PrpCrypto(key).encrypt(xml, corp["corp_id"]).decode()
    signer = WeChatSigner()
    signer.add_data(corp["token"], ts, nonce, encrypted)
    body = (f"<xml><ToUserName><![CDATA[{corp['corp_id']}]]></ToUserName><AgentID><![CDATA[{corp['agent_id']}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
    return {"msg_signature": signer.signature, "timestamp": ts, "nonce": nonce}, body


def text_xml(corp: dict, user: str, content: str, msg_id: str, create_time: int | None = None) -> str:
    return (f"<xml><ToUserName><![CDATA[{corp['corp_id']}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{corp['agent_id']}</AgentID></xml>")


def event_xml(corp: dict, user: str, event: str, create_time: int | None = None, extra: str = "") -> str:
    return (f"<xml><ToUserName><![CDATA[{corp['corp_id']}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>{extra}<AgentID>{corp['agent_id']}</AgentID></xml>")


def file_xml(corp: dict, user: str, media_id: str, name: str, msg_id: str) -> str:
    return (f"<xml><ToUserName><![CDATA[{corp['corp_id']}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[file]]></MsgType><MediaId><![CDATA[{media_id}]]></MediaId>"
            f"<FileName><![CDATA[{name}]]></FileName><MsgId>{msg_id}</MsgId><AgentID>{corp['agent_id']}</AgentID></xml>")




async def start_fake(aiohttp_server) -> FakeWeCom:
    """The fake API with corps A and B, on a loopback port (`fake.url`)."""
    fake = FakeWeCom()
    fake.add_corp(FakeCorp(A["corp_id"], A["secret"], A["agent_id"], users=[dict(u) for u in USERS_A]))
    fake.add_corp(FakeCorp(B["corp_id"], B["secret"], B["agent_id"], users=[dict(u) for u in USERS_B]))
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


def corp_settings(fake: FakeWeCom, tenant: str = "default") -> list[dict]:
    """Connector settings for A (the default corp, markdown) and B (key "east", text) against `fake`."""
    return [dict(key="default", tenant=tenant, api_base=fake.url, markdown=True, **A),
            dict(key="east", tenant="east", api_base=fake.url, markdown=False, **B)]
