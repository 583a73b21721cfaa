"""The request limiters: token buckets in memory and in the real local Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis_keys import REDIS_URL, temporary_redis_prefix

from app.auth.rate_limit import (
    InMemoryRateLimiter,
    RateLimited,
    RateLimiter,
    RateLimitState,
    RedisRateLimiter,
    create_rate_limiter,
)
from app.auth.service import Principal
from app.billing import limits
from app.config import Settings

LimiterFactory = Callable[[], RateLimiter]


@pytest.fixture(params=["memory", "redis"])
def new_limiter(request: pytest.FixtureRequest) -> Iterator[LimiterFactory]:
    """Makes limiters that share buckets: one object in memory; separate clients of one Redis."""
    if request.param == "memory":
        shared = InMemoryRateLimiter()
        yield lambda: shared
        return
    made: list[RateLimiter] = []
    with temporary_redis_prefix("unit") as prefix:
        def make() -> RateLimiter:
            made.append(RedisRateLimiter.from_url(REDIS_URL, prefix))
            return made[-1]

        yield make
        for limiter in made:
            limiter.close()


def allowed(limiter: RateLimiter, key: str, limit: int, hits: int) -> list[RateLimitState | None]:
    """Each hit's state, or None where it was refused."""
    out: list[RateLimitState | None] = []
    for _ in range(hits):
        try:
            out.append(limiter.hit(key, limit))
        except RateLimited:
            out.append(None)
    return out


class TestTokenBucket:
    def test_a_full_bucket_allows_limit_requests_then_refuses_with_retry_after(
            self, new_limiter: LimiterFactory) -> None:
        limiter = new_limiter()
        states = [limiter.hit("k", 5) for _ in range(5)]
        assert [s.remaining for s in states] == [4, 3, 2, 1, 0]
        assert all(s.limit == 5 for s in states)
        with pytest.raises(RateLimited) as refused:
            limiter.hit("k", 5)
        error = refused.value
        assert error.status == 429 and error.code == "rate_limited"
        # One token every 12 s at 5 per minute.
        assert 1 <= int(error.headers["Retry-After"]) <= 12
        assert error.extra["retry_after"] == int(error.headers["Retry-After"])
        assert error.headers["RateLimit-Limit"] == "5" and error.headers["RateLimit-Remaining"] == "0"
        assert 48 <= int(error.headers["RateLimit-Reset"]) <= 60

    def test_each_key_has_its_own_bucket(self, new_limiter: LimiterFactory) -> None:
        limiter = new_limiter()
        assert None not in allowed(limiter, "a", 3, 3)
        assert allowed(limiter, "a", 3, 1) == [None]
        assert None not in allowed(limiter, "b", 3, 3)

    def test_tokens_come_back_at_limit_per_minute(self, new_limiter: LimiterFactory) -> None:
        limiter = new_limiter()
        assert allowed(limiter, "k", 120, 121)[-1] is None  # 2 tokens a second
        time.sleep(0.6)
        assert limiter.hit("k", 120).remaining == 0
        assert allowed(limiter, "k", 120, 1) == [None]

    def test_a_lower_limit_applies_at_the_next_request(self, new_limiter: LimiterFactory) -> None:
        limiter = new_limiter()
        assert limiter.hit("k", 600).remaining == 599
        assert limiter.hit("k", 3).remaining == 2  # e.g. a downgraded tier: the bucket shrinks to 3

    def test_every_limiter_on_the_backend_spends_from_one_budget(self, new_limiter: LimiterFactory) -> None:
        first, second = new_limiter(), new_limiter()
        results = [(first if i % 2 else second).hit("k", 6) for i in range(6)]
        assert [r.remaining for r in results] == [5, 4, 3, 2, 1, 0]
        assert allowed(first, "k", 6, 1) == allowed(second, "k", 6, 1) == [None]

    def test_concurrent_hits_take_exactly_the_budget(self, new_limiter: LimiterFactory) -> None:
        limiters = [new_limiter() for _ in range(4)]
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda i: allowed(limiters[i % 4], "k", 20, 1)[0], range(80)))
        assert sum(o is not None for o in outcomes) == 20
        assert sorted(o.remaining for o in outcomes if o is not None) == list(range(20))


class TestRedisRateLimiter:
    def test_a_bucket_expires_when_it_would_be_full_again(self) -> None:
        with temporary_redis_prefix("expiry") as prefix:
            limiter = RedisRateLimiter.from_url(REDIS_URL, prefix)
            limiter.hit("k", 60)  # one token short: full again in 1 s
            ttl = limiter.client.pttl(f"{prefix}ratelimit:k")
            assert 1000 < ttl <= 2000  # + 1 s of slack
            limiter.close()

    def test_an_unreachable_redis_fails_open_to_per_process_buckets(self, caplog: pytest.LogCaptureFixture) -> None:
        limiter = RedisRateLimiter.from_url("redis://127.0.0.1:1/0", "unreachable:")
        with caplog.at_level(logging.WARNING, logger="app.auth.rate_limit"):
            started = time.monotonic()
            outcomes = allowed(limiter, "k", 3, 4)
            elapsed = time.monotonic() - started
        assert [o is not None for o in outcomes] == [True, True, True, False]
        # Redis is tried once, then left alone for a while: one warning, no timeout per request.
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1
        assert elapsed < 2
        limiter.close()


class TestLimiterChoice:
    def test_redis_url_selects_the_shared_limiter(self) -> None:
        limiter = create_rate_limiter(Settings(redis_url=REDIS_URL))
        assert isinstance(limiter, RedisRateLimiter)
        limiter.close()

    def test_without_redis_buckets_live_in_the_process(self) -> None:
        assert isinstance(create_rate_limiter(Settings(redis_url="")), InMemoryRateLimiter)

    def test_zero_turns_request_limits_off(self) -> None:
        assert create_rate_limiter(Settings(rate_limit_per_minute=0, redis_url=REDIS_URL)) is None


class TestRequestsPerMinute:
    @staticmethod
    def caller(tier: str) -> Principal:
        return Principal(user_id="usr_x", api_key_id="key_x", scopes=frozenset(), tier=tier)

    def test_each_tier_has_its_own_limit(self) -> None:
        settings = Settings(rate_limit_per_minute=None)
        assert limits.for_caller(self.caller("free"), settings).requests_per_minute == 120
        assert limits.for_caller(self.caller("team"), settings).requests_per_minute == 3000

    def test_the_operator_setting_caps_every_tier(self) -> None:
        settings = Settings(rate_limit_per_minute=500)
        assert limits.for_caller(self.caller("free"), settings).requests_per_minute == 120
        assert limits.for_caller(self.caller("team"), settings).requests_per_minute == 500

    def test_zero_means_no_request_limit(self) -> None:
        assert limits.for_caller(self.caller("team"), Settings(rate_limit_per_minute=0)).requests_per_minute is None

    def test_an_unknown_tier_gets_the_free_limits(self) -> None:
        assert limits.for_caller(self.caller("gold"), Settings()).tier.id == "free"
