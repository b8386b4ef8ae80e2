"""Short-lived state a connector may share with the deployment's other processes: platform access tokens and the
replay guard's memory of signatures.

Two small protocols and their in-process versions. By default every connector keeps its own (one `gettoken` per app
per process); when the deployment has a shared store (Redis, `COPILOT_REDIS_URL`), the app factory builds shared
versions and hands them down in `ChannelContext.tokens` / `ChannelContext.claims`, so that one process fetches a
token for all of them. A shared store that cannot be reached degrades to the in-process behaviour; a connector never
sees the difference, except that `SharedClaims` raises `CacheUnavailable` so the replay guard can use the database.
`AppToken` is how a platform client uses its token: cached, and refreshed once when the platform refuses it.
Imports nothing above the channel core.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Awaitable, Callable, Protocol, TypeVar, runtime_checkable


class CacheUnavailable(Exception):
    """The shared store cannot be reached just now: the caller uses what it has without it."""


@runtime_checkable
class TokenCache(Protocol):
    """Access tokens by key (one per platform app), each until its time-to-live ends."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: float) -> None: ...  # ttl in seconds

    async def forget(self, key: str, value: str) -> None: ...  # the platform refused `value`: drop it if still cached

    def single_flight(self, key: str) -> AbstractAsyncContextManager[None]: ...  # one fetcher at a time per key


@runtime_checkable
class SharedClaims(Protocol):
    """The replay guard's memory shared by the processes (called from a worker thread, so plain calls)."""

    def claim(self, key: str, what: str, ttl: float) -> str | None: ...  # None: new (now remembered); else what it came with

    def seen(self, key: str) -> str | None: ...


class LocalTokenCache:
    """This process's tokens: a dict with deadlines and one asyncio lock per key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._values: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key: str) -> str | None:
        hit = self._values.get(key)
        return hit[0] if hit is not None and self.clock() < hit[1] else None

    def left(self, key: str) -> float:
        """Seconds `key` has left (0: none)."""
        hit = self._values.get(key)
        return max(0.0, hit[1] - self.clock()) if hit is not None else 0.0

    async def set(self, key: str, value: str, ttl: float) -> None:
        self._values[key] = (value, self.clock() + ttl)

    async def forget(self, key: str, value: str) -> None:
        if self._values.get(key, ("",))[0] == value:
            del self._values[key]

    def single_flight(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (token, seconds it may be used: the platform's life less a margin)


async def cached_token(cache: TokenCache, key: str, fetch: Fetch, *, stale: str = "") -> str:
    """The cached token for `key`, fetched by one caller however many want it at once (the others wait and reuse it).
    `stale`: a token the platform just refused: a different one is returned, fetched if nobody has yet."""
    token = await cache.get(key)
    if token and token != stale:
        return token
    async with cache.single_flight(key):
        token = await cache.get(key)
        if token and token != stale:
            return token  # someone else (here or in another process) refreshed it while we waited
        if stale:
            await cache.forget(key, stale)
        token, ttl = await fetch()
        await cache.set(key, token, ttl)
        return token


T = TypeVar("T")


class AppToken:
    """One platform app's access token through `cached_token`, and a call made with it: when the platform says the
    token is no longer valid, it is never handed out again, and the call runs once more with a fresh one."""

    def __init__(self, cache: TokenCache, key: str, fetch: Fetch) -> None:
        self.cache, self.key, self._fetch = cache, key, fetch
        self.fetches = 0  # tokens this process fetched from the platform
        self._refused = ""  # the last token the platform refused

    async def get(self) -> str:
        return await cached_token(self.cache, self.key, self._fetched, stale=self._refused)

    async def _fetched(self) -> tuple[str, float]:
        token, ttl = await self._fetch()
        self.fetches += 1
        self._refused = ""  # what the platform hands out now is good (it may be the same token again)
        return token, ttl

    async def use(self, call: Callable[[str], Awaitable[T]], refused: Callable[[Exception], bool]) -> T:
        """`call(token)`; when it raises what `refused` says is the token refused, once more with a fresh token."""
        for attempt in (1, 2):
            token = await self.get()
            try:
                return await call(token)
            except Exception as exc:
                if attempt == 2 or not refused(exc):
                    raise
                self._refused = token
        raise AssertionError("unreachable")
