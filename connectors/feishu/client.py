"""The Feishu open API for one app: tenant token, messages (create, reply, update a card), files, sign-in.

Every call is one of lark-oapi's own request models (built with its builders: path, query, body) answered into
its response models, sent over one pooled aiohttp session: lark-oapi's transport opens a new httpx client for
every call, which loads the CA bundle again (about 60 ms of CPU on the event loop, per card update), and its
token manager fetches with blocking `requests` and caches in a process-wide global. The tenant token is fetched
here, cached (connectors/cache.py: per process, or shared through Redis) until shortly before it expires, by one
request however many senders wait, and refreshed and
retried once when Feishu says it is no longer valid. Files stream under a size limit (lark-oapi reads a whole
download into memory). The authen v2 token, the bot's info and the long-connection endpoint (no request model
in lark-oapi's client) are plain JSON calls on the same session.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp
from lark_oapi.api.authen.v1 import GetUserInfoRequest, GetUserInfoResponse
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    CreateMessageResponse,
    PatchMessageRequest,
    PatchMessageRequestBody,
    PatchMessageResponse,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
    ReplyMessageResponse,
)
from lark_oapi.core.json import JSON
from lark_oapi.core.model import BaseRequest, BaseResponse
from lark_oapi.ws.const import GEN_ENDPOINT_URI
from lark_oapi.ws.model import EndpointResp

from connectors.cache import AppToken, LocalTokenCache, TokenCache
from connectors.feishu.config import FeishuApp
from connectors.http import PooledSession, json_object, read_capped

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
BOT_INFO_PATH = "/open-apis/bot/v3/info"
RESOURCE_PATH = "/open-apis/im/v1/messages/{message_id}/resources/{file_key}"
USER_TOKEN_PATH = "/open-apis/authen/v2/oauth/token"
TOKEN_INVALID = {99991661, 99991663, 99991664, 99991665, 99991668}  # missing, invalid or expired access token
RATE_LIMITED = {99991400, 230020, 11232, 11233}  # app or chat over its sending rate
MESSAGE_GONE = {230011, 231003}  # the message was withdrawn / the card can no longer be updated
CARD_INVALID = {230099, 11310, 200621}  # the card's JSON was refused


class FeishuAPIError(Exception):
    def __init__(self, message: str, *, status: int = 0, code: int = 0, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retryable, self.retry_after = status, code, retryable, retry_after


class FeishuClient:
    def __init__(self, app: FeishuApp, *, timeout: float = 15.0, tokens: TokenCache | None = None) -> None:
        self.app = app
        self._http = PooledSession(timeout)
        # one token per app, whichever process asks
        self.app_token = AppToken(tokens or LocalTokenCache(), f"feishu:{app.api_base}:{app.app_id}", self._fetch_token)
        self._bot_open_id = ""

    async def aclose(self) -> None:
        await self._http.aclose()

    # tenant_access_token ------------------------------------------------------------------------
    async def token(self) -> str:
        """The app's tenant token, shared with the deployment's other processes when they share a cache (single flight:
        the waiters reuse what the first one fetched)."""
        return await self.app_token.get()

    async def _fetch_token(self) -> tuple[str, float]:
        data = await self._post(TOKEN_PATH, {"app_id": self.app.app_id, "app_secret": self.app.app_secret.get_secret_value()})
        token, ttl = str(data.get("tenant_access_token") or ""), float(data.get("expire") or 7200)
        if not token:
            raise FeishuAPIError("Feishu returned no tenant_access_token", retryable=True)
        return token, ttl - min(300.0, ttl * 0.2)

    async def _post(self, path: str, body: dict, token: str = "", *, method: str = "POST") -> dict:
        headers = {"Content-Type": "application/json; charset=utf-8", **({"Authorization": f"Bearer {token}"} if token else {})}
        try:
            async with self._http().request(method, self.app.api_base + path, data=None if method == "GET" else json.dumps(body),
                                            headers=headers) as r:
                data = json_object(await r.text())
                code = int(data.get("code") or 0) if str(data.get("code") or "0").lstrip("-").isdigit() else -1
                if r.status >= 400 or code != 0:
                    raise _error(path, r.status, code, str(data.get("msg") or data.get("error_description") or ""), r.headers)
                return data
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise FeishuAPIError(f"cannot reach {self.app.api_base}: {type(exc).__name__} {exc}", retryable=True) from None

    async def _with_token(self, call: Callable[[str], Awaitable[Any]]) -> Any:
        """Run `call(token)`; when Feishu says the token is no longer valid, refresh it and run it once more."""
        return await self.app_token.use(call, lambda exc: isinstance(exc, FeishuAPIError) and exc.code in TOKEN_INVALID)

    async def _send(self, request: BaseRequest, response: type[BaseResponse], token: str) -> Any:
        """One lark-oapi request model over the pooled session; the response model's `data`, or FeishuAPIError."""
        path = request.uri or ""
        url = self.app.api_base + path
        for k, v in request.paths.items():
            url = url.replace(f":{k}", quote(str(v), safe=""))
        body = JSON.marshal(request.body) if request.body is not None else None
        headers = {"Authorization": f"Bearer {token}", **({"Content-Type": "application/json; charset=utf-8"} if body else {})}
        try:
            async with self._http().request(request.http_method.name, url, params=request.queries, data=body.encode() if body else None,
                                            headers=headers) as r:
                text, status, rh = await r.text(), r.status, r.headers
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise FeishuAPIError(f"cannot reach {self.app.api_base}: {type(exc).__name__} {exc}", retryable=True) from None
        try:
            resp = JSON.unmarshal(text or "{}", response)
        except ValueError:
            raise _error(path, status, -1, text[:200], rh) from None
        if status >= 400 or not resp.success():
            raise _error(path, status, int(resp.code if resp.code is not None else -1), resp.msg or "", rh)
        return getattr(resp, "data", None)  # a PATCH answers without data

    async def _lark(self, request: BaseRequest, response: type[BaseResponse]) -> Any:
        return await self._with_token(lambda token: self._send(request, response, token))

    # messages -------------------------------------------------------------------------------------
    async def reply(self, message_id: str, msg_type: str, content: dict, uuid: str) -> str:
        """Answer `message_id` (quoted in the chat); `uuid`: Feishu sends a repeated uuid once (within an hour)."""
        req = (ReplyMessageRequest.builder().message_id(message_id).request_body(
            ReplyMessageRequestBody.builder().msg_type(msg_type).content(json.dumps(content, ensure_ascii=False)).uuid(uuid).build()).build())
        data = await self._lark(req, ReplyMessageResponse)
        return str(getattr(data, "message_id", "") or "")

    async def create(self, receive_id_type: str, receive_id: str, msg_type: str, content: dict, uuid: str) -> str:
        req = (CreateMessageRequest.builder().receive_id_type(receive_id_type).request_body(
            CreateMessageRequestBody.builder().receive_id(receive_id).msg_type(msg_type)
            .content(json.dumps(content, ensure_ascii=False)).uuid(uuid).build()).build())
        data = await self._lark(req, CreateMessageResponse)
        return str(getattr(data, "message_id", "") or "")

    async def update_card(self, message_id: str, card: dict) -> None:
        req = (PatchMessageRequest.builder().message_id(message_id).request_body(
            PatchMessageRequestBody.builder().content(json.dumps(card, ensure_ascii=False)).build()).build())
        await self._lark(req, PatchMessageResponse)

    async def bot_open_id(self) -> str:
        """The bot's own open_id (a group message is for it when it @-mentions this id); asked once."""
        if not self._bot_open_id:
            data = await self._with_token(lambda token: self._post(BOT_INFO_PATH, {}, token, method="GET"))
            bot = data.get("bot") if isinstance(data.get("bot"), dict) else {}
            self._bot_open_id = str(bot.get("open_id") or "")
            if not self._bot_open_id:
                raise FeishuAPIError("Feishu returned no bot open_id: is the bot capability (机器人) enabled?")
        return self._bot_open_id

    # files ----------------------------------------------------------------------------------------
    async def download(self, message_id: str, file_key: str, kind: str, max_bytes: int) -> bytes:
        path = RESOURCE_PATH.format(message_id=message_id, file_key=file_key)

        async def run(token: str) -> bytes:
            try:
                async with self._http().get(self.app.api_base + path, params={"type": kind}, headers={"Authorization": f"Bearer {token}"}) as r:
                    if r.status >= 400 or r.content_type == "application/json":
                        data = json_object(await r.text())
                        raise _error(RESOURCE_PATH, r.status, int(data.get("code") or r.status), str(data.get("msg") or ""), r.headers)
                    too_large = FeishuAPIError(f"file is larger than the {max_bytes // (1024 * 1024)} MB upload limit")
                    if r.content_length is not None and r.content_length > max_bytes:
                        raise too_large
                    return await read_capped(r, max_bytes, too_large)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise FeishuAPIError(f"file download failed: {type(exc).__name__}", retryable=True) from None

        return await self._with_token(run)

    # web sign-in ----------------------------------------------------------------------------------
    async def signed_in_user(self, code: str, redirect_uri: str = "") -> dict:
        """The person who signed in on Feishu's authorize page: the code becomes a user token (the app's id and
        secret vouch for the exchange) and the token names the person (open_id, union_id, user_id, tenant_key)."""
        body = {"grant_type": "authorization_code", "client_id": self.app.app_id, "client_secret": self.app.app_secret.get_secret_value(),
                "code": code, **({"redirect_uri": redirect_uri} if redirect_uri else {})}
        data = await self._post(USER_TOKEN_PATH, body)
        user_token = str(data.get("access_token") or "")
        if not user_token:
            raise FeishuAPIError("Feishu returned no user access_token")
        d = await self._send(GetUserInfoRequest.builder().build(), GetUserInfoResponse, user_token)
        if d is None:
            raise FeishuAPIError("user_info named nobody")
        return {"open_id": d.open_id or "", "union_id": d.union_id or "", "user_id": d.user_id or "", "tenant_key": d.tenant_key or "",
                "name": d.name or ""}

    # long connection ------------------------------------------------------------------------------
    async def ws_endpoint(self) -> tuple[str, Any]:
        """Ask for a long-connection URL (lark-oapi's endpoint request and response model, sent with aiohttp)."""
        try:
            async with self._http().post(self.app.api_base + GEN_ENDPOINT_URI, headers={"locale": "zh"},
                                         json={"AppID": self.app.app_id, "AppSecret": self.app.app_secret.get_secret_value()}) as r:
                text = await r.text()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise FeishuAPIError(f"cannot reach {self.app.api_base}: {type(exc).__name__} {exc}", retryable=True) from None
        resp = EndpointResp(json_object(text))
        if status != 200 or resp.code != 0 or resp.data is None or not str(resp.data.URL or "").startswith(("ws://", "wss://")):
            raise FeishuAPIError(f"{GEN_ENDPOINT_URI}: HTTP {status} {resp.code}: {resp.msg or text[:200]}", status=status,
                                 code=int(resp.code or 0), retryable=status >= 500 or resp.code in (1, 1000040343))
        return str(resp.data.URL), resp.data.ClientConfig


def _error(path: str, status: int, code: int, msg: str, headers: Any) -> FeishuAPIError:
    limited = status == 429 or code in RATE_LIMITED
    reset = str(headers.get("x-ogw-ratelimit-reset") or headers.get("Retry-After") or "")
    after = float(reset) if reset.replace(".", "", 1).isdigit() else (1.0 if limited else None)
    return FeishuAPIError(f"{path}: HTTP {status} code {code}: {msg[:200] or 'error'}", status=status, code=code,
                          retryable=status >= 500 or limited or code in TOKEN_INVALID, retry_after=after)
