"""A key prefix of its own on the local Redis, so tests never see each other's (or anyone's) keys.

``FMU_GATEWAY_TEST_REDIS_URL`` points at the server (default: the machine's Redis on 127.0.0.1:6379,
database 7). When it cannot be reached, Redis tests skip saying so, or fail where it is required
(``required.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from required import unavailable

REDIS_URL = os.environ.get("FMU_GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")


@contextmanager
def temporary_redis_prefix(name: str) -> Iterator[str]:
    """Yield a fresh prefix; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("redis", f"Redis at {REDIS_URL} is not reachable: {exc}")
    prefix = f"fmu-gateway-test-{name}-{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
