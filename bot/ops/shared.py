"""Redis (`COPILOT_REDIS_URL`, optional): the short-lived state the processes of a deployment share beyond the database.

What goes in it, all under the `copilot:` prefix and all with a time to live: platform access tokens
(`token:<platform>:<app>`, one `gettoken` per app for every process) and the lock that lets one process fetch them
(`lock:`), the rate-limit buckets of the intake and the web edge (`limit:<name>:<key>`, bot/pipeline/ratelimit.py),
and the replay guard's signatures of platform callbacks (`seen:<key>`, connectors/replay.py). The durable truth
(inbox, outbox, dedupe of messages, sessions, leases) stays in the database: nothing here must survive a restart.

When Redis cannot be reached, every use falls back to what a process does without it (its own token cache and
limits, the database's replay table): nothing is refused or lost for it. The first failure of an outage is logged as
a warning and every fallback is counted (`copilot_redis_fallbacks_total{use}`); Redis is tried again after
`retry_after` seconds, and its return is logged.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.cache import CacheUnavailable, LocalTokenCache

log = logging.getLogger("copilot.redis")
ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError)

RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
CLAIM = ("local old = redis.call('GET', KEYS[1]) if old then return old end "
         "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return false")


class SharedRedis:
    """One Redis for the deployment: an asyncio client for the event loop, a plain one for worker threads, and
    whether it is up (skipped for `retry_after` s after a failure, so an outage costs no time per message)."""

    def __init__(self, url: str, *, on_fallback: Callable[[str], None] = lambda use: None, prefix: str = "copilot:",
                 timeout: float = 0.5, retry_after: float = 2.0) -> None:
        opts = dict(socket_timeout=timeout, socket_connect_timeout=timeout)
        self.aio = aioredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 1), **opts)  # once more on a fresh connection
        self.sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **opts)
        self.where = self.aio.get_connection_kwargs().get("host", "?") + ":" + str(self.aio.get_connection_kwargs().get("port", ""))
        self.prefix = prefix
        self.on_fallback = on_fallback
        self.retry_after = retry_after
        self._down_until = 0.0
        self._down = False

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def available(self, use: str) -> bool:
        """Whether to try Redis now; False (and counted as a fallback of `use`) while it is known to be down."""
        if time.monotonic() < self._down_until:
            self.on_fallback(use)
            return False
        return True

    def failed(self, use: str, exc: BaseException) -> None:
        if not self._down:
            log.warning("Redis at %s unreachable (%s: %s): %s and everything else it shares fall back to this process "
                        "(and the database) until it is back", self.where, type(exc).__name__, exc, use)
        self._down = True
        self._down_until = time.monotonic() + self.retry_after
        self.on_fallback(use)

    def ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis at %s is back: tokens, rate limits and replay memory are shared again", self.where)

    async def ping(self) -> str:
        """The server's version (raises when unreachable): for `copilot doctor`."""
        info = await self.aio.info("server")
        return str(info.get("redis_version", "?"))

    async def aclose(self) -> None:
        await self.aio.aclose()
        self.sync.close()

    def tokens(self) -> "RedisTokenCache":
        return RedisTokenCache(self)

    def claims(self) -> "RedisClaims":
        return RedisClaims(self)


class RedisTokenCache:
    """connectors.cache.TokenCache in Redis, with this process's copy as the fallback (and the local lock first, so
    one coroutine per process asks Redis for the fetch lock). What Redis hands out is copied here with its time left,
    so an outage costs no `gettoken`; a Redis that comes back empty is given this copy rather than a new fetch."""

    def __init__(self, shared: SharedRedis, *, lock_ttl: float = 20.0, poll: float = 0.05) -> None:
        self.shared = shared
        self.local = LocalTokenCache()
        self.lock_ttl = lock_ttl  # longer than a token fetch may take (the clients time out after 10-15 s)
        self.poll = poll
        self._release = shared.aio.register_script(RELEASE)

    async def get(self, key: str) -> str | None:
        if not self.shared.available("token"):
            return await self.local.get(key)
        name = self.shared.key("token", key)
        try:
            pipe = self.shared.aio.pipeline(transaction=False)
            value, left_ms = await pipe.get(name).pttl(name).execute()
            if value:
                self.shared.ok()
                await self.local.set(key, value.decode(), max(0, left_ms) / 1000)
                return value.decode()
            mine = await self.local.get(key)
            if mine:  # Redis restarted (or lost it): the copy here is still good for every process
                await self.shared.aio.set(name, mine, nx=True, px=max(1, int(self.local.left(key) * 1000)))
            self.shared.ok()
            return mine
        except ERRORS as exc:
            self.shared.failed("token", exc)
            return await self.local.get(key)

    async def set(self, key: str, value: str, ttl: float) -> None:
        await self.local.set(key, value, ttl)  # kept here too: what this process uses if Redis goes away
        if self.shared.available("token"):
            try:
                await self.shared.aio.set(self.shared.key("token", key), value, px=max(1, int(ttl * 1000)))
            except ERRORS as exc:
                self.shared.failed("token", exc)

    async def forget(self, key: str, value: str) -> None:
        await self.local.forget(key, value)
        if self.shared.available("token"):
            try:
                await self._release(keys=[self.shared.key("token", key)], args=[value])
            except ERRORS as exc:
                self.shared.failed("token", exc)

    @asynccontextmanager
    async def single_flight(self, key: str) -> AsyncIterator[None]:
        async with self.local.single_flight(key):
            lock, mine = self.shared.key("lock", key), secrets.token_hex(8)
            held = False
            deadline = time.monotonic() + self.lock_ttl
            while self.shared.available("token") and time.monotonic() < deadline:
                try:
                    held = bool(await self.shared.aio.set(lock, mine, nx=True, px=int(self.lock_ttl * 1000)))
                except ERRORS as exc:
                    self.shared.failed("token", exc)
                    break
                if held:
                    break
                await asyncio.sleep(self.poll)  # another process is fetching: its token will be there when its lock goes
            try:
                yield
            finally:
                if held:
                    try:
                        await self._release(keys=[lock], args=[mine])
                    except ERRORS as exc:
                        self.shared.failed("token", exc)  # the lock lapses by itself


class RedisClaims:
    """connectors.cache.SharedClaims in Redis (plain calls: the replay guard runs in a worker thread)."""

    def __init__(self, shared: SharedRedis) -> None:
        self.shared = shared
        self._claim = shared.sync.register_script(CLAIM)

    def claim(self, key: str, what: str, ttl: float) -> str | None:
        if not self.shared.available("replay"):
            raise CacheUnavailable("Redis is down")
        try:
            before = self._claim(keys=[self.shared.key("seen", key)], args=[what, max(1, int(ttl * 1000))])
        except ERRORS as exc:
            self.shared.failed("replay", exc)
            raise CacheUnavailable(str(exc)) from None
        self.shared.ok()
        return before.decode() if before is not None else None

    def seen(self, key: str) -> str | None:
        if not self.shared.available("replay"):
            raise CacheUnavailable("Redis is down")
        try:
            value = self.shared.sync.get(self.shared.key("seen", key))
        except ERRORS as exc:
            self.shared.failed("replay", exc)
            raise CacheUnavailable(str(exc)) from None
        self.shared.ok()
        return value.decode() if value is not None else None
