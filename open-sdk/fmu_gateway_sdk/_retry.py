"""When and how long to wait before retrying a request: exponential backoff with jitter,
honouring the server's ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

# 408/429 and the gateway-ish 5xx are transient; other statuses will not change on a retry.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    #: A longer ``Retry-After`` than this is not waited for: the error is raised instead.
    max_retry_after: float = 60.0
    #: Backoff delays are shortened by up to this fraction, so clients that failed together spread out.
    jitter: float = 0.25

    def backoff(self, attempt: int) -> float:
        """The delay before retry number ``attempt + 1`` when the server gave no ``Retry-After``."""
        delay = min(self.max_delay, self.initial_delay * 2.0**attempt)
        return delay * (1.0 - self.jitter * random.random())

    def delay_after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying after ``response``; ``None`` if it should not be retried."""
        if attempt >= self.max_retries or not is_retryable(response):
            return None
        retry_after = parse_retry_after(response.headers)
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_after:
            return None
        # Never earlier than the server asked; a little later, so waiting clients do not return in lockstep.
        return retry_after + self.initial_delay * self.jitter * random.random()

    def delay_after_error(self, attempt: int, error: httpx.HTTPError) -> float | None:
        """Seconds to wait before retrying after a transport error; ``None`` if it should not be retried."""
        if attempt >= self.max_retries or not is_transient(error):
            return None
        return self.backoff(attempt)


def is_retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRYABLE_STATUSES:
        return True
    # The first attempt of this request is still being handled (e.g. the server restarted under it).
    return response.status_code == 409 and problem_code(response) == IDEMPOTENCY_KEY_IN_USE


def problem_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def is_transient(error: httpx.HTTPError) -> bool:
    # Connection refused/reset, timeouts, and a server that hung up mid-response (e.g. a restart).
    return isinstance(error, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
