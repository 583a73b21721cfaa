"""The HTTP layer under both clients: configuration, authentication, retries and error mapping.

Every request is retried on connection errors, 408/429/5xx (see ``_retry``). That is safe because
every call of this API is idempotent: reads and deletes by nature, and every POST (an upload, a run
or sweep submission, a cancel) because it carries an ``Idempotency-Key``, made here once per call and
the same on each of its retries: a retry is then answered as the first attempt was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import anyio
import httpx

from fmu_gateway_sdk._retry import RetryPolicy
from fmu_gateway_sdk._version import __version__
from fmu_gateway_sdk.errors import APIConnectionError, APITimeoutError, error_from_response

log = logging.getLogger("fmu_gateway_sdk")

BASE_URL_ENV = "FMU_GATEWAY_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
USER_AGENT = f"fmu-gateway-sdk/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"

Params = Mapping[str, str | int | float | None]
SyncContent = bytes | Callable[[], Iterable[bytes]]
AsyncContent = bytes | Callable[[], AsyncIterable[bytes]]
TimeoutArg = float | httpx.Timeout | None
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


def resolve_base_url(base_url: str | None) -> str:
    return (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def new_idempotency_key() -> str:
    return f"sdk-{uuid.uuid4().hex}"


def request_headers(method: str, headers: Mapping[str, str] | None,
                    idempotency_key: str | None) -> dict[str, str] | None:
    """The headers of one call, sent on each of its attempts: a POST's carry its ``Idempotency-Key``
    (the caller's, or a new one), so a retry can never do the work twice."""
    if method.upper() != "POST":
        if idempotency_key is not None:
            raise ValueError(f"an Idempotency-Key is for POST requests, not {method}")
        return dict(headers) if headers else None
    return {**(headers or {}), IDEMPOTENCY_KEY_HEADER: idempotency_key or new_idempotency_key()}


class _Requester:
    """What the sync and async requesters share: everything but the I/O."""

    def __init__(self, *, base_url: str, timeout: float | httpx.Timeout, retry: RetryPolicy) -> None:
        self.base_url = base_url
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry

    def long_poll_timeout(self, wait: float) -> httpx.Timeout:
        """The client's timeout, with the read timeout stretched to cover a ``?wait=`` long-poll."""
        read = self.timeout.read
        return httpx.Timeout(self.timeout.connect, read=None if read is None else read + wait,
                             write=self.timeout.write, pool=self.timeout.pool)

    def _clean_params(self, params: Params | None) -> dict[str, str | int | float] | None:
        return {k: v for k, v in params.items() if v is not None} if params else None

    def _connection_error(self, method: str, path: str, exc: httpx.HTTPError, attempts: int) -> APIConnectionError:
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"{method} {path} timed out{tried}: {exc!r}")
        return APIConnectionError(f"Could not reach FMU Gateway at {self.base_url} ({method} {path}){tried}: {exc!r}")

    def _next_step(self, method: str, path: str, attempt: int,
                   outcome: httpx.Response | httpx.TransportError) -> httpx.Response | float:
        """The response to return, or the delay before another attempt; raises the typed error
        when the outcome is not retried. Shared by the sync and async loops, which differ only in
        how they send and sleep."""
        if isinstance(outcome, httpx.TransportError):
            delay = self.retry.delay_after_error(attempt, outcome)
            if delay is None:
                raise self._connection_error(method, path, outcome, attempt + 1) from outcome
            self._log_retry(method, path, type(outcome).__name__, delay, attempt)
            return delay
        if outcome.is_success:
            return outcome
        delay = self.retry.delay_after_response(attempt, outcome)
        if delay is None:
            raise error_from_response(outcome)
        self._log_retry(method, path, _why(outcome), delay, attempt)
        return delay

    def _log_retry(self, method: str, path: str, why: str, delay: float, attempt: int) -> None:
        log.info("%s %s: %s; retry %d/%d in %.2f s", method, path, why, attempt + 1, self.retry.max_retries, delay)


def _why(response: httpx.Response) -> str:
    code = ""
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        with contextlib.suppress(ValueError):
            code = f" {response.json().get('code')}"
    return f"{response.status_code}{code}"


