"""The DingTalk connector: robot messages from one or more apps, over HTTP callbacks or Stream mode.

Both modes end in the same place: verify (HTTP: the signature), parse, `await sink(msg)`, and only
then acknowledge (HTTP: the 200; Stream: the ack frame). Replies go through the message's
sessionWebhook while it is valid and through the robot send APIs after that (or when the webhook
says it expired). Each app is its own tenant, with its own token, route and Stream connection.
Imports only the channel core and its own modules.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlencode, urlparse

from aiohttp import web
from sqlalchemy.engine import Engine

from connectors.cache import SharedClaims, TokenCache
from connectors.channel import ChannelContext, Check, SendError, SignInRefused, Sink
from connectors.config import ConfigProblem
from connectors.dingtalk.cards import CardStore, NotOurs, callback_token, route_key
from connectors.dingtalk.client import DOWNLOAD_PATH, DingTalkAPIError, DingTalkClient, WebhookExpired
from connectors.dingtalk.config import DingTalkApp, load_apps
from connectors.dingtalk.crypto import MAX_SKEW_MS, SignatureError, verify
from connectors.dingtalk.livecards import LiveCards
from connectors.dingtalk.parse import CHANNEL, ForeignCorp, PayloadError, parse
from connectors.dingtalk.render import MAX_CHARS, Part, render
from connectors.dingtalk.stream import StreamReceiver
from connectors.labels import Labels
from connectors.message import Attachment, Reply, Target
from connectors.replay import SeenSignatures

log = logging.getLogger("copilot.dingtalk")
WEBHOOK_MARGIN_MS = 10_000  # don't start a send on a webhook that expires within seconds
CONSOLE = "developer console (open-dev.dingtalk.com) → 应用开发 → 企业内部应用 → your app"


class DingTalkConnector:
    name = CHANNEL
    text_limit, text_unit = MAX_CHARS, "chars"

    def __init__(self, apps: list[DingTalkApp], problems: list[ConfigProblem] | None = None, *, public_url: str = "",
                 max_download: int = 25 * 1024 * 1024, stream_options: dict[str, Any] | None = None, labels: Labels | None = None,
                 engine: Engine | None = None, tokens: TokenCache | None = None, claims: SharedClaims | None = None) -> None:
        self.apps = {a.key: a for a in apps}
        self.by_tenant = {a.tenant: a for a in apps}
        self.problems = list(problems or [])
        self.clients = {a.key: DingTalkClient(a, tokens=tokens) for a in apps}
        self.receivers: dict[str, StreamReceiver] = {}
        self.public_url = public_url.rstrip("/")
        self.max_download = max_download
        self.stream_options = stream_options or {}
        self.labels = labels  # the words it adds (connectors/labels.py); None: the shipped catalogue's
        self._progress: OrderedDict[str, int] = OrderedDict()  # reply key -> parts already delivered
        # HTTP callbacks' signatures within the timestamp window, with the body each one came with, shared by every
        # process through Redis or the database (connectors/replay.py). The sign is HMAC(timestamp): the app and the timestamp name it.
        self.seen = SeenSignatures(MAX_SKEW_MS / 1000, engine=engine, shared=claims)
        # replies as cards that fill while the answer is written, for the apps that want them (livecards.py)
        self.cards = LiveCards(CardStore(engine) if any(a.cards for a in apps) else None, labels)
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def build(cls, ctx: ChannelContext, **kw: Any) -> "DingTalkConnector | None":
        """None when no DingTalk app is configured at all."""
        apps, problems = load_apps(ctx.tenant, ctx.section)
        if not apps and not problems:
            return None
        return cls(apps, problems, public_url=ctx.public_url, max_download=ctx.max_download, labels=ctx.labels or None, engine=ctx.engine,
                   tokens=ctx.tokens, claims=ctx.claims, **kw)

    # web sign-in (钉钉扫码登录, or straight through in DingTalk's own browser) ---------------------------
    label = "signin_with_dingtalk"

    def signs_in(self, tenant: str) -> bool:
        return tenant in self.by_tenant

    def signin_url(self, tenant: str, state: str, redirect_uri: str) -> str:
        app = self.by_tenant[tenant]
        query = {"redirect_uri": redirect_uri, "response_type": "code", "client_id": app.app_key, "scope": "openid corpid",
                 "state": state, "prompt": "consent", **({"corpId": app.corp_id, "org_type": "intern"} if app.corp_id else {})}
        return f"{app.login_base.rstrip('/')}/oauth2/auth?{urlencode(query)}"

    async def signin_user(self, tenant: str, query) -> str:
        app, code = self.by_tenant.get(tenant), str(query.get("authCode") or query.get("code") or "")
        if app is None or not code or len(code) > 512:
            raise SignInRefused("no DingTalk authCode in the callback")
        try:
            user = await self.clients[app.key].signed_in_userid(code)
        except DingTalkAPIError as exc:
            raise SignInRefused(f"DingTalk did not confirm the sign-in: {exc}") from None
        if not user:
            raise SignInRefused("not a member of the corp")
        return user

    # receive -----------------------------------------------------------------------------------
    def routes(self, sink: Sink) -> list[web.RouteDef]:
        async def callback(request: web.Request) -> web.Response:
            key = request.match_info.get("app", "default")
            app = self.apps.get(key)
            if app is None and any(p.account == key for p in self.problems):
                raise web.HTTPServiceUnavailable(text=f"DingTalk app {key!r} is misconfigured; run `copilot doctor`")
            if app is None:
                raise web.HTTPNotFound(text=f"no DingTalk app {key!r} is configured here")
            ts, sig = request.headers.get("timestamp"), request.headers.get("sign")
            try:
                verify(ts, sig, app.app_secret.get_secret_value())
            except SignatureError as exc:
                raise web.HTTPForbidden(text=f"DingTalk signature check failed: {exc}") from None
            raw = await request.read()
            # The sign covers the timestamp only, not the body: a signature is good for one body, once.
            # Claimed before anything else, atomically across processes: the first body wins the signature.
            key, digest = f"{app.key}|{ts}", hashlib.sha256(raw).hexdigest()
            before = await asyncio.to_thread(self.seen.claim, key, int(ts) / 1000, digest)
            if before is not None and before != digest:
                log.warning("%s: a used signature came with another body from %s: refused", app.label, request.remote)
                raise web.HTTPForbidden(text="DingTalk signature check failed: this signature was already used for another request")
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise web.HTTPBadRequest(text="body is not valid JSON") from None
            try:
                msg = parse(data, tenant=app.tenant, robot_code=app.robot_code, corp_id=app.corp_id)
            except ForeignCorp as exc:
                log.warning("%s: callback from %s refused: %s", app.label, request.remote, exc)
                raise web.HTTPForbidden(text=str(exc)) from None
            except PayloadError as exc:
                raise web.HTTPBadRequest(text=str(exc)) from None
            if msg is None:
                return web.json_response({"ignored": "group message that does not @ the robot"})
            # durable before DingTalk hears 200: its retries are duplicates. Throttled propagates: the
            # gateway answers 429 and DingTalk's retry brings the message back
            acc = await sink(msg)  # the same request again is a retry (the inbox dedupes it); another body is refused
            return web.json_response({"inbox_id": acc.inbox_id, "duplicate": acc.duplicate})

        async def card_callback(request: web.Request) -> web.Response:
            """A click on a card's button (HTTP callback mode): the URL registered for the app carries its secret token."""
            app = self.apps.get(request.match_info.get("app", "default"))
            if app is None or not app.cards:
                raise web.HTTPNotFound(text="no DingTalk app with cards is configured here")
            if not hmac.compare_digest(request.match_info["token"].encode(), callback_token(app).encode()):
                raise web.HTTPForbidden(text="not this app's card callback URL")
            try:
                data = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError):
                raise web.HTTPBadRequest(text="body is not valid JSON") from None
            return web.json_response({"stored": await self._on_card(app, data, sink)})

        return [web.post("/dingtalk/callback", callback), web.post("/dingtalk/{app}/callback", callback),
                web.post("/dingtalk/card/{token}", card_callback), web.post("/dingtalk/{app}/card/{token}", card_callback)]

    async def _on_card(self, app: DingTalkApp, data: Any, sink: Sink) -> bool:
        """A card callback: a click on one of our cards becomes an action message in the inbox (raises if it was not
        stored, so it is not acknowledged); anything else is acknowledged and dropped."""
        try:
            msg = await self.cards.clicked(app, data)
        except NotOurs as exc:
            log.warning("%s: card callback dropped: %s", app.label, exc)
            return False
        await sink(msg)
        return True

    async def start(self, sink: Sink) -> None:
        self.cards.bind(asyncio.get_running_loop())
        for app in self.apps.values():
            if app.cards and app.mode == "http":
                task = asyncio.create_task(self._register_card_callback(app))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if app.mode != "stream" or app.key in self.receivers:
                continue

            async def on_message(data: dict, app: DingTalkApp = app) -> None:
                try:
                    msg = parse(data, tenant=app.tenant, robot_code=app.robot_code, corp_id=app.corp_id)
                except PayloadError as exc:
                    log.warning("%s: Stream message dropped: %s", app.label, exc)
                    return
                if msg is not None:
                    await sink(msg)  # raises if it was not stored (Throttled too): then no ack, DingTalk redelivers

            async def on_card(data: dict, app: DingTalkApp = app) -> None:
                await self._on_card(app, data, sink)

            receiver = StreamReceiver(app, self.clients[app.key], on_message, on_card=on_card if app.cards else None, **self.stream_options)
            self.receivers[app.key] = receiver
            receiver.start()
        for p in self.problems:
            log.error("dingtalk[%s] is not running: %s", p.account, p)

    async def _register_card_callback(self, app: DingTalkApp) -> None:
        url = f"{self.public_url or 'https://YOUR-HOST'}{app.callback_path.rsplit('/', 1)[0]}/card/{callback_token(app)}"
        try:
            await self.clients[app.key].register_card_callback(route_key(app), url, callback_token(app))
        except DingTalkAPIError as exc:
            log.warning("%s: card button clicks will not arrive: registering the card callback failed: %s", app.label, exc)

    # send --------------------------------------------------------------------------------------
    def preview(self, target: Target, text: str) -> None:
        """The answer so far (a worker thread): an app with cards shows it in the reply's card as it grows."""
        app = self.by_tenant.get(target.tenant)
        if app is not None and app.cards:
            self.cards.preview(app, self.clients[app.key], target, text)

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        app = self.by_tenant.get(target.tenant)
        if app is None:
            raise SendError(f"no DingTalk app serves tenant {target.tenant!r}", retryable=False)
        if app.cards and await self.cards.finish(app, self.clients[app.key], target, reply, key):
            return  # a card; when it cannot be one (a card error), the reply goes out as messages below
        ctx = target.context or {}
        staff = str(ctx.get("senderStaffId") or target.user_id)
        parts = render(reply, group=target.is_group, staff_id=staff, nick=str(ctx.get("senderNick") or ""), labels=self.labels)
        client = self.clients[app.key]
        use_webhook = self._webhook_usable(app, ctx)
        for i, part in enumerate(parts):
            if i < self._progress.get(key, 0):
                continue  # delivered before a later part failed: a retry must not repeat it
            try:
                use_webhook = await self._deliver(client, target, ctx, staff, part, use_webhook)
            except DingTalkAPIError as exc:
                raise SendError(f"{app.label}: {exc}", retryable=exc.retryable, retry_after=exc.retry_after) from None
            self._progress[key] = i + 1
            self._progress.move_to_end(key)
            while len(self._progress) > 10_000:
                self._progress.popitem(last=False)
        self._progress.pop(key, None)

    async def _deliver(self, client: DingTalkClient, target: Target, ctx: dict, staff: str, part: Part, use_webhook: bool) -> bool:
        """Send one part; returns whether the session webhook is still worth trying for the next."""
        if use_webhook:
            try:
                await client.webhook(str(ctx["sessionWebhook"]), part.webhook)
                return True
            except WebhookExpired as exc:
                log.info("%s: session webhook expired (%s); using the robot API", client.app.label, exc)
        if target.is_group:
            await client.send_to_group(str(ctx.get("openConversationId") or target.conversation_id), part.msg_key, part.param)
        elif staff:
            await client.send_to_users([staff], part.msg_key, part.param)
        else:
            raise DingTalkAPIError("no staff id to send a one-to-one message to")
        return False

    def _webhook_usable(self, app: DingTalkApp, ctx: dict) -> bool:
        url = str(ctx.get("sessionWebhook") or "")
        expires = int(ctx.get("sessionWebhookExpiredTime") or 0)
        if not url or expires <= time.time() * 1000 + WEBHOOK_MARGIN_MS:
            return False
        # the URL came in a signed message, but only ever post to DingTalk (or the configured API host)
        u = urlparse(url)
        own = {urlparse(app.api_base).netloc, urlparse(app.oapi_base).netloc}
        return (u.scheme == "https" and (u.hostname or "").endswith(".dingtalk.com")) or u.netloc in own

    # files -------------------------------------------------------------------------------------
    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        app = self.by_tenant.get(tenant)
        if app is None:
            raise FileNotFoundError(f"no DingTalk app serves tenant {tenant!r}")
        try:
            return await self.clients[app.key].download(attachment.ref, self.max_download)
        except DingTalkAPIError as exc:
            raise OSError(f"{app.label}: {attachment.name}: {exc}") from None

    # doctor ------------------------------------------------------------------------------------
    async def doctor(self) -> list[Check]:
        checks = [p.check("dingtalk") for p in self.problems]
        for app in self.apps.values():
            checks += await self._doctor_app(app)
        return checks

    async def _doctor_app(self, app: DingTalkApp) -> list[Check]:
        client, name = self.clients[app.key], app.label
        try:
            await client.token()
        except DingTalkAPIError as exc:
            if exc.status == 0 or exc.status >= 500:
                fix = f"allow outbound HTTPS from this server to {urlparse(app.api_base).netloc} and {urlparse(app.oapi_base).netloc}"
            else:
                where = "COPILOT_DINGTALK_APP_KEY and COPILOT_DINGTALK_APP_SECRET" if app.key == "default" else f"app_key / app_secret of [[dingtalk.apps]] key={app.key}"
                fix = f"copy Client ID (AppKey) and Client Secret from {CONSOLE} → 凭证与基础信息 into {where}"
            return [Check(f"{name} credentials", False, str(exc), fix)]
        checks = [Check(f"{name} credentials", True, f"app {app.app_key}: access token OK (tenant {app.tenant})")]
        if not app.corp_id:
            where = "COPILOT_DINGTALK_CORP_ID" if app.key == "default" else f"corp_id of [[dingtalk.apps]] key={app.key}"
            checks.append(Check(f"{name} corp id", False, "corp_id is not configured: the corp a message names (senderCorpId, "
                                "chatbotCorpId) is not checked", f"set {where} to the CorpId (ding...) from {CONSOLE} → 凭证与基础信息"))
        checks.append(await self._doctor_robot(app, client))
        if app.cards:
            checks.append(await self._doctor_cards(app, client))
        try:
            oapi = await client.oapi_summary()
            seen = f"{oapi['members']} members visible" if oapi.get("members") is not None else "contacts not readable (optional)"
            checks.append(Check(f"{name} oapi", True, f"gettoken OK via dingtalk-sdk at {app.oapi_base}; {seen}"))
        except Exception as exc:
            checks.append(Check(f"{name} oapi", False, f"{type(exc).__name__}: {str(exc)[:200]}",
                                f"allow outbound HTTPS to {urlparse(app.oapi_base).netloc}; check the app is not disabled"))
        if app.mode == "stream":
            try:
                endpoint, _ = await client.open_stream(["/v1.0/im/bot/messages/get"], "doctor")
                checks.append(Check(f"{name} stream", True, f"Stream gateway accepts this app ({urlparse(endpoint).netloc})"))
            except DingTalkAPIError as exc:
                checks.append(Check(f"{name} stream", False, str(exc),
                                    f"{CONSOLE} → 机器人与消息推送: set 消息接收模式 to Stream 模式 and publish the robot"))
        else:
            url = (self.public_url or "https://YOUR-HOST") + app.callback_path
            local = any(h in url for h in ("//127.", "//localhost", "//0.0.0.0"))
            checks.append(Check(f"{name} callback", True, f"HTTP mode: message URL {url}"
                                + (" (a loopback address: set COPILOT_PUBLIC_URL to the address DingTalk can reach)" if local else "")))
        return checks

    async def _doctor_robot(self, app: DingTalkApp, client: DingTalkClient) -> Check:
        """Probe the file-download endpoint with a dummy code: the answer tells robot code and permission apart."""
        name = f"{app.label} robot"
        try:
            await client.call(DOWNLOAD_PATH, {"downloadCode": "copilot-doctor-probe", "robotCode": app.robot_code})
            return Check(name, True, f"robot code {app.robot_code}")
        except DingTalkAPIError as exc:
            text = f"{exc.code} {exc.detail}".lower()
            if exc.status == 403 or "permission" in text or "forbidden" in text:
                return Check(name, False, str(exc), f"{CONSOLE} → 权限管理: add the robot permissions (企业内机器人发送消息, 下载机器人接收的文件) and publish a new version")
            if "robot" in text and ("not" in text or "exist" in text or "invalid" in text):
                return Check(name, False, f"robot code {app.robot_code} is not this app's robot: {exc}",
                             f"set robot_code to the RobotCode on {CONSOLE} → 机器人与消息推送 (usually the AppKey)")
            if exc.status == 0 or exc.status >= 500:
                return Check(name, False, str(exc), "DingTalk did not answer: try again, or check outbound HTTPS")
            return Check(name, True, f"robot code {app.robot_code} accepted (probe answered {exc.code})")

    async def _doctor_cards(self, app: DingTalkApp, client: DingTalkClient) -> Check:
        """Probe the card update and streaming APIs with an outTrackId that names no card: "no such card" means the
        permission is there; a refusal names the one missing. (Whether the template exists shows at the first reply.)"""
        name, missing = f"{app.label} cards", []
        for scope, call in (("Card.Instance.Write", client.update_card), ("Card.Streaming.Write", client.stream_card)):
            try:
                await call({"outTrackId": "copilot-doctor-probe", "guid": "probe", "key": "content", "content": "", "isFull": True,
                            "isFinalize": False, "isError": False, "cardData": {"cardParamMap": {}}})
            except DingTalkAPIError as exc:
                if exc.status == 403 or "permission" in f"{exc.code} {exc.detail}".lower():
                    missing.append(scope)
                elif exc.status == 0 or exc.status >= 500:
                    return Check(name, False, str(exc), "DingTalk did not answer: try again, or check outbound HTTPS")
        if missing:
            return Check(name, False, f"the app may not {' / '.join(missing)}: replies go out as messages instead of cards",
                         f"{CONSOLE} → 权限管理: add {', '.join(missing)} (互动卡片) and publish a new version")
        where = "callbacks over the Stream connection" if app.mode == "stream" else f"callbacks to route key {route_key(app)}"
        return Check(name, True, f"card template {app.card_template_id or 'built-in AI card'}; {where}")

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for r in self.receivers.values():
            await r.aclose()
        self.receivers.clear()
        await self.cards.aclose()  # the pumps writing cards, before the clients they use
        for c in self.clients.values():
            await c.aclose()
