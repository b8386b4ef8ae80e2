"""WeCom intelligent robots (智能机器人, API mode) beside the self-built app: GET/POST /wecom/robot/{key}/callback.

A user message (one-to-one, or an @-mention in a group) is checked (signature, timestamp, size), decrypted,
parsed, put in the durable inbox, and only then answered -- with an encrypted, still empty stream
(`{"msgtype": "stream", "stream": {"id", "finish": false}}`). WeCom then polls that stream; each poll shows the
answer so far (the Previewer writes it to the stream table while the model writes), and once the outbox has
delivered the reply (`send`) the next poll shows it whole (markdown, citations; an approval also gets its
button card) with finish true. The stream id comes from the msgid, so a resent callback is the same stream.
WeCom polls for six minutes: a reply delivered later, or one no poll came for, goes to the message's
`response_url` (one POST, within an hour). A card click comes back as an action whose answer goes there too; the
click's own answer replaces the card with a notice without buttons, so it is not clicked again.

The robot cannot start a conversation: nudges and digests go through the self-built app (connectors/wecom/
connector.py), and so does a reply with no stream or response_url left, in a one-to-one chat.
Imports the channel core and its own modules.
"""
from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

import aiohttp
from aiohttp import web
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from connectors.channel import Check, SendError, Sink
from connectors.config import ConfigProblem
from connectors.http import PooledSession, read_capped
from connectors.labels import Labels, label
from connectors.live import Preview, Previews
from connectors.markup import untagged
from connectors.message import Attachment, InboundMessage, Reply, Target
from connectors.wecom.config import CorpConfig
from connectors.wecom.connector import WeComConnector
from connectors.wecom.crypto import BadSignature, CallbackRejected, check_query
from connectors.wecom.render import render
from connectors.wecom.robot_config import RobotConfig
from connectors.wecom.robot_crypto import RobotCrypto
from connectors.wecom.robot_parse import parse, stream_id
from connectors.wecom.robot_streams import Shown, StreamStore

log = logging.getLogger("copilot.wecom.robot")
WINDOW = 300  # seconds: a callback's timestamp must be this close to now
STREAM_LIMIT = 20480  # bytes of a stream's content
PREVIEW_EVERY = 0.2  # seconds: the answer so far is written at most this often per stream (WeCom polls less often)


