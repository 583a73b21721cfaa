"""Per-API-key request rate limits: a token bucket that refills ``limit`` tokens per minute.

In memory, per process. A shared (Redis) limiter plugs in behind the same ``hit`` call.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from app.errors import ProblemError


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_s: int  # seconds until the bucket is full again

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_s)}


class RateLimited(ProblemError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class InMemoryRateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.limit = per_minute
        self._rate = per_minute / 60.0
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)

    def hit(self, key: str) -> RateLimitState:
        """Take one token for ``key``; raise ``RateLimited`` (with Retry-After) when there is none."""
        now = time.monotonic()
        with self._lock:
            tokens, updated = self._buckets.get(key, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - updated) * self._rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
        state = RateLimitState(self.limit, int(tokens), math.ceil((self.limit - tokens) / self._rate))
        if not allowed:
            retry_after = math.ceil((1.0 - tokens) / self._rate)
            raise RateLimited(f"More than {self.limit} requests per minute with this API key; "
                              f"retry in {retry_after} s.", retry_after=retry_after,
                              headers={"Retry-After": str(retry_after), **state.headers()})
        return state
