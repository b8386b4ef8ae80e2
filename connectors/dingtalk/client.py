"""The DingTalk API for one app: access token, robot sends, session webhooks, file download.

The v1.0 endpoints (api.dingtalk.com) go through aiohttp: the access token is cached per app,
refreshed before it expires by one request however many senders wait (in every process of the
deployment when the cache handed in is shared: `connectors.cache`), and refreshed and retried
once when DingTalk says it is no longer valid. The old oapi endpoints that `dingtalk-sdk` covers
(gettoken, users) run through it in a worker thread: it uses blocking `requests`.
"""
from __future__ import annotations

import asyncio
import json
import platform
import socket
from urllib.parse import urlparse

import aiohttp

from connectors.cache import AppToken, LocalTokenCache, TokenCache
from connectors.dingtalk.config import DingTalkApp
from connectors.http import PooledSession, json_object, read_capped

TOKEN_PATH = "/v1.0/oauth2/accessToken"
USER_TOKEN_PATH = "/v1.0/oauth2/userAccessToken"
ME_PATH = "/v1.0/contact/users/me"
OTO_PATH = "/v1.0/robot/oToMessages/batchSend"
GROUP_PATH = "/v1.0/robot/groupMessages/send"
DOWNLOAD_PATH = "/v1.0/robot/messageFiles/download"
STREAM_OPEN_PATH = "/v1.0/gateway/connections/open"
CARD_CREATE_PATH = "/v1.0/card/instances/createAndDeliver"
CARD_UPDATE_PATH = "/v1.0/card/instances"
CARD_STREAM_PATH = "/v1.0/card/streaming"
CARD_CALLBACK_PATH = "/v1.0/card/callbacks/register"
AUTH_ERRORS = ("InvalidAuthentication", "invalidAuthentication", "Unauthorized")
WEBHOOK_EXPIRED = 300001  # the session webhook is no longer valid
WEBHOOK_RETRY = {130101}  # sending too fast


