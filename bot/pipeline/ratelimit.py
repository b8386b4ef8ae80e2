"""Per-sender token buckets (in memory): a burst is allowed, a flood is refused."""
from __future__ import annotations

import time


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

    def ready(self, key: str) -> bool:
        """Whether `allow(key)` would pass now, without taking a token (a check before costly work)."""
        return self.rate <= 0 or self._tokens(key, time.monotonic()) >= 1.0

    def allow(self, key: str) -> bool:
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
