"""Tier limits through real gateways: requests per minute (per process, and shared by two servers
through Redis), concurrent runs, run timeouts, FMU size and storage quota."""

from __future__ import annotations

import io
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from gateway_pair import redis_gateway_pair
from gateway_process import Gateway, running_gateway
from problems import assert_problem

from app.billing.pricing import load_pricing

FREE = load_pricing().tier("free")
PRO = load_pricing().tier("pro")
SLEEP = {"start_values": {"mode": 4}, "stop_time": 1, "timeout_s": 30}  # Hostile blocks in fmi2DoStep


def user(gateway: Gateway, credits: int = 1000, tier: str | None = None) -> tuple[httpx.Client, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    return gateway.client(gateway.create_user(credits, tier=tier, email=email)), email


def upload(client: httpx.Client, data: bytes, name: str = "m.fmu") -> httpx.Response:
    return client.post("/v1/fmus", content=data, params={"filename": name},
                       headers={"Content-Type": "application/octet-stream"})


def padded_fmu(fmu: Path, total_bytes: int) -> bytes:
    """A valid FMU of ``total_bytes``: ``fmu`` plus an incompressible resource file."""
    buffer = io.BytesIO(fmu.read_bytes())
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("resources/padding.bin", os.urandom(max(0, total_bytes - len(buffer.getvalue()) - 200)))
    data = buffer.getvalue()
    assert abs(len(data) - total_bytes) < 1024
    return data


@pytest.fixture(scope="module")
def tiered_gateway() -> Iterator[Gateway]:
    """Request limits from the tiers, in memory; uploads up to 64 MiB so the tiers' FMU caps bind."""
    with running_gateway("tiers", FMU_GATEWAY_MAX_UPLOAD_BYTES=str(64 << 20), FMU_GATEWAY_WARM_SANDBOXES="0",
                         FMU_GATEWAY_REDIS_URL="") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def redis_pair() -> Iterator[tuple[Gateway, Gateway]]:
    """Two servers on one PostgreSQL database and one Redis, as behind a load balancer."""
    with redis_gateway_pair("redis", FMU_GATEWAY_WARM_SANDBOXES="0") as pair:
        yield pair


def spend(clients: list[httpx.Client], requests: int) -> tuple[list[httpx.Response], float]:
    """``requests`` balance reads, round-robin over ``clients``, as fast as they go."""
    started = time.monotonic()
    responses = [clients[i % len(clients)].get("/v1/billing/balance") for i in range(requests)]
    return responses, time.monotonic() - started


def assert_one_budget(responses: list[httpx.Response], elapsed: float, per_minute: int) -> None:
    """Exactly the budget passed, plus what refilled while the requests ran."""
    passed = [r for r in responses if r.status_code == 200]
    assert per_minute <= len(passed) <= per_minute + int(elapsed * per_minute / 60) + 1
    remaining = [int(r.headers["ratelimit-remaining"]) for r in passed]
    assert remaining[0] == per_minute - 1
    refused = next(r for r in responses if r.status_code != 200)
    body = assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) == body["retry_after"] >= 1
    assert refused.headers["ratelimit-limit"] == str(per_minute)
    assert refused.headers["ratelimit-remaining"] == "0"


class TestRequestsPerMinute:
    def test_the_callers_tier_sets_the_limit(self, tiered_gateway: Gateway) -> None:
        client, email = user(tiered_gateway)
        assert client.get("/v1/fmus").headers["ratelimit-limit"] == str(FREE.requests_per_minute)
        tiered_gateway.set_tier(email, "pro")
        assert client.get("/v1/fmus").headers["ratelimit-limit"] == str(PRO.requests_per_minute)

    def test_requests_beyond_the_tiers_limit_get_429_with_retry_after(self, tiered_gateway: Gateway) -> None:
        client, _ = user(tiered_gateway)
        responses, elapsed = spend([client], FREE.requests_per_minute + 10)
        assert_one_budget(responses, elapsed, FREE.requests_per_minute)
        assert responses[-1].status_code == 429

    def test_every_key_of_a_user_spends_from_one_budget(self, tiered_gateway: Gateway) -> None:
        """Minting keys buys no requests (docs/security.md: requests per user, all keys and tokens)."""
        client, email = user(tiered_gateway)
        result = tiered_gateway.admin("create-key", "--email", email)
        assert result.returncode == 0, result.stderr
        other = tiered_gateway.client(result.stdout.strip().splitlines()[-1])
        responses, elapsed = spend([client, other], FREE.requests_per_minute + 10)
        assert_one_budget(responses, elapsed, FREE.requests_per_minute)
        # Both keys were refused (they alternate: even indices are the first key's).
        assert {i % 2 for i, r in enumerate(responses) if r.status_code == 429} == {0, 1}