class DingTalkAPIError(Exception):
    def __init__(self, message: str, *, status: int = 0, code: str = "", retryable: bool = False,
                 retry_after: float | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.retryable, self.retry_after = status, code, retryable, retry_after
        self.detail = detail or message  # DingTalk's own words, without our context


class WebhookExpired(DingTalkAPIError):
    pass


class DingTalkClient:
    def __init__(self, app: DingTalkApp, *, timeout: float = 15.0, tokens: TokenCache | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self._http = PooledSession(timeout)
        self.app_token = AppToken(tokens or LocalTokenCache(), f"dingtalk:{app.app_key}", self._fetch_token)  # one per app, whichever process asks

    async def aclose(self) -> None:
        await self._http.aclose()

    # access token ----------------------------------------------------------------------------
    async def token(self) -> str:
        """The app's token (single flight: the waiters reuse what the first one fetched)."""
        return await self.app_token.get()

    async def _fetch_token(self) -> tuple[str, float]:
        data = await self._request(self.app.api_base + TOKEN_PATH, {"appKey": self.app.app_key, "appSecret": self.app.app_secret.get_secret_value()})
        token, ttl = str(data.get("accessToken") or ""), float(data.get("expireIn") or 7200)
        if not token:
            raise DingTalkAPIError("DingTalk returned no accessToken", retryable=True)
        return token, ttl - min(300.0, ttl * 0.2)

    async def call(self, path: str, body: dict, *, method: str = "POST") -> dict:
        """POST (or PUT) a v1.0 endpoint with the app's token; on an invalid-token answer refresh and retry once."""
        return await self.app_token.use(lambda token: self._request(self.app.api_base + path, body, token, method=method),
                                        lambda exc: isinstance(exc, DingTalkAPIError) and (exc.status == 401 or exc.code in AUTH_ERRORS))

    async def _request(self, url: str, body: dict | None, token: str | None = None, *, method: str = "POST") -> dict:
        """One v1.0 call (a POST with a JSON body, or `method` GET without one); an HTTP error becomes DingTalkAPIError."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["x-acs-dingtalk-access-token"] = token
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        try:
            async with self._http().request(method, url, data=data, headers=headers) as r:
                text = await r.text()
                data = json_object(text)
                if r.status >= 400:
                    raise _api_error(r.status, data, text, r.headers.get("Retry-After"), urlparse(url).path)
                return data
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DingTalkAPIError(f"cannot reach {urlparse(url).netloc}: {type(exc).__name__} {exc}", retryable=True) from None

    # robot messages --------------------------------------------------------------------------
    async def send_to_users(self, user_ids: list[str], msg_key: str, param: dict) -> dict:
        data = await self.call(OTO_PATH, {"robotCode": self.app.robot_code, "userIds": user_ids, "msgKey": msg_key,
                                          "msgParam": json.dumps(param, ensure_ascii=False)})
        if data.get("invalidStaffIdList"):
            raise DingTalkAPIError(f"DingTalk refused staff ids {data['invalidStaffIdList']}: not in this corp or cannot see the robot",
                                   code="invalidStaffIdList")
        if data.get("flowControlledStaffIdList"):
            raise DingTalkAPIError("DingTalk is rate-limiting messages to this user", code="flowControlled", retryable=True, retry_after=60)
        return data

    async def send_to_group(self, open_conversation_id: str, msg_key: str, param: dict) -> dict:
        return await self.call(GROUP_PATH, {"robotCode": self.app.robot_code, "openConversationId": open_conversation_id,
                                            "msgKey": msg_key, "msgParam": json.dumps(param, ensure_ascii=False)})

    async def webhook(self, url: str, body: dict) -> None:
        """Reply through a message's sessionWebhook (no token: the URL is the credential)."""
        try:
            async with self._http().post(url, json=body) as r:
                text = await r.text()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DingTalkAPIError(f"session webhook unreachable: {type(exc).__name__}", retryable=True) from None
        data = json_object(text)
        code = data.get("errcode", 0 if r.status < 400 else r.status)
        if code in (0, "0"):
            return
        msg = f"session webhook errcode {code}: {str(data.get('errmsg', text))[:200]}"
        if str(code) == str(WEBHOOK_EXPIRED):
            raise WebhookExpired(msg, status=r.status, code=str(code))
        retryable = r.status >= 500 or (str(code).isdigit() and int(code) in WEBHOOK_RETRY)
        raise DingTalkAPIError(msg, status=r.status, code=str(code), retryable=retryable)

    # interactive cards (互动卡片 / AI 卡片) ------------------------------------------------------
    async def create_card(self, body: dict) -> dict:
        """createAndDeliver: one card from a template, delivered to one open space (robot chat or group)."""
        data = await self.call(CARD_CREATE_PATH, body)
        results = ((data.get("result") or {}).get("deliverResults") or []) if isinstance(data.get("result"), dict) else []
        failed = [r for r in results if isinstance(r, dict) and r.get("success") is False]
        if data.get("success") is False or failed:
            why = str((failed[0] if failed else data).get("errorMsg") or data.get("message") or "not delivered")
            raise DingTalkAPIError(f"{CARD_CREATE_PATH}: card not delivered: {why[:200]}", code="deliverFailed", detail=why)
        return data

    async def update_card(self, body: dict) -> dict:
        return await self.call(CARD_UPDATE_PATH, body, method="PUT")

    async def stream_card(self, body: dict) -> dict:
        return await self.call(CARD_STREAM_PATH, body, method="PUT")

    async def register_card_callback(self, route_key: str, url: str, api_secret: str) -> dict:
        return await self.call(CARD_CALLBACK_PATH, {"callbackRouteKey": route_key, "callbackUrl": url, "apiSecret": api_secret,
                                                    "forceUpdate": True})

    # files -----------------------------------------------------------------------------------
    async def download(self, download_code: str, max_bytes: int) -> bytes:
        data = await self.call(DOWNLOAD_PATH, {"downloadCode": download_code, "robotCode": self.app.robot_code})
        url = str(data.get("downloadUrl") or "")
        if not url.startswith(("http://", "https://")):
            raise DingTalkAPIError("DingTalk returned no downloadUrl for this file")
        try:
            async with self._http().get(url) as r:
                if r.status >= 400:
                    raise DingTalkAPIError(f"file download failed: HTTP {r.status}", status=r.status, retryable=r.status >= 500)
                return await read_capped(r, max_bytes, DingTalkAPIError(f"file is larger than the {max_bytes // (1024 * 1024)} MB upload limit"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DingTalkAPIError(f"file download failed: {type(exc).__name__}", retryable=True) from None

    # stream mode -----------------------------------------------------------------------------
    async def open_stream(self, topics: list[str], version: str) -> tuple[str, str]:
        """Ask the Stream gateway for a websocket endpoint and a one-time ticket (valid about 90 s)."""
        body = {"clientId": self.app.app_key, "clientSecret": self.app.app_secret.get_secret_value(),
                "subscriptions": [{"type": "CALLBACK", "topic": t} for t in topics],
                "ua": f"dingtalk-sdk-python/v{version}-union copilot", "localIp": _local_ip()}
        data = await self._request(self.app.api_base + STREAM_OPEN_PATH, body)
        endpoint, ticket = str(data.get("endpoint") or ""), str(data.get("ticket") or "")
        if not endpoint.startswith(("ws://", "wss://")) or not ticket:
            raise DingTalkAPIError("the Stream gateway returned no endpoint/ticket", retryable=True)
        return endpoint, ticket

    # old oapi endpoints via dingtalk-sdk -------------------------------------------------------
    def _sdk(self):
        from dingtalk.client import AppKeyClient

        client = AppKeyClient(self.app.key, self.app.app_key, self.app.app_secret.get_secret_value(), timeout=self.timeout)
        client.API_BASE_URL = self.app.oapi_base + "/"
        return client

    async def oapi_summary(self) -> dict:
        """gettoken on the old endpoint, then how many members the app can see (needs the contacts scope)."""

        def run() -> dict:
            client = self._sdk()
            _ = client.access_token
            try:
                return {"token": True, "members": client.user.get_org_user_count(0)}
            except Exception as exc:
                return {"token": True, "members": None, "reason": str(exc)[:200]}

        return await asyncio.to_thread(run)

    # web sign-in ----------------------------------------------------------------------------------
    async def signed_in_userid(self, auth_code: str) -> str:
        """The corp member who scanned the login QR code: the code becomes a user token (the app's client id and
        secret vouch for the exchange), the token names the person (unionId), and the app's corp maps that to the
        member's userid (a person outside the corp has none: an error)."""
        data = await self._request(self.app.api_base + USER_TOKEN_PATH, {"clientId": self.app.app_key, "clientSecret":
                                self.app.app_secret.get_secret_value(), "code": auth_code, "grantType": "authorization_code"})
        user_token = str(data.get("accessToken") or "")
        if not user_token:
            raise DingTalkAPIError("DingTalk returned no user accessToken")
        me = await self._request(self.app.api_base + ME_PATH, None, user_token, method="GET")
        union_id = str(me.get("unionId") or "")
        if not union_id:
            raise DingTalkAPIError("DingTalk named nobody for this sign-in")

        def userid() -> str:
            found = self._sdk().user.get_userid_by_unionid(union_id)
            return str(found.get("userid") or "") if isinstance(found, dict) else ""

        try:
            return await asyncio.to_thread(userid)
        except Exception as exc:  # dingtalk-sdk raises its own client errors (not a member of this corp, …)
            raise DingTalkAPIError(f"not a member of this corp: {str(exc)[:120]}") from None

    async def user(self, staff_id: str) -> dict:
        """One member's profile (name, mobile, departments) from the old `user/get` endpoint."""
        return await asyncio.to_thread(lambda: dict(self._sdk().user.get(staff_id)))


def _api_error(status: int, data: dict, text: str, retry_after: str | None, path: str) -> DingTalkAPIError:
    code = str(data.get("code") or data.get("errcode") or status)
    message = str(data.get("message") or data.get("errmsg") or text[:200] or f"HTTP {status}")
    throttled = status == 429 or "Throttling" in code or "QpsLimit" in code
    after = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else (1.0 if throttled else None)
    return DingTalkAPIError(f"{path}: HTTP {status} {code}: {message}", status=status, code=code,
                            retryable=status >= 500 or throttled, retry_after=after, detail=message)


def _local_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return platform.node()[:64]
