"""The Feishu connector: a bot's messages and card clicks from one or more apps, over HTTP event callbacks
or the long connection.

Both modes end in the same place: (HTTP: decrypt, check the signature, the token and the timestamp window)
parse, `await sink(msg)`, and only then acknowledge (HTTP: the 200; long connection: the frame's answer).
Replies are interactive cards (or text), sent as a reply to the message they answer with an idempotency
`uuid` drawn from the reply's key; an answer being written is shown on one card that the finished answer
updates (live.py). Each app is its own tenant, with its own token, route and connection.
Imports only the channel core and its own modules.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import urlencode, urlparse

from aiohttp import web
from sqlalchemy.engine import Engine

from connectors.cache import SharedClaims, TokenCache
from connectors.channel import Check, SendError, SignInRefused, Sink
from connectors.config import ConfigProblem
from connectors.feishu.cards import Card, CardStore
from connectors.feishu.client import CARD_INVALID, MESSAGE_GONE, FeishuAPIError, FeishuClient
from connectors.feishu.config import FeishuApp
from connectors.feishu.crypto import LARK_REQUEST_SIGNATURE, MAX_BODY, MAX_SKEW, URL_VERIFICATION, SignatureError, decrypt, verify, verify_token
from connectors.feishu.live import LiveCards, uuid_for
from connectors.feishu.parse import CARD_EVENT, CHANNEL, MESSAGE_EVENT, ForeignTenant, PayloadError, event_type, parse
from connectors.feishu.render import TEXT_LIMIT, cards, text_messages
from connectors.feishu.stream import LongConnection
from connectors.labels import Labels
from connectors.message import Attachment, InboundMessage, Reply, Target
from connectors.replay import SeenSignatures

log = logging.getLogger("copilot.feishu")
CONSOLE = "开发者后台 (open.feishu.cn/app) → your app"


async def _read(request: web.Request) -> bytes:
    """The whole body, refused past MAX_BODY as it arrives (`read(n)` alone returns only what has arrived so far)."""
    buf = bytearray()
    while chunk := await request.content.read(65536):
        buf += chunk
        if len(buf) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(buf))
    return bytes(buf)


class FeishuConnector:
    name = CHANNEL
    text_limit, text_unit = TEXT_LIMIT, "chars"

    def __init__(self, apps: list[FeishuApp], problems: list[ConfigProblem] | None = None, *, public_url: str = "",
                 max_download: int = 25 * 1024 * 1024, labels: Labels | None = None, engine: Engine | None = None,
                 ws_options: dict[str, Any] | None = None, tokens: TokenCache | None = None, claims: SharedClaims | None = None) -> None:
        self.apps = {a.key: a for a in apps}
        self.by_tenant = {a.tenant: a for a in apps}
        self.problems = list(problems or [])
        self.clients = {a.key: FeishuClient(a, tokens=tokens) for a in apps}
        self.receivers: dict[str, LongConnection] = {}
        self.public_url = public_url.rstrip("/")
        self.max_download = max_download
        self.labels = labels  # the words it adds (connectors/labels.py); None: the shipped catalogue's
        self.ws_options = ws_options or {}
        # signed requests already stored, shared by every process through the database (connectors/replay.py): the
        # signature covers the body, so the same signature again is the same request again (a replay or a retry)
        self.seen = SeenSignatures(MAX_SKEW, engine=engine, shared=claims)
        self.live = LiveCards(CardStore(engine), labels)
        self._redirects: OrderedDict[str, str] = OrderedDict()  # sign-in state -> the redirect_uri it was started with

    # web sign-in (飞书登录) ------------------------------------------------------------------------------------
    label = "signin_with_feishu"

    def signs_in(self, tenant: str) -> bool:
        return tenant in self.by_tenant

    def signin_url(self, tenant: str, state: str, redirect_uri: str) -> str:
        app = self.by_tenant[tenant]
        self._redirects[state] = redirect_uri
        while len(self._redirects) > 10_000:
            self._redirects.popitem(last=False)
        query = {"client_id": app.app_id, "redirect_uri": redirect_uri, "response_type": "code", "state": state}
        return f"{app.login_base}/open-apis/authen/v1/authorize?{urlencode(query)}"

    async def signin_user(self, tenant: str, query) -> str:
        app, code = self.by_tenant.get(tenant), str(query.get("code") or "")
        if app is None or not code or len(code) > 512:
            raise SignInRefused("no Feishu code in the callback")
        try:
            # the token exchange repeats the redirect_uri of the authorize page (RFC 6749 4.1.3): the one this process
            # started the sign-in with, else (another process started it) where the console's sign-in comes back to
            redirect = self._redirects.pop(str(query.get("state") or ""), "") or f"{self.public_url}/login/with/{CHANNEL}/callback"
            user = await self.clients[app.key].signed_in_user(code, redirect)
        except FeishuAPIError as exc:
            raise SignInRefused(f"Feishu did not confirm the sign-in: {exc}") from None
        if app.tenant_key and user["tenant_key"] != app.tenant_key:
            raise SignInRefused(f"a user of another organisation ({user['tenant_key'][:40]!r})")
        if not user[app.user_id_type]:
            raise SignInRefused(f"Feishu named no {app.user_id_type} for this user")
        return user[app.user_id_type]

    # receive ---------------------------------------------------------------------------------------------------
    def routes(self, sink: Sink) -> list[web.RouteDef]:
        async def events(request: web.Request) -> web.Response:
            key = request.match_info.get("app", "default")
            app = self.apps.get(key)
            if app is None and any(p.account == key for p in self.problems):
                raise web.HTTPServiceUnavailable(text=f"Feishu app {key!r} is misconfigured; run `copilot doctor`")
            if app is None:
                raise web.HTTPNotFound(text=f"no Feishu app {key!r} is configured here")
            if app.mode != "http":
                raise web.HTTPNotFound(text=f"Feishu app {key!r} receives over the long connection")
            if (request.content_length or 0) > MAX_BODY:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length or 0)
            raw = await _read(request)
            secret = app.encrypt_key.get_secret_value()
            try:
                signed = LARK_REQUEST_SIGNATURE in request.headers
                ts = verify(request.headers, raw, secret) if signed else 0.0  # the signature before anything is decrypted
                event = decrypt(raw, secret)
                verify_token(event, app.verification_token.get_secret_value())
                if event.get("type") == URL_VERIFICATION:  # the console checking the URL (unsigned): answered with the challenge
                    return web.json_response({"challenge": str(event.get("challenge") or "")})
                if not signed:
                    verify(request.headers, raw, secret)  # says what is missing
            except SignatureError as exc:
                log.warning("%s: event from %s refused: %s", app.label, request.remote, exc)
                raise web.HTTPForbidden(text=f"Feishu event check failed: {exc}") from None
            sig = f"{app.key}|{request.headers[LARK_REQUEST_SIGNATURE].strip().lower()}"
            if await asyncio.to_thread(self.seen.seen, sig) is not None:  # stored already: acknowledge again, nothing else
                return web.json_response({} if event_type(event) == CARD_EVENT else {"duplicate": True})
            answer = await self._take(app, event, sink)
            await asyncio.to_thread(self.seen.remember, sig, ts, hashlib.sha256(raw).hexdigest())
            return web.json_response(answer)

        return [web.post("/feishu/events", events), web.post("/feishu/{app}/events", events)]

    async def _take(self, app: FeishuApp, event: dict, sink: Sink) -> dict:
        """Parse a verified event and store it; what to answer Feishu (raises web errors for the HTTP route)."""
        try:
            msg = await self._parse(app, event)
        except ForeignTenant as exc:
            raise web.HTTPForbidden(text=str(exc)) from None
        except PayloadError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        except FeishuAPIError as exc:  # the bot's own id is needed for a group message: Feishu will deliver it again
            raise web.HTTPServiceUnavailable(text=f"cannot read the bot's identity: {exc}") from None
        if msg is None:
            return {} if event_type(event) == CARD_EVENT else {"ignored": event_type(event) or "event"}
        # durable before Feishu hears 200: its retries are duplicates. Throttled propagates: the gateway answers 429
        acc = await sink(msg)
        return {} if msg.kind == "action" else {"inbox_id": acc.inbox_id, "duplicate": acc.duplicate}

    async def _parse(self, app: FeishuApp, event: dict) -> InboundMessage | None:
        body = event.get("event") if isinstance(event.get("event"), dict) else {}
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        group = event_type(event) == MESSAGE_EVENT and message.get("chat_type", "p2p") != "p2p"
        bot = await self.clients[app.key].bot_open_id() if group else ""
        return parse(event, tenant=app.tenant, app_key=app.key, app_id=app.app_id, user_id_type=app.user_id_type,
                     tenant_key=app.tenant_key, bot_open_id=bot)

    async def start(self, sink: Sink) -> None:
        self.live.bind(asyncio.get_running_loop())
        for app in self.apps.values():
            if app.mode != "ws" or app.key in self.receivers:
                continue

            async def on_event(event: dict, app: FeishuApp = app) -> dict | None:
                try:
                    msg = await self._parse(app, event)
                except PayloadError as exc:
                    log.warning("%s: long-connection event dropped: %s", app.label, exc)
                    return None
                if msg is not None:
                    await sink(msg)  # raises if it was not stored (Throttled too): then a 500, Feishu delivers again
                return {} if event_type(event) == CARD_EVENT else None

            receiver = LongConnection(app, self.clients[app.key], on_event, **self.ws_options)
            self.receivers[app.key] = receiver
            receiver.start()
        for p in self.problems:
            log.error("feishu[%s] is not running: %s", p.account, p)

    # send ------------------------------------------------------------------------------------------------------
    def _app(self, target: Target) -> FeishuApp:
        app = self.by_tenant.get(target.tenant)
        if app is None:
            raise SendError(f"no Feishu app serves tenant {target.tenant!r}", retryable=False)
        return app

    def preview(self, target: Target, text: str) -> None:
        """The answer so far, on the message's one card (called from a worker thread)."""
        app = self.by_tenant.get(target.tenant)
        inbound = str((target.context or {}).get("inbound") or "")
        if app is None or not app.cards or not inbound:
            return
        self.live.preview(f"{app.key}|{inbound}", target, text, self.clients[app.key], app.preview_interval,
                          lambda t, card, uuid: self._deliver(app, t, "interactive", card, uuid))

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        app = self._app(target)
        ctx = target.context or {}
        try:
            if not app.cards:
                await self._send_text(app, target, reply, key)
                return
            parts = cards(reply, chat_type=str(ctx.get("chat_type") or ("group" if target.is_group else "p2p")),
                          mention=str(ctx.get("open_id") or ""), labels=self.labels)
            inbound = str(ctx.get("inbound") or "")
            card_key = f"{app.key}|{inbound}"

            async def show(card: Card | None) -> None:
                if card is None:  # another reply owns this message's card
                    await self._deliver(app, target, "interactive", parts[0], uuid_for(app.key, key))
                elif card.message_id:
                    if not await self._update(app, card.message_id, parts[0]):
                        await self._deliver(app, target, "interactive", parts[0], uuid_for(app.key, key))
                else:  # the card's own uuid: if a preview elsewhere is creating it, this is the same message
                    created = await self._deliver(app, target, "interactive", parts[0], uuid_for("card", card_key))
                    known = await asyncio.to_thread(self.live.store.created, card_key, created)
                    if not card.fresh:  # it may show a preview's text: put the answer on it
                        await self._update(app, known.message_id, parts[0])

            try:
                if inbound:
                    await self.live.finish(card_key, key, show)
                else:
                    await show(None)
                for i, part in enumerate(parts[1:], 2):
                    await self._deliver(app, target, "interactive", part, uuid_for(app.key, key, str(i)))
            except FeishuAPIError as exc:
                if exc.code not in CARD_INVALID:
                    raise
                log.warning("%s: card refused (%s); sending text", app.label, exc)
                await self._send_text(app, target, reply, key)
        except FeishuAPIError as exc:
            raise SendError(f"{app.label}: {exc}", retryable=exc.retryable, retry_after=exc.retry_after) from None

    async def _update(self, app: FeishuApp, message_id: str, card: dict) -> bool:
        """Put `card` on an existing card message; False when Feishu says it can no longer be updated."""
        try:
            await self.clients[app.key].update_card(message_id, card)
            return True
        except FeishuAPIError as exc:
            if exc.code in MESSAGE_GONE:
                log.info("%s: card %s can no longer be updated (%s): a new one is sent", app.label, message_id, exc)
                return False
            raise

    async def _send_text(self, app: FeishuApp, target: Target, reply: Reply, key: str) -> None:
        for i, text in enumerate(text_messages(reply, self.labels), 1):
            await self._deliver(app, target, "text", {"text": text}, uuid_for(app.key, key, "text", str(i)))

    async def _deliver(self, app: FeishuApp, target: Target, msg_type: str, content: dict, uuid: str) -> str:
        """A new message: as a reply to the message it answers, else to the chat or person."""
        client, ctx = self.clients[app.key], target.context or {}
        if ctx.get("message_id"):
            return await client.reply(str(ctx["message_id"]), msg_type, content, uuid)
        chat = str(ctx.get("chat_id") or "")
        if chat or target.is_group or target.conversation_id.startswith("oc_"):
            return await client.create("chat_id", chat or target.conversation_id, msg_type, content, uuid)
        return await client.create(app.user_id_type, target.user_id or target.conversation_id, msg_type, content, uuid)

    # files -----------------------------------------------------------------------------------------------------
    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        app = self.by_tenant.get(tenant)
        if app is None:
            raise FileNotFoundError(f"no Feishu app serves tenant {tenant!r}")
        kind, _, rest = attachment.ref.partition(":")
        message_id, _, file_key = rest.partition(":")
        if kind not in ("file", "image") or not message_id or not file_key:
            raise FileNotFoundError(f"not a Feishu file reference: {attachment.ref[:80]!r}")
        try:
            return await self.clients[app.key].download(message_id, file_key, kind, self.max_download)
        except FeishuAPIError as exc:
            raise OSError(f"{app.label}: {attachment.name}: {exc}") from None

    # doctor ----------------------------------------------------------------------------------------------------
    async def doctor(self) -> list[Check]:
        checks = [p.check("feishu") for p in self.problems]
        for app in self.apps.values():
            checks += await self._doctor_app(app)
        return checks

    async def _doctor_app(self, app: FeishuApp) -> list[Check]:
        client, name = self.clients[app.key], app.label
        where = "COPILOT_FEISHU_APP_ID and COPILOT_FEISHU_APP_SECRET" if app.key == "default" else f"app_id / app_secret of [[feishu.apps]] key={app.key}"
        try:
            await client.token()
        except FeishuAPIError as exc:
            fix = (f"allow outbound HTTPS from this server to {urlparse(app.api_base).netloc}" if exc.status == 0 or exc.status >= 500
                   else f"copy App ID and App Secret from {CONSOLE} → 凭证与基础信息 into {where}")
            return [Check(f"{name} credentials", False, str(exc), fix)]
        checks = [Check(f"{name} credentials", True, f"app {app.app_id}: tenant_access_token OK (tenant {app.tenant})")]
        try:
            checks.append(Check(f"{name} bot", True, f"bot open_id {await client.bot_open_id()}"))
        except FeishuAPIError as exc:
            checks.append(Check(f"{name} bot", False, str(exc), f"{CONSOLE} → 添加应用能力 → 机器人, then publish a version (版本管理与发布)"))
        if app.mode == "ws":
            try:
                url, _ = await client.ws_endpoint()
                checks.append(Check(f"{name} long connection", True, f"Feishu accepts a long connection for this app ({urlparse(url).netloc})"))
            except FeishuAPIError as exc:
                checks.append(Check(f"{name} long connection", False, str(exc),
                                    f"{CONSOLE} → 事件与回调 → 订阅方式: 使用长连接接收事件/回调, and publish a version"))
            return checks
        checks.append(Check(f"{name} encrypt key", True, "events must be encrypted, signed and carry the verification token"))
        url = (self.public_url or "https://YOUR-HOST") + app.callback_path
        local = any(h in url for h in ("//127.", "//localhost", "//0.0.0.0"))
        checks.append(Check(f"{name} callback", not local, f"事件与回调 request URL (events and card callbacks): {url}",
                            "set COPILOT_PUBLIC_URL to the address Feishu can reach" if local else ""))
        return checks

    async def aclose(self) -> None:
        for r in self.receivers.values():
            await r.aclose()
        self.receivers.clear()
        await self.live.aclose()
        for c in self.clients.values():
            await c.aclose()