def _event_headers(last_event_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


class SyncRequester(_Requester):
    def __init__(self, *, base_url: str, auth: httpx.Auth, timeout: float | httpx.Timeout,
                 retry: RetryPolicy) -> None:
        super().__init__(base_url=base_url, timeout=timeout, retry=retry)
        self._http = httpx.Client(base_url=base_url, auth=auth, timeout=self.timeout,
                                  headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: Params | None = None, json: Any = None,
                content: SyncContent | None = None, headers: Mapping[str, str] | None = None,
                timeout: TimeoutArg = None, follow_redirects: bool = False,
                idempotency_key: str | None = None) -> httpx.Response:
        """Send with retries; return the 2xx response or raise the typed error.

        A POST carries ``idempotency_key``, or one made for this call, on every attempt.
        ``follow_redirects``: for downloads the server may hand to storage (a presigned URL); httpx
        drops the ``Authorization`` header when a redirect leaves the gateway's origin."""
        headers = request_headers(method, headers, idempotency_key)
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, params=self._clean_params(params), json=json,
                    content=content() if callable(content) else content, headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                    follow_redirects=follow_redirects,
                )
            except httpx.TransportError as exc:
                step = self._next_step(method, path, attempt, exc)
            else:
                step = self._next_step(method, path, attempt, response)
            if isinstance(step, httpx.Response):
                return step
            time.sleep(step)
            attempt += 1

    def stream_lines(self, path: str, *, read_timeout: float | None,
                     last_event_id: str | None = None) -> Iterator[str]:
        """The lines of a streamed response (Server-Sent Events), without retries: a broken stream
        is the caller's cue to fall back to polling. Raises the typed error for a non-2xx answer.
        ``last_event_id`` resumes a stream the server ended (``Last-Event-ID``)."""
        timeout = httpx.Timeout(self.timeout.connect, read=read_timeout, write=self.timeout.write,
                                pool=self.timeout.pool)
        with self._http.stream("GET", path, timeout=timeout, headers=_event_headers(last_event_id)) as response:
            if not response.is_success:
                response.read()
                raise error_from_response(response)
            yield from response.iter_lines()


class AsyncRequester(_Requester):
    def __init__(self, *, base_url: str, auth: httpx.Auth, timeout: float | httpx.Timeout,
                 retry: RetryPolicy) -> None:
        super().__init__(base_url=base_url, timeout=timeout, retry=retry)
        self._http = httpx.AsyncClient(base_url=base_url, auth=auth, timeout=self.timeout,
                                       headers={"User-Agent": USER_AGENT})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, params: Params | None = None, json: Any = None,
                      content: AsyncContent | None = None, headers: Mapping[str, str] | None = None,
                      timeout: TimeoutArg = None, follow_redirects: bool = False,
                      idempotency_key: str | None = None) -> httpx.Response:
        """Send with retries; return the 2xx response or raise the typed error (``idempotency_key``,
        ``follow_redirects``: see :meth:`SyncRequester.request`)."""
        headers = request_headers(method, headers, idempotency_key)
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, path, params=self._clean_params(params), json=json,
                    content=content() if callable(content) else content, headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                    follow_redirects=follow_redirects,
                )
            except httpx.TransportError as exc:
                step = self._next_step(method, path, attempt, exc)
            else:
                step = self._next_step(method, path, attempt, response)
            if isinstance(step, httpx.Response):
                return step
            await anyio.sleep(step)
            attempt += 1

    async def stream_lines(self, path: str, *, read_timeout: float | None,
                           last_event_id: str | None = None) -> AsyncIterator[str]:
        """See :meth:`SyncRequester.stream_lines`."""
        timeout = httpx.Timeout(self.timeout.connect, read=read_timeout, write=self.timeout.write,
                                pool=self.timeout.pool)
        async with self._http.stream("GET", path, timeout=timeout,
                                     headers=_event_headers(last_event_id)) as response:
            if not response.is_success:
                await response.aread()
                raise error_from_response(response)
            async for line in response.aiter_lines():
                yield line
