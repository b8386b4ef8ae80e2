"""Replay guard for signed platform callbacks: a timestamp window and the signatures seen within it.

A platform's signature proves who made a request, not when: a captured request can be sent again. A
callback whose timestamp is outside the window is refused; inside it, each signature is remembered until
its timestamp leaves the window, so the same signed request is recognised when it comes back.

The memory is in-process (a dict with expiry), which is enough for one `copilot serve`: with several
processes behind a load balancer a replay could reach another process within the window, where the durable
inbox still stores a platform message id once. Bounded: past `max_items` the oldest entries go first.
"""
from __future__ import annotations

import heapq
import time
from typing import Callable


class SeenSignatures:
    def __init__(self, window: float, *, max_items: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.window = window  # seconds either side of now
        self.max_items = max_items
        self.clock = clock
        self._seen: dict[str, tuple[float, str]] = {}  # key -> (expires at, what it signed)
        self._expiry: list[tuple[float, str]] = []  # a heap of (expires at, key)

    def in_window(self, timestamp: float) -> bool:
        return abs(self.clock() - timestamp) <= self.window

    def seen(self, key: str) -> str | None:
        """What the signature `key` came with before (e.g. a body hash), or None when it is new."""
        self._expire(self.clock())
        hit = self._seen.get(key)
        return hit[1] if hit is not None else None

    def remember(self, key: str, timestamp: float, what: str = "") -> None:
        """Keep `key` until its timestamp leaves the window."""
        self._expire(self.clock())
        until = timestamp + self.window
        self._seen[key] = (until, what)
        heapq.heappush(self._expiry, (until, key))
        while len(self._seen) > self.max_items:  # the ones closest to expiring go first
            self._expire(float("inf"), limit=len(self._seen) - self.max_items)

    def _expire(self, now: float, limit: int | None = None) -> None:
        dropped = 0
        while self._expiry and self._expiry[0][0] < now and (limit is None or dropped < limit):
            until, key = heapq.heappop(self._expiry)
            if key in self._seen and self._seen[key][0] == until:
                del self._seen[key]
                dropped += 1

    def __len__(self) -> int:
        return len(self._seen)