class TestSharedBudgetThroughRedis:
    def test_two_servers_spend_from_one_budget_per_user(self, redis_pair: tuple[Gateway, Gateway]) -> None:
        first, second = redis_pair
        key = first.create_user()
        clients = [first.client(key), second.client(key)]
        responses, elapsed = spend(clients, FREE.requests_per_minute + 10)
        # Alone, each server would have let its 65 requests through.
        assert_one_budget(responses, elapsed, FREE.requests_per_minute)
        # Both servers refused (round-robin: even indices went to the first); a token refilled
        # mid-run may let one of the last requests through, so no position is asserted.
        refused_by = {i % 2 for i, r in enumerate(responses) if r.status_code == 429}
        assert refused_by == {0, 1}


class TestConcurrentRuns:
    def test_the_tiers_concurrency_holds_across_two_servers(self, fmus: dict[str, Path], tmp_path: Path) -> None:
        """Both servers execute runs (each its own pool; one blob store, as behind a load balancer)
        and count one user's active runs in the one database: together they admit exactly the
        tier's concurrency, not twice it."""
        with redis_gateway_pair("concurrency", FMU_GATEWAY_WARM_SANDBOXES="0",
                                FMU_GATEWAY_STORAGE_DIR=str(tmp_path / "storage")) as (first, second):
            self._admit_across(first, second, fmus)

    def _admit_across(self, first: Gateway, second: Gateway, fmus: dict[str, Path]) -> None:
        key = first.create_user(200)
        clients = [first.client(key), second.client(key)]
        fmu = upload(clients[0], fmus["Hostile"].read_bytes(), "h.fmu").json()
        url = f"/v1/fmus/{fmu['id']}/runs"
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda i: clients[i % 2].post(url, json=SLEEP), range(10)))
        accepted = [r.json()["id"] for r in responses if r.status_code == 202]
        try:
            assert len(accepted) == FREE.max_concurrent_runs, [r.status_code for r in responses]
            for response in responses:
                if response.status_code != 202:
                    assert_problem(response, 429, "too_many_active_runs")
            # Every admitted run is still active (none ended early and freed its place), and at the
            # limit each server refuses, whichever took the runs.
            statuses = {clients[0].get(f"/v1/runs/{run_id}").json()["status"] for run_id in accepted}
            assert statuses <= {"queued", "running"}, statuses
            for client in clients:
                assert_problem(client.post(url, json=SLEEP), 429, "too_many_active_runs")
        finally:
            for run_id in accepted:
                clients[0].post(f"/v1/runs/{run_id}/cancel")

    def test_runs_beyond_the_tiers_concurrency_get_429_and_store_nothing(self, gateway: Gateway,
                                                                         fmus: dict[str, Path]) -> None:
        client, _ = user(gateway, credits=200)
        fmu = upload(client, fmus["Hostile"].read_bytes(), "h.fmu").json()
        url = f"/v1/fmus/{fmu['id']}/runs"
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda _: client.post(url, json=SLEEP), range(10)))
        accepted = [r.json()["id"] for r in responses if r.status_code == 202]
        try:
            assert len(accepted) == FREE.max_concurrent_runs
            refused = [r for r in responses if r.status_code != 202]
            for response in refused:
                body = assert_problem(response, 429, "too_many_active_runs")
                assert body["limit"] == FREE.max_concurrent_runs
                assert int(response.headers["retry-after"]) >= 1
            # Refused submissions left no run and no hold.
            assert {r["id"] for r in client.get("/v1/runs").json()["data"]} == set(accepted)
            held = sum(r.json()["credits_held"] for r in responses if r.status_code == 202)
            assert client.get("/v1/billing/balance").json()["credits"] == 200 - held
            # A slot freed by a cancel is taken by the next submission.
            assert client.post(f"/v1/runs/{accepted.pop()}/cancel").status_code == 200
            replacement = client.post(url, json=SLEEP)
            assert replacement.status_code == 202, replacement.text
            accepted.append(replacement.json()["id"])
            assert_problem(client.post(url, json=SLEEP), 429, "too_many_active_runs")
        finally:
            for run_id in accepted:
                client.post(f"/v1/runs/{run_id}/cancel")


