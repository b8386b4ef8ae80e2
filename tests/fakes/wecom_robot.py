"""WeCom's side of an intelligent robot (智能机器人, API mode), speaking the real protocol to the copilot's callback URL.

Callbacks are JSON `{"encrypt": ...}` encrypted with wechatpy exactly as WeCom does (AES-256-CBC with the robot's
EncodingAESKey, receive id ""), signed with its Token (msg_signature over token, timestamp, nonce, encrypt);
answers are decrypted after their `msgsignature` is checked, as WeCom does before it shows anything. `send` posts a
callback (`message`, `click`), `poll` asks for a stream as WeCom does after a stream answer, and `RobotServer` is
the rest of WeCom a robot talks to: the response_url endpoint (one POST per url, a second one gets an errcode;
what it was sent is kept) and the downloads of files users sent (AES-encrypted with the robot's key).
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
from typing import Any

from aiohttp import web
from wechatpy.crypto.base import WeChatCipher
from wechatpy.crypto.pkcs7 import PKCS7Encoder
from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

ROBOT = dict(token="RobTok1A2b3C", aes_key="0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", robot_id="aib-sales-0001", name="销售助手")
LATE = dict(token="RobTok9Z8y7X", aes_key="GFEDCBAzyxwvutsrqponmlkjihgfedcba9876543210", robot_id="aib-late-0002", name="销售助手")


def sign(token: str, ts: str, nonce: str, data: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, ts, nonce, data)
    return signer.signature


class RobotServer:
    """WeCom's response_url endpoint (one POST per url, within its life: an hour) and its file downloads."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, bytes] = {}  # name -> encrypted bytes
        self.posts: list[dict] = []  # {"code", "body"}
        self.refused: list[dict] = []
        self.fail_next = 0  # answer HTTP 502 to this many posts (WeCom having a bad moment)
        self._used: set[str] = set()
        self._changed = asyncio.Condition()

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/cgi-bin/aibot/response", self._post), web.get("/file/{name}", self._file)])
        return app

    def add_file(self, data: bytes, aes_key: str) -> str:
        """The url a message carries for `data`: served encrypted as WeCom does (AES-256-CBC, PKCS#7 to 32 bytes)."""
        key = base64.b64decode(aes_key + "=")
        name = secrets.token_hex(8)
        self.files[name] = WeChatCipher(key).encrypt(PKCS7Encoder.encode(data))
        return f"{self.base}/file/{name}"

    async def _file(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["name"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    def url(self) -> str:
        return f"{self.base}/cgi-bin/aibot/response?response_code={secrets.token_hex(12)}"

    async def _post(self, request: web.Request) -> web.Response:
        code = request.query.get("response_code", "")
        body = await request.json()
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=502, text="bad gateway")
        if code in self._used:
            self.refused.append({"code": code, "body": body})
            return web.json_response({"errcode": 600039, "errmsg": "response_code used"})
        self._used.add(code)
        async with self._changed:
            self.posts.append({"code": code, "body": body})
            self._changed.notify_all()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def wait(self, n: int = 1, timeout: float = 20.0) -> list[dict]:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: len(self.posts) >= n), timeout)
            except asyncio.TimeoutError:
                pass
        return list(self.posts)


class FakeRobot:
    """One robot's callbacks into the copilot (`client`: an aiohttp test client of the gateway)."""

    def __init__(self, client, robot: dict, path: str) -> None:
        self.client, self.robot, self.path = client, robot, path
        self.key = base64.b64decode(robot["aes_key"] + "=")

    def encrypt(self, payload: dict[str, Any] | str, *, ts: str | None = None, nonce: str | None = None) -> tuple[dict, bytes]:
        ts = ts or str(int(time.time()))
        nonce = nonce or str(random.randrange(10**9, 10**10))
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        encrypted = PrpCrypto(self.key).encrypt(text, "").decode()
        params = {"msg_signature": sign(self.robot["token"], ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
        return params, json.dumps({"encrypt": encrypted}).encode()

    def decrypt(self, answer: dict[str, str]) -> dict:
        assert answer["msgsignature"] == sign(self.robot["token"], answer["timestamp"], answer["nonce"], answer["encrypt"])
        return json.loads(PrpCrypto(self.key).decrypt(answer["encrypt"], ""))

    async def verify(self, echo: str, *, token: str | None = None):
        ts, nonce = str(int(time.time())), "1372623149"
        echostr = PrpCrypto(self.key).encrypt(echo, "").decode()
        params = {"msg_signature": sign(token or self.robot["token"], ts, nonce, echostr), "timestamp": ts, "nonce": nonce, "echostr": echostr}
        return await self.client.get(self.path, params=params)

    async def send(self, payload: dict[str, Any], **kw) -> tuple[int, dict | None]:
        """POST one callback; (status, the decrypted answer or None when the answer is empty)."""
        params, body = self.encrypt(payload, **kw)
        r = await self.client.post(self.path, params=params, data=body, headers={"Content-Type": "application/json"})
        text = await r.text()
        return r.status, (self.decrypt(json.loads(text)) if r.status == 200 and text else None)

    def message(self, user: str, text: str, msgid: str, *, chat: str = "", response_url: str = "") -> dict:
        return {"msgid": msgid, "aibotid": self.robot["robot_id"], "chatid": chat, "chattype": "group" if chat else "single",
                "from": {"userid": user}, "response_url": response_url, "msgtype": "text", "text": {"content": text}}

    def click(self, user: str, task_id: str, key: str, *, response_url: str = "") -> dict:
        return {"msgid": secrets.token_urlsafe(16), "create_time": int(time.time()), "aibotid": self.robot["robot_id"], "chatid": "",
                "chattype": "single", "from": {"userid": user}, "response_url": response_url, "msgtype": "event",
                "event": {"eventtype": "template_card_event",
                          "template_card_event": {"card_type": "button_interaction", "event_key": key, "task_id": task_id}}}

    async def poll(self, user: str, stream: str, chat: str = "") -> dict:
        """WeCom's refresh of a stream: the copilot's answer so far."""
        status, answer = await self.send({"msgid": secrets.token_urlsafe(16), "aibotid": self.robot["robot_id"], "chatid": chat,
                                          "chattype": "group" if chat else "single", "from": {"userid": user},
                                          "msgtype": "stream", "stream": {"id": stream}})
        assert status == 200 and answer is not None, status
        return answer

    async def poll_until_finished(self, user: str, stream: str, *, chat: str = "", every: float = 0.1, timeout: float = 25.0) -> list[dict]:
        """Every poll's answer, until one finishes the stream (WeCom polls for six minutes; tests for `timeout`)."""
        seen, until = [], time.monotonic() + timeout
        while time.monotonic() < until:
            answer = await self.poll(user, stream, chat)
            seen.append(answer)
            if answer["stream"]["finish"]:
                return seen
            await asyncio.sleep(every)
        raise AssertionError(f"stream {stream} did not finish in {timeout} s: {seen[-1:]}")
