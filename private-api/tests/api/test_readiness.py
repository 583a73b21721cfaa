"""Liveness and readiness, and what a database outage looks like from outside: the gateway's
PostgreSQL is reached through a TCP proxy this test cuts and restores (the server itself keeps
running for the rest of the suite)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from databases import temporary_database
from gateway_process import Gateway, new_var_dir, start_gateway, stop_gateway
from problems import assert_problem
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

RECOVERY_S = 15  # what an operator may expect: back within 15 s of the outage ending


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[Gateway, TcpProxy]]:
    var_dir = new_var_dir("readiness")
    try:
        with temporary_database("postgresql", var_dir) as database_url:
            url = make_url(database_url)
            proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
            proxied_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            gateway = start_gateway(var_dir, FMU_GATEWAY_DATABASE_URL=proxied_url)
            try:
                yield gateway, proxy
            finally:
                stop_gateway(gateway)
                with contextlib.suppress(AssertionError):
                    proxy.cut()
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def until(condition: object, timeout: float) -> float:
    """Seconds until ``condition()`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, "not within the time allowed"
        time.sleep(0.2)
    return time.monotonic() - started


class TestReadiness:
    def test_a_gateway_on_embedded_defaults_is_ready_with_each_check_named(self, gateway: Gateway) -> None:
        ready = httpx.get(f"{gateway.base_url}/readyz", timeout=60)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok",
                                                              "broker": "not_used", "sandbox": "ok"}}

    def test_liveness_does_not_ask_the_database(self, gateway: Gateway, tmp_path: Path) -> None:
        health = httpx.get(f"{gateway.base_url}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"


class TestADatabaseOutage:
    def test_is_503_with_retry_after_never_500_and_ends_by_itself(self, proxied: tuple[Gateway, TcpProxy],
                                                                  fmus: dict[str, Path]) -> None:
        gateway, proxy = proxied
        client = gateway.client(gateway.create_user(credits=100))
        fmu = client.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}).json()["id"]
        assert httpx.get(f"{gateway.base_url}/readyz", timeout=60).status_code == 200

        proxy.cut()
        try:
            assert httpx.get(f"{gateway.base_url}/healthz", timeout=10).status_code == 200
            not_ready = httpx.get(f"{gateway.base_url}/readyz", timeout=60)
            assert_problem(not_ready, 503, "not_ready")
            assert not_ready.json()["checks"]["database"] == "failing"
            assert not_ready.json()["checks"]["storage"] == "ok"
            assert not_ready.headers["Retry-After"]
            for response in (client.get("/v1/fmus"), client.get(f"/v1/fmus/{fmu}"),
                             client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1}),
                             client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1},
                                         headers={"Idempotency-Key": "outage-1"})):
                assert_problem(response, 503, "database_unavailable")
                assert int(response.headers["Retry-After"]) > 0
        finally:
            proxy.restore()

        assert until(lambda: httpx.get(f"{gateway.base_url}/readyz", timeout=60).status_code == 200,
                     RECOVERY_S) < RECOVERY_S
        run = client.post(f"/v1/fmus/{fmu}/runs", params={"wait": 60}, json={"stop_time": 1}).json()
        assert run["status"] == "succeeded"
