"""Retries against real gateways: a real 429 from a rate-limited gateway, a gateway restarted mid-call,
and a gateway that crashes after creating a run, which the retried create must find (same
Idempotency-Key) rather than run and charge twice. The policy itself, and the key on every POST, are
tested without a gateway in open-sdk/tests/test_retries.py and test_idempotency_key.py."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient, RateLimitError, ValidationError
from gateway_process import Gateway, new_var_dir, running_gateway, start_gateway, stop_gateway
from sdk_support import (
    count_requests,
    crash_gateway,
    has_parameter,
    port_of,
    require_server_feature,
    wait_until,
)

RATE_LIMIT_PER_MINUTE = 30  # a token every 2 s once the burst is spent: Retry-After is 2
HOSTILE_SLEEP = 4


@pytest.fixture(scope="module")
def limited_gateway() -> Iterator[Gateway]:
    with running_gateway("sdk-ratelimit", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT_PER_MINUTE)) as gateway:
        yield gateway


@pytest.fixture
def restartable() -> Iterator[list[Gateway]]:
    """A gateway of its own, which the test may crash and restart; every instance is stopped at the end."""
    var_dir = new_var_dir("sdk-restart")
    started = [start_gateway(var_dir)]
    try:
        yield started
    finally:
        for gateway in started:
            stop_gateway(gateway)
        shutil.rmtree(var_dir, ignore_errors=True)


def logged_retries(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float]]:
    """(reason, delay) of every retry the SDK logged."""
    found = []
    for record in caplog.records:
        match = re.search(r": (.+); retry \d+/\d+ in ([\d.]+) s$", record.getMessage())
        if record.name == "fmu_gateway_sdk" and match:
            found.append((match.group(1), float(match.group(2))))
    return found


class TestRateLimit:
    def test_429_is_retried_after_the_servers_retry_after(self, limited_gateway: Gateway,
                                                         caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fmu_gateway_sdk")
        rejected_before = count_requests(limited_gateway, "GET", "/v1/billing/balance", status=429)
        with FMUGatewayClient(limited_gateway.create_user(), limited_gateway.base_url, max_retries=5) as client:
            started = time.monotonic()
            balances = [client.billing.balance().credits for _ in range(RATE_LIMIT_PER_MINUTE + 3)]
            elapsed = time.monotonic() - started
        assert len(balances) == RATE_LIMIT_PER_MINUTE + 3
        assert count_requests(limited_gateway, "GET", "/v1/billing/balance", status=429) > rejected_before
        retries = [(why, delay) for why, delay in logged_retries(caplog) if why == "429 rate_limited"]
        assert retries, caplog.text
        assert all(delay >= 2.0 for _, delay in retries), retries  # Retry-After: 2
        assert elapsed >= 2.0 * len(retries) * 0.9

    def test_async_client_retries_429_too(self, limited_gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fmu_gateway_sdk")
        key = limited_gateway.create_user()

        async def scenario() -> list[int]:
            async with AsyncFMUGatewayClient(key, limited_gateway.base_url, max_retries=5) as client:
                return [(await client.billing.balance()).credits for _ in range(RATE_LIMIT_PER_MINUTE + 2)]

        assert len(asyncio.run(scenario())) == RATE_LIMIT_PER_MINUTE + 2
        retries = [delay for why, delay in logged_retries(caplog) if why == "429 rate_limited"]
        assert retries and all(delay >= 2.0 for delay in retries), caplog.text

    def test_rate_limit_error_when_retries_run_out(self, limited_gateway: Gateway) -> None:
        key = limited_gateway.create_user()
        with FMUGatewayClient(key, limited_gateway.base_url, max_retries=0) as client, \
                pytest.raises(RateLimitError) as caught:
            for _ in range(3 * RATE_LIMIT_PER_MINUTE):
                client.billing.balance()
        error = caught.value
        assert error.status == 429 and error.code == "rate_limited"
        assert error.retry_after is not None and 1 <= error.retry_after <= 60 / RATE_LIMIT_PER_MINUTE
        assert error.limit == RATE_LIMIT_PER_MINUTE and error.remaining == 0
        assert error.request_id == error.response.headers["x-request-id"]


class TestServerRestart:
    def test_call_during_a_restart_succeeds_once_the_server_is_back(
            self, restartable: list[Gateway], model_files: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fmu_gateway_sdk")
        first = restartable[0]
        with FMUGatewayClient(first.create_user(), first.base_url, max_retries=10) as client:
            fmu = client.fmus.upload(model_files["VanDerPol"])
            stop_gateway(first)

            def restart() -> None:
                time.sleep(1.0)
                restartable.append(start_gateway(first.var_dir, port=port_of(first)))

            restarter = threading.Thread(target=restart)
            restarter.start()
            try:
                listed = [f.id for f in client.fmus.list()]
            finally:
                restarter.join()
        assert listed == [fmu.id]
        assert any(why == "ConnectError" for why, _ in logged_retries(caplog)), caplog.text

    def test_crash_after_the_run_was_created_does_not_create_a_second_run(
            self, restartable: list[Gateway], model_files: dict[str, Path]) -> None:
        first = restartable[0]
        require_server_feature(has_parameter(first, "post", "/v1/fmus/{fmu_id}/runs", "Idempotency-Key"),
                               "the Idempotency-Key header on POST /v1/fmus/{id}/runs")
        key = first.create_user(credits=100)
        with FMUGatewayClient(key, first.base_url, max_retries=10) as client, \
                httpx.Client(base_url=first.base_url, headers={"Authorization": f"Bearer {key}"}) as observer:
            hostile = client.fmus.upload(model_files["Hostile"])
            credits_before = client.billing.balance().credits
            with ThreadPoolExecutor(1) as pool:
                # The create answers at once; the server dies during the wait that follows it.
                submitted = pool.submit(client.runs.create, hostile, start_values={"mode": HOSTILE_SLEEP},
                                        stop_time=1, run_timeout=3, wait=20)
                wait_until(lambda: bool(observer.get("/v1/runs").json()["data"]), timeout=30)
                assert not submitted.done()
                crash_gateway(first)
                restartable.append(start_gateway(first.var_dir, port=port_of(first)))
                run = submitted.result(timeout=120)
                # The wait can end first: the run is re-run once the dead server's lease lapses.
                run = client.runs.wait(run, timeout=120)
            assert run.status == "timed_out"
            runs = list(client.runs.list())
            assert [r.id for r in runs] == [run.id]
            assert client.billing.balance().credits == credits_before - run.credits_charged
        # Only the wait was retried, against the restarted server; nothing was submitted twice.
        assert count_requests(restartable[-1], "POST", r"/v1/fmus/[^/ ?]+/runs") == 0
        assert count_requests(restartable[-1], "GET", rf"/v1/runs/{run.id}") >= 1


class TestIdempotencyKey:
    def test_same_key_same_body_is_the_same_run(self, gateway: Gateway, fresh_key: str,
                                                model_files: dict[str, Path]) -> None:
        require_server_feature(has_parameter(gateway, "post", "/v1/fmus/{fmu_id}/runs", "Idempotency-Key"),
                               "the Idempotency-Key header on POST /v1/fmus/{id}/runs")
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            fmu = client.fmus.upload(model_files["VanDerPol"])
            before = client.billing.balance().credits
            first = client.runs.create(fmu, stop_time=1, idempotency_key="sweep-42")
            again = client.runs.create(fmu, stop_time=1, idempotency_key="sweep-42")
            assert again.id == first.id
            finished = client.runs.wait(first)
            assert client.billing.balance().credits == before - finished.credits_charged
            with pytest.raises(ValidationError) as caught:
                client.runs.create(fmu, stop_time=2, idempotency_key="sweep-42")
            assert caught.value.code == "idempotency_key_reused"
            assert len(list(client.runs.list())) == 1
