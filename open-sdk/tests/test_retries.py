"""Retries with backoff on connection errors, 408, 429 and 5xx (``Retry-After`` honoured), never on
the other statuses; the policy's delays; the same in both clients."""

from __future__ import annotations

import logging
import re
import time

import httpx
import pytest
from fake_gateway import API_KEY, FakeGateway, Twin, free_port, hanging_up_server, problem

from fmu_gateway_sdk import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    FMUGatewayClient,
    RateLimitError,
    ValidationError,
)
from fmu_gateway_sdk._retry import RetryPolicy, parse_retry_after

BALANCE = "/v1/billing/balance"


def logged_retries(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float]]:
    """(reason, delay) of every retry the SDK logged."""
    found = []
    for record in caplog.records:
        match = re.search(r": (.+); retry \d+/\d+ in ([\d.]+) s$", record.getMessage())
        if record.name == "fmu_gateway_sdk" and match:
            found.append((match.group(1), float(match.group(2))))
    return found


class TestWhatIsRetried:
    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
    def test_a_transient_status_is_retried_until_it_passes(self, fake: FakeGateway, twin: Twin, status: int) -> None:
        fake.answers("GET", BALANCE, problem(status, "transient"), problem(status, "transient"), {"credits": 7})
        assert twin("billing.balance").credits == 7
        assert len(fake.requests("GET", BALANCE)) == 3

    @pytest.mark.parametrize(("status", "error"), [
        (400, APIError), (401, AuthenticationError), (404, APIError), (409, APIError), (422, ValidationError)])
    def test_a_status_that_a_retry_would_not_change_is_raised_at_once(self, fake: FakeGateway, twin: Twin,
                                                                      status: int, error: type[APIError]) -> None:
        fake.answers("GET", BALANCE, problem(status, "final"), {"credits": 7})
        with pytest.raises(error) as caught:
            twin("billing.balance")
        assert caught.value.status == status
        assert len(fake.requests("GET", BALANCE)) == 1

    def test_when_the_retries_run_out_the_last_error_is_raised(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("GET", BALANCE, problem(503, "unavailable", "down for maintenance"))
        with pytest.raises(APIError) as caught:
            twin("billing.balance", retry=RetryPolicy(max_retries=3, initial_delay=0.01))
        assert caught.value.status == 503 and caught.value.code == "unavailable"
        assert len(fake.requests("GET", BALANCE)) == 4

    def test_max_retries_zero_sends_once(self, fake: FakeGateway) -> None:
        fake.answers("GET", BALANCE, problem(503, "unavailable"), {"credits": 7})
        with FMUGatewayClient(API_KEY, fake.base_url, max_retries=0) as client, pytest.raises(APIError):
            client.billing.balance()
        assert len(fake.requests("GET", BALANCE)) == 1


class TestConnectionErrors:
    def test_a_server_that_hangs_up_is_tried_again(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fmu_gateway_sdk")
        with hanging_up_server(drops=2, then={"credits": 5}) as server:
            assert Twin("sync", server.base_url)("billing.balance").credits == 5
        assert len(server.requests) == 3
        assert [why for why, _ in logged_retries(caplog)] == ["RemoteProtocolError"] * 2

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_nothing_listening_is_a_connection_error_after_every_retry(self, kind: str) -> None:
        base_url = f"http://127.0.0.1:{free_port()}"
        started = time.monotonic()
        with pytest.raises(APIConnectionError, match="after 3 attempts") as caught:
            Twin(kind, base_url)("billing.balance", retry=RetryPolicy(max_retries=2, initial_delay=0.2, jitter=0))
        assert time.monotonic() - started >= 0.2 + 0.4  # the backoff was waited for
        assert caught.value.code == "connection_error" and caught.value.status is None
        assert base_url in str(caught.value)


class TestBackoff:
    def test_retry_after_is_waited_for(self, fake: FakeGateway, twin: Twin, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fmu_gateway_sdk")
        fake.answers("GET", BALANCE, problem(429, "rate_limited", headers={"Retry-After": "1"}), {"credits": 7})
        started = time.monotonic()
        assert twin("billing.balance").credits == 7
        assert time.monotonic() - started >= 1.0
        [(why, delay)] = logged_retries(caplog)
        assert why == "429 rate_limited" and 1.0 <= delay < 1.1

    def test_a_longer_retry_after_than_the_client_waits_is_raised(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("GET", BALANCE, problem(429, "rate_limited", headers={"Retry-After": "3600"}), {"credits": 7})
        with pytest.raises(RateLimitError) as caught:
            twin("billing.balance")
        assert caught.value.retry_after == 3600.0
        assert len(fake.requests("GET", BALANCE)) == 1

    def test_without_retry_after_the_delays_double(self, fake: FakeGateway, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fmu_gateway_sdk")
        fake.answers("GET", BALANCE, *[problem(502, "bad_gateway")] * 3, {"credits": 7})
        with FMUGatewayClient(API_KEY, fake.base_url, max_retries=3) as client:
            client._api.retry = RetryPolicy(max_retries=3, initial_delay=0.04, max_delay=0.1, jitter=0)
            assert client.billing.balance().credits == 7
        assert logged_retries(caplog) == [("502 bad_gateway", 0.04), ("502 bad_gateway", 0.08),
                                          ("502 bad_gateway", 0.1)]


class TestRetryPolicy:
    def response(self, status: int, **headers: str) -> httpx.Response:
        return httpx.Response(status, headers=headers)

    def test_backoff_doubles_up_to_the_cap_with_jitter(self) -> None:
        policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=4.0, jitter=0.25)
        for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
            delays = [policy.backoff(attempt) for _ in range(200)]
            assert all(0.75 * ceiling <= d <= ceiling for d in delays)
            assert len(set(delays)) > 1

    def test_retry_after_is_honoured(self) -> None:
        policy = RetryPolicy(max_retries=3)
        delay = policy.delay_after_response(0, self.response(429, **{"Retry-After": "7"}))
        assert delay is not None and 7.0 <= delay < 7.5
        date = self.response(503, **{"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
        assert policy.delay_after_response(0, date) is None  # longer than max_retry_after: give up
        assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0

    def test_only_transient_failures_are_retried(self) -> None:
        policy = RetryPolicy(max_retries=2)
        for status in (408, 429, 500, 502, 503, 504):
            assert policy.delay_after_response(0, self.response(status)) is not None
        for status in (400, 401, 402, 403, 404, 409, 422):
            assert policy.delay_after_response(0, self.response(status)) is None
        assert policy.delay_after_response(2, self.response(503)) is None  # retries used up
        assert policy.delay_after_error(0, httpx.ConnectError("refused")) is not None
        assert policy.delay_after_error(0, httpx.ReadTimeout("slow")) is not None
        assert policy.delay_after_error(0, httpx.RemoteProtocolError("hung up")) is not None
        assert policy.delay_after_error(0, httpx.UnsupportedProtocol("ftp://")) is None
