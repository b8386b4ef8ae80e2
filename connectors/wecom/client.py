"""The WeCom server API for one corp's app, on aiohttp: access_token, message/send, media/get, users.

- access_token is cached until shortly before it expires and fetched once however many callers
  want it at the same moment (`connectors.cache.cached_token`: a lock, re-checked inside); with a shared
  cache (Redis) one process fetches it for every process of the deployment;
- a call answered with 40001/40014/42001 (token invalid or expired) gets a fresh token and is
  retried once;
- every other errcode becomes a `WeComError` that says what it means and how to fix it (60020:
  the server's IP is not in the app's trusted IPs), logged at most once every few minutes per code;
- sends are paced by token buckets: one for the app, one per member (WeCom silently drops more
  than 30 messages a minute or 1000 an hour to one member).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import aiohttp

from connectors.cache import LocalTokenCache, TokenCache, cached_token
from connectors.http import PooledSession
from connectors.wecom.config import CorpConfig

log = logging.getLogger("copilot.wecom")

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
RETRYABLE = frozenset({-1, 45009, 45033, 45047, 50001})
# errcode -> (what it means, how to fix it)
ERRORS: dict[int, tuple[str, str]] = {
    -1: ("WeCom is busy", "nothing to do; the call is retried"),
    40001: ("the app Secret is wrong (or the token is invalid)", "copy the app's Secret again (应用管理 → your app → Secret → 查看) into COPILOT_WECOM_SECRET / secret"),
    40013: ("the corp id is wrong", "copy 我的企业 → 企业信息 → 企业ID into COPILOT_WECOM_CORP_ID / corp_id"),
    40014: ("the access_token is invalid", "nothing to do; a fresh token is fetched"),
    40056: ("the agent id is wrong", "set COPILOT_WECOM_AGENT_ID / agent_id to the app's AgentId (应用管理 → your app)"),
    40007: ("the media id is invalid or expired (files can be fetched for 3 days)", "ask the sender to send the file again"),
    40091: ("the app Secret is wrong", "copy the app's Secret again (应用管理 → your app → Secret → 查看)"),
    41001: ("access_token missing", "nothing to do; a fresh token is fetched"),
    42001: ("the access_token expired", "nothing to do; a fresh token is fetched"),
    44004: ("the message content is empty", "a bug: report it with the log line"),
    45002: ("the message is too long", "a bug in splitting: report it with the log line"),
    45009: ("the API call limit was reached", "nothing to do; sends are retried later"),
    45033: ("too many concurrent API calls", "nothing to do; the call is retried"),
    48002: ("the app may not call this API", "grant the app the permission (应用管理 → your app → API 权限), or use the contact-sync secret"),
    60011: ("the app may not read this member or department", "add the people to the app's visible range (应用管理 → your app → 可见范围)"),
    60020: ("this server's IP is not in the app's trusted IPs",
            "add the server's public egress IP to 应用管理 → your app → 企业可信IP (apps created after 2022-06-20 must call from a fixed, trusted IP)"),
    60111: ("the user id does not exist", "check the user id in 通讯录"),
    81013: ("the user is not in the app's visible range", "add the user (or their department) to 应用管理 → your app → 可见范围"),
    301002: ("the app may not access this member", "add the people to the app's visible range (应用管理 → your app → 可见范围)"),
}
_FROM_IP = re.compile(r"from ip: ?([0-9a-fA-F.:]+)")


class WeComError(Exception):
    """A WeCom API failure with its errcode (None: the API could not be reached)."""

    def __init__(self, errcode: int | None, errmsg: str, path: str, *, retry_after: float | None = None) -> None:
        self.errcode, self.errmsg, self.path = errcode, errmsg, path
        meaning, self.fix = ERRORS.get(errcode, ("", "")) if errcode is not None else ("WeCom API unreachable", "check the network and COPILOT_WECOM_API_BASE")
        ip = _FROM_IP.search(errmsg or "")
        if errcode == 60020 and ip:
            self.fix = self.fix.replace("the server's public egress IP", f"{ip.group(1)} (this server's egress IP)")
        if errcode == 40001 and path == "/cgi-bin/gettoken":
            meaning = "the app Secret is wrong"
        self.meaning = meaning
        self.retryable = errcode is None or errcode in RETRYABLE or errcode == 60020  # 60020: once the admin fixes it, queued sends go out
        self.retry_after = retry_after if retry_after is not None else (60.0 if errcode in (60020, 45009) else None)
        code = "network" if errcode is None else f"errcode {errcode}"
        super().__init__(f"WeCom {path}: {code} {errmsg.split(', hint')[0]}" + (f" -- {meaning}" if meaning else "")
                         + (f". Fix: {self.fix}" if self.fix else ""))


class TokenBucket:
    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(float(burst), 1.0)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0: now)."""
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        if self.rate > 0:
            self.tokens -= 1.0


