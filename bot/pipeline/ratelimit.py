"""Per-key token buckets: a burst is allowed, a flood is refused.

`RateLimiter` keeps this process's buckets in memory. With Redis (`COPILOT_REDIS_URL`, bot/ops/shared.py) the
factory makes `SharedRateLimiter`s instead: the same buckets, kept in Redis by a Lua script on Redis's clock, so a
sender over the limit at one process is refused at every other; while Redis cannot be reached each process falls
back to its own buckets (a sender is never refused because Redis is down). Both are asked with `await`.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

from bot.ops.shared import ERRORS, SharedRedis


class Limiter(Protocol):
    @property
    def retry_after(self) -> float: ...

    async def ready(self, key: str) -> bool: ...  # whether `allow(key)` would pass now, without taking a token

    async def allow(self, key: str) -> bool: ...


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst or max(per_minute // 3, 5))
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def retry_after(self) -> float:
        """Seconds until a refused sender has a token again."""
        return 1.0 / self.rate if self.rate > 0 else 0.0

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    async def ready(self, key: str) -> bool:
        """Whether `allow(key)` would pass now, without taking a token (a check before costly work)."""
        return self.rate <= 0 or self._tokens(key, time.monotonic()) >= 1.0

    async def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle senders
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}
        return True


# KEYS[1]: the bucket; ARGV: tokens per second, capacity, tokens to take (1: allow, 0: ready). 1 = allowed.
BUCKET = """
local rate, cap, take = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'n', 't')
local n = cap
if b[1] then n = math.min(cap, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate) end
if n < 1 then return 0 end
if take > 0 then
  redis.call('HSET', KEYS[1], 'n', tostring(n - take), 't', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 1)
end
return 1
"""


class SharedRateLimiter:
    """RateLimiter's buckets in Redis, shared by every process; this process's own while Redis is unreachable."""

    def __init__(self, shared: SharedRedis, name: str, per_minute: int, burst: int | None = None) -> None:
        self.local = RateLimiter(per_minute, burst)
        self.shared = shared
        self.name = name
        self._bucket = shared.aio.register_script(BUCKET)

    @property
    def retry_after(self) -> float:
        return self.local.retry_after

    async def ready(self, key: str) -> bool:
        return await self._take(key, 0)

    async def allow(self, key: str) -> bool:
        return await self._take(key, 1)

    async def _take(self, key: str, take: int) -> bool:
        if self.local.rate <= 0:
            return True
        if self.shared.available("limit"):
            try:
                allowed = await self._bucket(keys=[self.shared.key("limit", self.name, key)],
                                             args=[repr(self.local.rate), repr(self.local.capacity), take])
            except ERRORS as exc:
                self.shared.failed("limit", exc)
            else:
                self.shared.ok()
                return bool(allowed)
        return await (self.local.allow(key) if take else self.local.ready(key))


LimiterFactory = Callable[..., Limiter]  # (name, per_minute, burst=None) -> a limiter


def limiters(shared: SharedRedis | None) -> LimiterFactory:
    """How the app makes its rate limiters: shared through Redis when there is one, else per process."""
    def make(name: str, per_minute: int, burst: int | None = None) -> Limiter:
        return SharedRateLimiter(shared, name, per_minute, burst) if shared is not None else RateLimiter(per_minute, burst)

    return make
