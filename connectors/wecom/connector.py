"""The WeCom connector: callbacks in (GET/POST /wecom/callback, /wecom/{corp}/callback), replies out.

A callback is checked (signature, size, XML), decrypted, parsed, put in the durable inbox, and
answered with an empty 200 at once -- WeCom retries what it does not get an answer to within
about 5 s, and the inbox drops a retried MsgId. The real reply goes later through message/send.
Several corps can live in one deployment; each one's messages carry its tenant, and replies find
their corp again through the reply context. Imports the channel core and its own modules.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.engine import Engine

from connectors.cache import SharedClaims, TokenCache
from connectors.channel import Check, SendError, SignInRefused, Sink
from connectors.config import ConfigProblem
from connectors.labels import Labels, label
from connectors.message import Attachment, Reply, Target
from connectors.replay import SeenSignatures
from connectors.wecom.client import WeComClient, WeComError
from connectors.wecom.config import DEFAULT_KEY, CorpConfig
from connectors.wecom.crypto import BadSignature, CallbackRejected, WeComCrypto, check_query
from connectors.wecom.parse import CHANNEL, parse
from connectors.wecom.render import TEXT_LIMIT, render

log = logging.getLogger("copilot.wecom")
WINDOW = 300  # seconds: a callback's timestamp must be this close to now (WeCom signs it, and sends at once)


class WeComConnector:
    name = CHANNEL
    text_limit, text_unit = TEXT_LIMIT, "bytes"  # text and markdown content: WeCom cuts the rest silently

    def __init__(self, corps: list[CorpConfig], *, problems: list[ConfigProblem] | None = None, max_body: int = 64 * 1024,
                 max_file: int = 20 * 1024 * 1024, inline_wait: float = 5.0, labels: Labels | None = None,
                 engine: Engine | None = None, tokens: TokenCache | None = None, claims: SharedClaims | None = None) -> None:
        self.corps = {c.key: c for c in corps}
        self.by_tenant = {c.tenant: c for c in corps}
        self.max_body = max_body  # a callback is a few KB
        self.max_file = max_file  # WeCom's own limit for a file is 20 MB
        self.inline_wait = inline_wait  # pacing waits up to this long in place, then the outbox retries later
        self.labels = labels  # the words it adds (connectors/labels.py); None: the shipped catalogue's
        self.problems = list(problems or [])
        self.crypto: dict[str, WeComCrypto] = {}
        self.broken: dict[str, str] = {}
        for c in corps:
            issues = c.problems()
            if issues:
                self.broken[c.key] = "; ".join(p for p, _ in issues)
            else:
                self.crypto[c.key] = WeComCrypto(c.token.get_secret_value(), c.aes_key.get_secret_value(), c.corp_id)
        self.clients = {c.key: WeComClient(c, tokens=tokens) for c in corps}
        # (corp, timestamp, nonce, signature) of the callbacks stored within the window, shared by every process
        # through Redis or the database (connectors/replay.py): a captured callback sent again inside the window is not processed twice
        self.seen = SeenSignatures(WINDOW, engine=engine, shared=claims)

    def _fresh(self, corp: CorpConfig, timestamp: str, request: web.Request) -> None:
        if not self.seen.in_window(int(timestamp)):
            log.warning("wecom %s: callback from %s refused: timestamp %s is more than %d s from now", corp.key, request.remote,
                        timestamp, WINDOW)
            raise web.HTTPForbidden(text=f"timestamp is more than {WINDOW} s from now: a stale or replayed callback")

    # web sign-in (企业微信扫码登录, or straight through in WeCom's own browser) ------------------------
    label = "signin_with_wecom"

    def signs_in(self, tenant: str) -> bool:
        corp = self.by_tenant.get(tenant)
        return corp is not None and corp.key not in self.broken and bool(corp.agent_id)

    def signin_url(self, tenant: str, state: str, redirect_uri: str) -> str:
        corp = self.by_tenant[tenant]
        query = {"login_type": "CorpApp", "appid": corp.corp_id, "agentid": str(corp.agent_id), "redirect_uri": redirect_uri, "state": state}
        return f"{corp.login_base.rstrip('/')}/wwlogin/sso/login?{urlencode(query)}"

    async def signin_user(self, tenant: str, query) -> str:
        """The member who scanned: auth/getuserinfo with the app's token turns the code into their userid."""
        corp, code = self.by_tenant.get(tenant), str(query.get("code", ""))
        if corp is None or not code or len(code) > 512:
            raise SignInRefused("no WeCom code in the callback")
        try:
            data = await self.clients[corp.key].call("GET", "/cgi-bin/auth/getuserinfo", params={"code": code})
        except WeComError as exc:
            raise SignInRefused(f"WeCom did not confirm the code: {exc}") from None
        user = str(data.get("userid") or data.get("UserId") or "")
        if not user:
            raise SignInRefused("not a member of the corp (WeCom gave an openid, not a userid)")
        return user

    # receive ---------------------------------------------------------------------------------
    def routes(self, sink: Sink) -> list[web.RouteDef]:
        async def verify(request: web.Request) -> web.Response:
            corp, crypto = self._corp(request)
            q = request.query
            try:
                sig, ts, nonce = check_query(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"))
                self._fresh(corp, ts, request)
                echo = crypto.verify_url(sig, ts, nonce, q.get("echostr", "").replace(" ", "+"))
            except BadSignature as exc:
                log.warning("wecom %s: URL verification refused from %s: %s", corp.key, request.remote, exc)
                raise web.HTTPForbidden(text="signature check failed") from None
            except CallbackRejected as exc:
                log.warning("wecom %s: URL verification refused from %s: %s", corp.key, request.remote, exc)
                raise web.HTTPBadRequest(text=str(exc)) from None
            return web.Response(text=echo)

        async def receive(request: web.Request) -> web.StreamResponse:
            corp, crypto = self._corp(request)
            q = request.query
            try:
                sig, ts, nonce = check_query(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"))
            except CallbackRejected as exc:
                raise web.HTTPBadRequest(text=str(exc)) from None
            self._fresh(corp, ts, request)
            body = await self._read(request)
            if body is None:
                return web.json_response({"error": f"request body too large (limit {self.max_body} bytes)"}, status=413)
            try:
                fields = crypto.decrypt(body, sig, ts, nonce)
                msg = parse(fields, tenant=corp.tenant, corp=corp.key)
            except BadSignature as exc:
                log.warning("wecom %s: callback refused from %s: %s", corp.key, request.remote, exc)
                raise web.HTTPForbidden(text="signature check failed") from None
            except CallbackRejected as exc:
                log.info("wecom %s: bad callback from %s: %s", corp.key, request.remote, exc)
                raise web.HTTPBadRequest(text=str(exc)) from None
            key = f"{corp.key}|{ts}|{nonce}|{sig}"
            if await asyncio.to_thread(self.seen.seen, key) is not None:  # signed, in the window, and already stored: acknowledged, not processed again
                log.warning("wecom %s: a callback already received came again from %s (timestamp %s, nonce %s)", corp.key,
                            request.remote, ts, nonce)
                return web.Response(text="")
            if msg is not None:
                # durable before we answer; a failure here is a 500 and WeCom retries. Throttled propagates:
                # the gateway answers 429 and WeCom's retry brings the message back
                await sink(msg)
            await asyncio.to_thread(self.seen.remember, key, int(ts))  # only once stored: a retry of a callback that failed still gets in
            return web.Response(text="")  # an empty 200: no passive reply, the answer goes via message/send

        return [
            web.get("/wecom/callback", verify), web.post("/wecom/callback", receive),
            web.get("/wecom/{corp}/callback", verify), web.post("/wecom/{corp}/callback", receive),
        ]

    def _corp(self, request: web.Request) -> tuple[CorpConfig, WeComCrypto]:
        key = request.match_info.get("corp", DEFAULT_KEY)
        corp = self.corps.get(key)
        bad = next((p for p in self.problems if p.account == key), None)
        if corp is None and bad is not None:
            log.error("wecom %s: callback refused, the corp is misconfigured: %s", key, bad)
            raise web.HTTPServiceUnavailable(text=f"WeCom corp {key!r} is misconfigured; run `copilot doctor`")
        if corp is None:
            raise web.HTTPNotFound(text=f"no WeCom corp {key!r} is configured here")
        if key in self.broken:
            log.error("wecom %s: callback refused, the corp is misconfigured: %s", key, self.broken[key])
            raise web.HTTPServiceUnavailable(text=f"WeCom corp {key!r} is misconfigured; run `copilot doctor`")
        return corp, self.crypto[key]

    async def _read(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.max_body:
            return None
        buf = bytearray()
        while chunk := await request.content.read(16384):
            buf += chunk
            if len(buf) > self.max_body:
                return None
        return bytes(buf)

    async def start(self, sink: Sink) -> None:
        for p in self.problems:
            log.error("wecom corp %s is not running: %s", p.account, p)
        for key, problem in self.broken.items():
            log.error("wecom corp %s is misconfigured, its callbacks are refused: %s (see `copilot doctor`)", key, problem)

    # send --------------------------------------------------------------------------------------
    def corp_for(self, tenant: str, context: dict | None = None) -> CorpConfig | None:
        key = (context or {}).get("corp")
        corp = self.corps.get(key) if isinstance(key, str) else None
        return corp if corp is not None and corp.tenant == tenant else self.by_tenant.get(tenant)

    async def send(self, target: Target, reply: Reply, key: str) -> None:
        corp = self.corp_for(target.tenant, target.context)
        if corp is None:
            raise SendError(f"no WeCom corp serves tenant {target.tenant!r}", retryable=False)
        if corp.key in self.broken:
            raise SendError(f"WeCom corp {corp.key!r} is misconfigured: {self.broken[corp.key]}", retryable=False)
        user = target.user_id or target.conversation_id
        client = self.clients[corp.key]
        check = {"enable_duplicate_check": 1, "duplicate_check_interval": min(corp.duplicate_check_seconds, 1800)} \
            if corp.duplicate_check_seconds > 0 else {}
        code = (target.context or {}).get("response_code")
        if code:  # the answer to a card click: grey out the card's buttons so it is not clicked again
            await self._close_card(client, corp, user, str(code), reply.lang)
        for payload in render(reply, markdown=corp.markdown, seed=key, labels=self.labels):
            await self._pace(client, user)
            try:
                await client.send({"touser": user, "agentid": corp.agent_id, **payload, **check})
            except WeComError as exc:
                # parts already sent go again on the retry: WeCom's duplicate check drops them
                raise SendError(str(exc), retryable=exc.retryable, retry_after=exc.retry_after) from None

    async def _close_card(self, client: WeComClient, corp: CorpConfig, user: str, response_code: str, lang: str) -> None:
        body = {"userids": [user], "agentid": corp.agent_id, "response_code": response_code, "button": {"replace_name": label(self.labels, lang, "channel_card_done")}}
        try:
            await client.call("POST", "/cgi-bin/message/update_template_card", body=body)
        except WeComError as exc:  # a response_code works once (72 h): a retried send finds it used, which is fine
            log.info("wecom %s: card not updated: %s", corp.key, exc)

    async def _pace(self, client: WeComClient, user: str) -> None:
        waited = 0.0
        while (wait := client.pacer.reserve(user)) > 0:
            if waited + wait > self.inline_wait:
                raise SendError(f"pacing sends to {user}: next slot in {wait:.0f}s", retry_after=wait, defer=True)
            await asyncio.sleep(wait)
            waited += wait

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        corp = self.corp_for(tenant)
        if corp is None:
            raise LookupError(f"no WeCom corp serves tenant {tenant!r}")
        data, _ = await self.clients[corp.key].media(attachment.ref, self.max_file)
        return data

    # operations ---------------------------------------------------------------------------------
    async def doctor(self) -> list[Check]:
        checks = [p.check("WeCom") for p in self.problems]
        for corp in self.corps.values():
            checks += await self._doctor_corp(corp)
        return checks

    async def _doctor_corp(self, corp: CorpConfig) -> list[Check]:
        label = f"WeCom {corp.key}"
        problems = corp.problems()
        if problems:
            return [Check(f"{label}: settings", False, "; ".join(p for p, _ in problems), "; ".join(f for _, f in problems))]
        url = "/wecom/callback" if corp.key == DEFAULT_KEY else f"/wecom/{corp.key}/callback"
        out = [Check(f"{label}: settings", True, f"corp {corp.corp_id}, agent {corp.agent_id}, tenant {corp.tenant}, callback URL {url}, "
                                                 f"{'markdown' if corp.markdown else 'text'} replies")]
        client = self.clients[corp.key]
        try:
            await client.access_token()
        except WeComError as exc:
            return out + [Check(f"{label}: access token", False, _what(exc), exc.fix)]
        out.append(Check(f"{label}: access token", True, "gettoken ok"))
        try:
            agent = await client.agent()
        except WeComError as exc:
            return out + [Check(f"{label}: app", False, _what(exc), exc.fix)]
        users = len((agent.get("allow_userinfos") or {}).get("user") or [])
        parties = len((agent.get("allow_partys") or {}).get("partyid") or [])
        detail = f"{agent.get('name', '?')}: visible range {users} members, {parties} departments"
        if agent.get("close"):
            return out + [Check(f"{label}: app", False, detail + "; the app is disabled", "enable it in 应用管理 → your app")]
        if not users and not parties:
            return out + [Check(f"{label}: app", False, detail, "set the app's 可见范围 (visible range) to the sales teams")]
        if not agent.get("isreportenter"):
            detail += "; enter-app events are off, so nobody gets the welcome (turn on 进入应用事件 under 接收消息 if wanted)"
        return out + [Check(f"{label}: app", True, detail)]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def _what(exc: WeComError) -> str:
    code = "no answer" if exc.errcode is None else f"errcode {exc.errcode}"
    return f"{code}: {exc.meaning or exc.errmsg.split(', hint')[0]}"