class WeComRobots:
    def __init__(self, robots: list[RobotConfig], *, problems: list[ConfigProblem] | None = None, engine: Engine | None = None,
                 labels: Labels | None = None, public_url: str = "", max_body: int = 64 * 1024, max_file: int = 20 * 1024 * 1024,
                 timeout: float = 10.0) -> None:
        self.robots = {r.key: r for r in robots}
        self.problems = list(problems or [])
        self.crypto = {r.key: RobotCrypto(r.token.get_secret_value(), r.aes_key.get_secret_value()) for r in robots}
        memory = engine is None  # one process and no database handed over: the streams live in memory
        if engine is None:
            engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        self.store = StreamStore(engine, one_connection=memory)
        self.labels = labels
        self.public_url = public_url.rstrip("/")
        self.max_body, self.max_file, self.timeout = max_body, max_file, timeout
        self._http = PooledSession()
        self._sweeper: asyncio.Task | None = None
        # the answer so far: one database write per PREVIEW_EVERY per stream, the newest text, not one per piece streamed
        self.previews = Previews(self._keep_preview, log=log, keep=1000)

    def serves(self, target: Target) -> bool:
        return str((target.context or {}).get("robot", "")) in self.robots

    # receive ---------------------------------------------------------------------------------
    def routes(self, sink: Sink) -> list[web.RouteDef]:
        async def verify(request: web.Request) -> web.Response:
            robot, crypto = self._robot(request)
            try:
                sig, ts, nonce = self._signed(request)
                return web.Response(text=crypto.verify_url(sig, ts, nonce, request.query.get("echostr", "").replace(" ", "+")))
            except CallbackRejected as exc:
                raise self._refuse(robot, request, "URL verification", exc) from None

        async def receive(request: web.Request) -> web.StreamResponse:
            robot, crypto = self._robot(request)
            try:
                sig, ts, nonce = self._signed(request)
                body = await self._read(request)
                cb = parse(crypto.decrypt(body, sig, ts, nonce), robot)
            except CallbackRejected as exc:
                raise self._refuse(robot, request, "callback", exc) from None
            if cb.kind == "poll":
                shown = await asyncio.to_thread(self.store.poll, cb.stream_id, robot.key)
                return self._answer(crypto, nonce, cb.stream_id, shown or Shown("", True))  # a stream not ours: ended
            if cb.kind == "ignore" or cb.msg is None:
                return web.Response(text="")
            if cb.stream_id:  # before the message is stored: its reply may be delivered before this request ends
                await asyncio.to_thread(self.store.open, cb.stream_id, robot.key, robot.tenant, cb.response_url)
            await sink(cb.msg)  # durable before we answer; Throttled propagates (429) and WeCom sends it again
            if cb.msg.action is not None:  # a card click: its answer goes to its response_url; the card is settled now
                return web.json_response(crypto.encrypt(self._settled(cb.msg), str(int(time.time())), nonce))
            if not cb.stream_id:
                return web.Response(text="")
            return self._answer(crypto, nonce, cb.stream_id, await asyncio.to_thread(self.store.poll, cb.stream_id, robot.key) or Shown("", False))

        return [web.get("/wecom/robot/{robot}/callback", verify), web.post("/wecom/robot/{robot}/callback", receive)]

    def _answer(self, crypto: RobotCrypto, nonce: str, sid: str, shown: Shown) -> web.Response:
        payload: dict = {"msgtype": "stream", "stream": {"id": sid, "finish": shown.finish, "content": _cap(shown.content)}}
        if shown.finish and shown.card:
            payload = {**payload, "msgtype": "stream_with_template_card", "template_card": shown.card}
        return web.json_response(crypto.encrypt(payload, str(int(time.time())), nonce))

    def _settled(self, msg: InboundMessage) -> dict:
        """The clicked card replaced, for the one who clicked, by a notice without buttons: it cannot be clicked again."""
        task = str((msg.raw or {}).get("task_id", ""))
        return {"response_type": "update_template_card", "userids": [msg.sender_id], "template_card": {
            "card_type": "text_notice", "task_id": task,
            "source": {"desc": label(self.labels, "zh", "channel_app_name")},
            "main_title": {"title": label(self.labels, "zh", "channel_card_done")},
            "card_action": {"type": 1, "url": self.public_url or "https://work.weixin.qq.com"}}}

    def _robot(self, request: web.Request) -> tuple[RobotConfig, RobotCrypto]:
        key = request.match_info.get("robot", "")
        robot = self.robots.get(key)
        if robot is None:
            if any(p.account == key for p in self.problems):
                log.error("wecom robot %s: callback refused, the robot is misconfigured", key)
                raise web.HTTPServiceUnavailable(text=f"WeCom robot {key!r} is misconfigured; run `copilot doctor`")
            raise web.HTTPNotFound(text=f"no WeCom robot {key!r} is configured here")
        return robot, self.crypto[key]

    @staticmethod
    def _signed(request: web.Request) -> tuple[str, str, str]:
        """The callback's (msg_signature, timestamp, nonce), its timestamp within WINDOW of now (else BadSignature)."""
        q = request.query
        sig, ts, nonce = check_query(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"))
        if abs(time.time() - int(ts)) > WINDOW:
            raise BadSignature(f"timestamp is more than {WINDOW} s from now: a stale or replayed callback")
        return sig, ts, nonce

    @staticmethod
    def _refuse(robot: RobotConfig, request: web.Request, what: str, exc: CallbackRejected) -> web.HTTPException:
        log.warning("wecom robot %s: %s refused from %s: %s", robot.key, what, request.remote, exc)
        if isinstance(exc, BadSignature):
            return web.HTTPForbidden(text=f"signature check failed: {exc}")
        return web.HTTPBadRequest(text=str(exc))

    async def _read(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=request.content_length)
        buf = bytearray()
        while chunk := await request.content.read(16384):
            buf += chunk
            if len(buf) > self.max_body:
                raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=len(buf))
        return bytes(buf)

    # send --------------------------------------------------------------------------------------
    def preview(self, target: Target, text: str) -> None:
        """The answer so far, for the stream's next poll (called from a worker thread)."""
        sid = str((target.context or {}).get("stream", ""))
        if sid and self.serves(target):  # the model's raw Markdown: no <font> it wrote is acted on
            self.previews.offer(sid, _cap(untagged(text)), PREVIEW_EVERY)

    async def _keep_preview(self, preview: Preview, text: str) -> bool:
        """Write the answer so far (the stream's finished answer, once delivered, is never covered by it)."""
        try:
            await asyncio.to_thread(self.store.preview, preview.key, text)
        except Exception as exc:  # a preview is a courtesy; the error's text would carry the answer's
            log.warning("wecom robot: the answer so far of stream %s was not kept: %s", preview.key, type(exc).__name__)
        return True

    async def send(self, target: Target, reply: Reply, key: str) -> bool:
        """Deliver through the stream, else the response_url; False when neither is left."""
        ctx = target.context or {}
        robot = self.robots[str(ctx["robot"])]
        md, card = self.render(reply, key)
        sid = str(ctx.get("stream", ""))
        if sid and await asyncio.to_thread(self.store.deliver, sid, key, md, card, robot.stream_seconds):
            return True
        url = str(ctx.get("response_url", ""))
        if not url or not robot.response_url_ok(url):  # parse keeps only WeCom's; a row stored before may hold another
            return False
        if not sid:  # a card click's response_url: one POST, whichever process delivers
            sid = stream_id(robot.key, "url:" + url)
            await asyncio.to_thread(self.store.open, sid, robot.key, target.tenant, url)
        if not await asyncio.to_thread(self.store.claim_url, sid):
            return False
        await self._post(sid, url, md)
        return True

    def render(self, reply: Reply, key: str) -> tuple[str, dict | None]:
        """The reply as the robot shows it: markdown with its citations (and the typed choices), and its card."""
        parts = render(reply, markdown=True, seed=key, limit=STREAM_LIMIT, labels=self.labels)
        md = "\n\n".join(p["markdown"]["content"] for p in parts if p["msgtype"] == "markdown")
        card = next((p["template_card"] for p in parts if p["msgtype"] == "template_card"), None)
        return md, card

    async def _post(self, sid: str, url: str, md: str) -> None:
        """One POST of markdown on a response_url (it takes one)."""
        body = {"msgtype": "markdown", "markdown": {"content": _cap(md)}}
        try:
            async with self._http().post(url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout), allow_redirects=False) as r:
                data = await r.json(content_type=None) if r.status == 200 else {}
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            await asyncio.to_thread(self.store.settle_url, sid, False)
            raise SendError(f"response_url: {type(exc).__name__}") from None
        code = data.get("errcode") if isinstance(data, dict) else None
        if status >= 500 or status == 429:
            await asyncio.to_thread(self.store.settle_url, sid, False)
            raise SendError(f"response_url answered HTTP {status}")
        await asyncio.to_thread(self.store.settle_url, sid, True)
        if status != 200 or code not in (0, None):  # expired (an hour) or used: trying again cannot help
            raise SendError(f"response_url refused the reply (HTTP {status}, errcode {code})", retryable=False)

    async def fetch(self, attachment: Attachment) -> bytes:
        """An image or file a user sent: downloaded from its url and decrypted with the robot's key."""
        key, _, url = attachment.ref.removeprefix("robot:").partition("|")
        if key not in self.crypto or not self.robots[key].file_url_ok(url):  # a url of the body: WeCom's file hosts only
            raise LookupError(f"not a file of a configured robot on WeCom's file hosts: {attachment.name}")
        async with self._http().get(url, timeout=aiohttp.ClientTimeout(total=60), allow_redirects=False) as r:
            if r.status != 200:
                raise LookupError(f"the file's url answered HTTP {r.status} (it is valid for a few minutes only)")
            encrypted = await read_capped(r, self.max_file + 32, ValueError(f"file larger than {self.max_file} bytes"))
        return self.crypto[key].media(encrypted)

    # the answers nobody polled for --------------------------------------------------------------
    async def start(self) -> None:
        self.previews.bind(asyncio.get_running_loop())
        for p in self.problems:
            log.error("wecom robot %s is not running: %s", p.account, p)
        if self.robots and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        every = min(r.sweep_seconds for r in self.robots.values())
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception:
                log.exception("wecom robot: pushing unpolled answers to response_url failed; trying again later")

    async def sweep(self) -> int:
        """Answers delivered to a stream that WeCom stopped polling before showing them: to their response_url."""
        pushed = 0
        for robot in self.robots.values():
            for o in await asyncio.to_thread(self.store.overdue, robot.key, robot.stream_seconds):
                if robot.response_url_ok(o.response_url) and await asyncio.to_thread(partial(self.store.claim_url, o.stream_id, unshown=True)):
                    try:
                        await self._post(o.stream_id, o.response_url, o.content)
                        pushed += 1
                    except SendError as exc:
                        log.warning("wecom robot %s: answer of stream %s not pushed: %s", robot.key, o.stream_id, exc)
        return pushed

    # operations ---------------------------------------------------------------------------------
    async def doctor(self, app_for) -> list[Check]:
        """`app_for(tenant)`: whether a self-built app reaches that tenant's people (the robot cannot start a conversation)."""
        checks = [p.check("WeCom robot") for p in self.problems]
        for r in self.robots.values():
            label = f"WeCom robot {r.key}"
            checks.append(Check(f"{label}: settings", True, f"callback URL {self.public_url}{r.path}, tenant {r.tenant}, "
                                                            f"robot id {r.robot_id or '(any: set robot_id to refuse other robots)'}"))
            if app_for(r.tenant):
                checks.append(Check(f"{label}: nudges", True, "nudges and digests go through the self-built app"))
            else:
                checks.append(Check(f"{label}: nudges", False, f"no self-built app serves tenant {r.tenant}: the robot answers, but "
                                    "cannot start a conversation, so nobody gets nudges or digests on WeCom",
                                    "configure the self-built app too (docs/wecom.md, section 1)"))
        return checks

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
        await self.previews.aclose()
        await self._http.aclose()


