"""Per-tenant request rate limits: a token bucket of ``limit`` tokens that refills ``limit`` per minute,
keyed by user, so all of a user's API keys and tokens spend from one bucket.

The limit comes with each call (it is the caller's tier's), so a tier change applies at the next
request. ``InMemoryRateLimiter`` keeps buckets per process; ``RedisRateLimiter`` keeps them in
Redis, so every API process spends from one budget per user.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis

from app.config import Settings
from app.errors import ProblemError

log = logging.getLogger(__name__)

PERIOD_S = 60.0


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


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int) -> RateLimitState:
        """Take one token from ``key``'s bucket of ``limit``; raise ``RateLimited`` when it is empty."""
        ...

    def close(self) -> None: ...


def _outcome(limit: int, tokens: float, allowed: bool) -> RateLimitState:
    """The state after a hit that left ``tokens``; raises ``RateLimited`` if the hit was refused."""
    rate = limit / PERIOD_S
    state = RateLimitState(limit, int(tokens), math.ceil((limit - tokens) / rate))
    if not allowed:
        retry_after = max(1, math.ceil((1.0 - tokens) / rate))
        raise RateLimited(f"More than {limit} requests per minute with this API key; "
                          f"retry in {retry_after} s.", retry_after=retry_after,
                          headers={"Retry-After": str(retry_after), **state.headers()})
    return state


class InMemoryRateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)

    def hit(self, key: str, limit: int) -> RateLimitState:
        now = time.monotonic()
        with self._lock:
            tokens, updated = self._buckets.get(key, (float(limit), now))
            tokens = min(float(limit), tokens + (now - updated) * limit / PERIOD_S)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
        return _outcome(limit, tokens, allowed)

    def close(self) -> None:
        pass


# One atomic read-refill-take-write per hit, on Redis's clock (API hosts' clocks may disagree).
# The key expires when its bucket would be full again: a missing key and a full bucket are the same.
_TOKEN_BUCKET = """
local limit = tonumber(ARGV[1])
local rate = limit / tonumber(ARGV[2])
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = limit
  at = now
end
tokens = math.min(limit, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((limit - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every API process that uses the same Redis and key prefix.

    If Redis cannot be reached the limiter fails open to per-process buckets, with a warning:
    the request limit protects capacity, not money (credits and the concurrent-run cap are enforced
    in the database), so a Redis outage should not take the API down. Each process then allows a
    key's full budget until Redis answers again; Redis is retried after ``retry_after_s``.
    """

    def __init__(self, client: redis.Redis, prefix: str = "fmu-gateway:", retry_after_s: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self.fallback = InMemoryRateLimiter()
        self._script = client.register_script(_TOKEN_BUCKET)
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, prefix: str = "fmu-gateway:") -> RedisRateLimiter:
        # Short timeouts: a hung Redis must cost a request milliseconds, not seconds.
        return cls(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5), prefix)

    def hit(self, key: str, limit: int) -> RateLimitState:
        if time.monotonic() < self._down_until:
            return self.fallback.hit(key, limit)
        try:
            allowed, tokens = self._script(keys=[f"{self.prefix}ratelimit:{key}"], args=[limit, PERIOD_S])
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + self.retry_after_s
            log.warning("rate limiter: Redis unavailable (%s); per-process limits for %.0f s",
                        exc, self.retry_after_s)
            return self.fallback.hit(key, limit)
        return _outcome(limit, float(tokens), bool(allowed))

    def close(self) -> None:
        self.client.close()


def create_rate_limiter(settings: Settings) -> RateLimiter | None:
    """None when the operator turned request limits off (``rate_limit_per_minute=0``)."""
    if settings.rate_limit_per_minute == 0:
        return None
    if settings.redis_url:
        return RedisRateLimiter.from_url(settings.redis_url, settings.redis_key_prefix)
    return InMemoryRateLimiter()