class Pacer:
    """One bucket for the app, one per member; a send takes a token from both or waits."""

    def __init__(self, corp: CorpConfig) -> None:
        self.corp = corp
        self.app = TokenBucket(corp.rate_per_minute, corp.rate_burst)
        self.users: dict[str, TokenBucket] = {}

    def reserve(self, user: str) -> float:
        now = time.monotonic()
        ub = self.users.get(user)
        if ub is None:
            if len(self.users) > 50_000:  # forget members idle long enough to have a full bucket again
                self.users = {k: b for k, b in self.users.items() if now - b.at < 3600}
            ub = self.users[user] = TokenBucket(self.corp.user_rate_per_minute, self.corp.user_burst)
        wait = max(self.app.wait_time(now), ub.wait_time(now))
        if wait == 0.0:
            self.app.take()
            ub.take()
        return wait


class WeComClient:
    def __init__(self, corp: CorpConfig, *, timeout: float = 10.0, tokens: TokenCache | None = None) -> None:
        self.corp = corp
        self.base = corp.api_base.rstrip("/")
        self.pacer = Pacer(corp)
        self._pool = PooledSession(timeout)
        self.tokens = tokens or LocalTokenCache()
        self.token_key = f"wecom:{corp.corp_id}:{corp.agent_id}"  # one token per corp app, whichever process asks
        self._logged: dict[int | None, float] = {}
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise WeComError(None, "the connector is shutting down", "")
        return self._pool()

    async def aclose(self) -> None:
        self._closed = True
        await self._pool.aclose()

    # access token -----------------------------------------------------------------------------
    async def access_token(self, *, stale: str = "") -> str:
        """The cached token; `stale` is one WeCom just refused, so a new one is fetched instead."""
        return await cached_token(self.tokens, self.token_key, self._fetch_token, stale=stale)

    async def _fetch_token(self) -> tuple[str, float]:
        data = await self._request("GET", "/cgi-bin/gettoken", params={"corpid": self.corp.corp_id, "corpsecret": self.corp.secret.get_secret_value()})
        token, expires_in = data.get("access_token"), data.get("expires_in", 7200)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WeComError(-2, "gettoken answered without access_token", "/cgi-bin/gettoken")
        return token, expires_in - min(300.0, expires_in * 0.1)  # refresh early

    # calls ------------------------------------------------------------------------------------
    async def call(self, method: str, path: str, *, params: dict | None = None, body: dict | None = None) -> dict:
        """An API call with the app's token, refreshed and retried once when WeCom says it expired."""
        token = await self.access_token()
        try:
            return await self._request(method, path, params={**(params or {}), "access_token": token}, body=body)
        except WeComError as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            log.info("wecom %s: token refused (%s), refreshing and retrying once", self.corp.key, exc.errcode)
        token = await self.access_token(stale=token)
        return await self._request(method, path, params={**(params or {}), "access_token": token}, body=body)

    async def _request(self, method: str, path: str, *, params: dict, body: dict | None = None) -> dict:
        try:
            data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
            async with self._http().request(method, self.base + path, params=params, data=data,
                                            headers={"Content-Type": "application/json"} if data else None) as r:
                if r.status >= 500 or r.status == 429:
                    raise self._error(WeComError(None, f"HTTP {r.status}", path))
                try:
                    payload = await r.json(content_type=None)
                except (json.JSONDecodeError, UnicodeDecodeError, aiohttp.ContentTypeError):
                    raise self._error(WeComError(-2, f"HTTP {r.status}, not JSON", path)) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._error(WeComError(None, f"{type(exc).__name__} {exc}".strip(), path)) from None
        if not isinstance(payload, dict):
            raise self._error(WeComError(-2, "answer is not a JSON object", path))
        code = payload.get("errcode", 0)
        if code:
            raise self._error(WeComError(int(code) if isinstance(code, int) else -2, str(payload.get("errmsg", "")), path))
        return payload

    def _error(self, exc: WeComError) -> WeComError:
        """Log configuration errors (with their fix) at most every 5 minutes per code; return the error."""
        if exc.errcode in TOKEN_ERRORS and exc.path != "/cgi-bin/gettoken":
            return exc
        now = time.monotonic()
        if now - self._logged.get(exc.errcode, -1e9) > 300:
            self._logged[exc.errcode] = now
            level = logging.WARNING if exc.retryable and exc.errcode != 60020 else logging.ERROR
            log.log(level, "wecom corp %s: %s", self.corp.key, exc)
        return exc

    # the APIs we use ----------------------------------------------------------------------------
    async def send(self, payload: dict) -> dict:
        """message/send; `invaliduser` (not in the app's visible range) is an error, not a silent drop."""
        data = await self.call("POST", "/cgi-bin/message/send", body=payload)
        bad = data.get("invaliduser") or ""
        if bad:
            raise self._error(WeComError(81013, f"invaliduser {bad}", "/cgi-bin/message/send"))
        return data

    async def media(self, media_id: str, max_bytes: int) -> tuple[bytes, str]:
        """media/get: the file's bytes and its content type."""
        path, token = "/cgi-bin/media/get", ""
        for attempt in (0, 1):
            token = await self.access_token(stale=token)
            try:
                async with self._http().get(self.base + path, params={"access_token": token, "media_id": media_id}) as r:
                    ctype = r.headers.get("Content-Type", "")
                    if r.status >= 400:
                        raise self._error(WeComError(None, f"HTTP {r.status}", path))
                    if r.content_length is not None and r.content_length > max_bytes:
                        raise WeComError(-3, f"file of {r.content_length} bytes is over the {max_bytes}-byte limit", path)
                    buf = bytearray()  # read(n) alone returns only what has arrived so far
                    while (chunk := await r.content.read(65536)) and len(buf) <= max_bytes:
                        buf += chunk
                    data = bytes(buf)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise self._error(WeComError(None, f"{type(exc).__name__} {exc}".strip(), path)) from None
            if len(data) > max_bytes:
                raise WeComError(-3, f"file is over the {max_bytes}-byte limit", path)
            if "json" in ctype or "text/plain" in ctype or data[:10].lstrip().startswith(b'{"errcode'):
                try:
                    payload = json.loads(data)
                except ValueError:
                    payload = None
                if isinstance(payload, dict) and payload.get("errcode"):
                    code = int(payload["errcode"])
                    if code in TOKEN_ERRORS and attempt == 0:
                        continue
                    raise self._error(WeComError(code, str(payload.get("errmsg", "")), path))
            return data, ctype
        raise WeComError(42001, "token refused twice", "/cgi-bin/media/get")

    async def agent(self) -> dict:
        return await self.call("GET", "/cgi-bin/agent/get", params={"agentid": self.corp.agent_id})

    async def user(self, userid: str) -> dict:
        return await self.call("GET", "/cgi-bin/user/get", params={"userid": userid})

    async def department_users(self, department_id: int) -> list[dict]:
        data = await self.call("GET", "/cgi-bin/user/list", params={"department_id": department_id, "fetch_child": 1})
        users = data.get("userlist", [])
        return [u for u in users if isinstance(u, dict) and u.get("userid")] if isinstance(users, list) else []
