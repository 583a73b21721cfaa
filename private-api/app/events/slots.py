"""Open Server-Sent Event streams per user: at most ``limit`` at once, across all of the user's keys.

``InMemoryStreamSlots`` counts per process; ``RedisStreamSlots`` counts in Redis, so every API
process shares one cap per user. A slot is released when its stream ends, however it ends; one
that is never released (a process killed mid-stream) lapses ``lifetime + LAPSE_GRACE_S`` after it
was taken, so a leak cannot lock a user out for good. Streams end at their lifetime anyway.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import redis

from app.config import Settings
from app.errors import ProblemError

log = logging.getLogger(__name__)

# A released slot is gone at once; this only bounds how long a slot nobody released still counts.
LAPSE_GRACE_S = 60.0


class TooManyStreams(ProblemError):
    status = 429
    code = "too_many_streams"
    title = "Too many open event streams"


class StreamSlot:
    """One open stream's place in its user's count; ``release`` is idempotent."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class StreamSlots(Protocol):
    def acquire(self, user_id: str, limit: int) -> StreamSlot:
        """A slot of ``user_id``'s ``limit``; raise ``TooManyStreams`` when all are taken."""
        ...

    def close(self) -> None: ...


def _refuse(limit: int, frees_in_s: float) -> TooManyStreams:
    # The oldest stream ends at its lifetime at the latest; usually one ends sooner.
    retry_after = max(1, math.ceil(frees_in_s))
    return TooManyStreams(
        f"At most {limit} event streams may be open at once for one user (all of its API keys); "
        f"close one, or retry in {retry_after} s.",
        limit=limit, retry_after=retry_after, headers={"Retry-After": str(retry_after)})


class InMemoryStreamSlots:
    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, float]] = {}  # user -> slot token -> lapses at (monotonic)

    def acquire(self, user_id: str, limit: int) -> StreamSlot:
        now = time.monotonic()
        token = uuid.uuid4().hex
        with self._lock:
            slots = {t: at for t, at in self._slots.get(user_id, {}).items() if at > now}
            if len(slots) >= limit:
                self._slots[user_id] = slots
                raise _refuse(limit, min(slots.values()) - LAPSE_GRACE_S - now)
            slots[token] = now + self.lifetime_s + LAPSE_GRACE_S
            self._slots[user_id] = slots
        return StreamSlot(lambda: self._release(user_id, token))

    def _release(self, user_id: str, token: str) -> None:
        with self._lock:
            slots = self._slots.get(user_id)
            if slots is not None:
                slots.pop(token, None)
                if not slots:
                    del self._slots[user_id]

    def close(self) -> None:
        pass


# One atomic take-or-refuse on Redis's clock: a sorted set of slot tokens scored by when they lapse.
_ACQUIRE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) - now}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {1, 0}
"""


class RedisStreamSlots:
    """Slots in Redis, shared by every API process that uses the same Redis and key prefix.

    If Redis cannot be reached it fails open to per-process slots, with a warning (as the rate
    limiter does): the cap protects capacity, and a Redis outage should not take streams down.
    """

    def __init__(self, client: redis.Redis, lifetime_s: float, prefix: str = "fmu-gateway:",
                 retry_after_s: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.lifetime_s = lifetime_s
        self.retry_after_s = retry_after_s
        self.fallback = InMemoryStreamSlots(lifetime_s)
        self._script = client.register_script(_ACQUIRE)
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, lifetime_s: float, prefix: str = "fmu-gateway:") -> RedisStreamSlots:
        # Short timeouts: a hung Redis must cost a stream's start milliseconds, not seconds.
        return cls(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5), lifetime_s, prefix)

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}streams:{user_id}"

    def acquire(self, user_id: str, limit: int) -> StreamSlot:
        if time.monotonic() < self._down_until:
            return self.fallback.acquire(user_id, limit)
        token = uuid.uuid4().hex
        ttl_ms = math.ceil((self.lifetime_s + LAPSE_GRACE_S) * 1000)
        try:
            taken, lapses_in_ms = self._script(keys=[self._key(user_id)], args=[limit, ttl_ms, token])
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + self.retry_after_s
            log.warning("stream slots: Redis unavailable (%s); per-process caps for %.0f s", exc, self.retry_after_s)
            return self.fallback.acquire(user_id, limit)
        if not taken:
            raise _refuse(limit, int(lapses_in_ms) / 1000 - LAPSE_GRACE_S)
        return StreamSlot(lambda: self._release(user_id, token))

    def _release(self, user_id: str, token: str) -> None:
        try:
            self.client.zrem(self._key(user_id), token)
        except redis.RedisError as exc:
            log.warning("stream slots: could not release a slot of user %s (%s); it lapses on its own",
                        user_id, exc)

    def close(self) -> None:
        self.client.close()


def create_stream_slots(settings: Settings) -> StreamSlots:
    if settings.redis_url:
        return RedisStreamSlots.from_url(settings.redis_url, settings.events_max_stream_s, settings.redis_key_prefix)
    return InMemoryStreamSlots(settings.events_max_stream_s)