class TestRunTimeouts:
    def test_a_timeout_above_the_tiers_cap_is_422(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, _ = user(gateway)
        fmu = upload(client, fmus["VanDerPol"].read_bytes()).json()
        body = assert_problem(client.post(f"/v1/fmus/{fmu['id']}/runs",
                                          json={"timeout_s": FREE.max_run_seconds + 1}), 422, "invalid_run_spec")
        assert body["field"] == "timeout_s" and body["max_timeout_s"] == FREE.max_run_seconds
        assert client.get("/v1/runs").json()["data"] == []

    def test_a_higher_tier_allows_longer_runs(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, _ = user(gateway, tier="pro")
        fmu = upload(client, fmus["VanDerPol"].read_bytes()).json()
        url = f"/v1/fmus/{fmu['id']}/runs"
        run = client.post(url, json={"timeout_s": PRO.max_run_seconds, "stop_time": 0.1}, params={"wait": 60})
        assert run.status_code == 200, run.text
        assert run.json()["spec"]["timeout_s"] == PRO.max_run_seconds
        body = assert_problem(client.post(url, json={"timeout_s": PRO.max_run_seconds + 1}), 422, "invalid_run_spec")
        assert body["max_timeout_s"] == PRO.max_run_seconds

    def test_the_default_timeout_fits_the_tier(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, _ = user(gateway)
        fmu = upload(client, fmus["VanDerPol"].read_bytes()).json()
        run = client.post(f"/v1/fmus/{fmu['id']}/runs", json={"stop_time": 0.1}, params={"wait": 60})
        assert run.json()["spec"]["timeout_s"] <= FREE.max_run_seconds


class TestFmuSize:
    def test_an_fmu_above_the_tiers_size_cap_is_413(self, tiered_gateway: Gateway, fmus: dict[str, Path]) -> None:
        data = padded_fmu(fmus["VanDerPol"], FREE.max_fmu_bytes + (1 << 20))
        free, _ = user(tiered_gateway)
        body = assert_problem(upload(free, data), 413, "payload_too_large")
        assert body["limit"] == FREE.max_fmu_bytes
        assert free.get("/v1/fmus").json()["data"] == []
        pro, _ = user(tiered_gateway, tier="pro")
        assert upload(pro, data).status_code == 201


class TestStorageQuota:
    def test_an_upload_over_the_quota_is_413_and_stores_nothing(self, gateway: Gateway,
                                                                 fmus: dict[str, Path]) -> None:
        client, _ = user(gateway)
        first = upload(client, fmus["VanDerPol"].read_bytes(), "v.fmu").json()
        second = fmus["Feedthrough"].read_bytes()
        # Stands in for ~500 MB of earlier uploads: the quota counts the stored sizes of live FMUs.
        engine = sa.create_engine(gateway.env["FMU_GATEWAY_DATABASE_URL"])
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE fmus SET size = :size WHERE id = :id"),
                               {"size": FREE.storage_quota_bytes - len(second) + 1, "id": first["id"]})
        engine.dispose()
        body = assert_problem(upload(client, second, "f.fmu"), 413, "storage_quota_exceeded")
        assert body["quota_bytes"] == FREE.storage_quota_bytes
        assert [f["id"] for f in client.get("/v1/fmus").json()["data"]] == [first["id"]]
        # The same bytes again are the FMU already stored: no new space, no refusal.
        again = upload(client, fmus["VanDerPol"].read_bytes(), "v.fmu")
        assert again.status_code == 200 and again.json()["id"] == first["id"]
        assert client.delete(f"/v1/fmus/{first['id']}").status_code == 204
        assert upload(client, second, "f.fmu").status_code == 201