def _cap(text: str) -> str:
    raw = text.encode("utf-8")
    return text if len(raw) <= STREAM_LIMIT else raw[:STREAM_LIMIT - 3].decode("utf-8", "ignore") + "…"


class WeComChannel(WeComConnector):
    """The "wecom" channel when robots are configured: the self-built app (every corp, proactive sends) plus the
    robots (the conversations people start with them). Both reach the same people: their WeCom userid."""

    def __init__(self, corps: list[CorpConfig], robots: WeComRobots, **kw) -> None:
        super().__init__(corps, **kw)
        self.robots = robots

    def routes(self, sink: Sink) -> list[web.RouteDef]:
        return super().routes(sink) + self.robots.routes(sink)

    async def start(self, sink: Sink) -> None:
        await super().start(sink)
        await self.robots.start()

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        if not self.robots.serves(target):
            await super().send(target, reply, key)
            return
        if await self.robots.send(target, reply, key):
            return
        if not target.is_group and self.corp_for(target.tenant) is not None:  # the app reaches them one-to-one
            await super().send(target.model_copy(update={"context": {}}), reply, key)
            return
        raise SendError("the robot's stream and response_url are both used up or expired, and no self-built app reaches "
                        "this chat", retryable=False)

    def preview(self, target: Target, text: str) -> None:
        self.robots.preview(target, text)

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        if attachment.ref.startswith("robot:"):
            return await self.robots.fetch(attachment)
        return await super().fetch(tenant, attachment)

    async def doctor(self) -> list[Check]:
        return await super().doctor() + await self.robots.doctor(lambda tenant: self.signs_in(tenant))

    async def aclose(self) -> None:
        await self.robots.aclose()
        await super().aclose()
