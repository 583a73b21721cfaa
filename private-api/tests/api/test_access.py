"""Who may do what, and how often: API key scopes and per-key rate limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_process import Gateway, running_gateway
from problems import assert_problem


def key_with_scopes(gateway: Gateway, *scopes: str) -> str:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    assert gateway.admin("create-user", "--email", email, "--credits", "10").returncode == 0
    args = ["create-key", "--email", email]
    for scope in scopes:
        args += ["--scope", scope]
    result = gateway.admin(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


class TestScopes:
    def test_read_only_key_can_list_but_not_upload_or_run(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = gateway.client(key_with_scopes(gateway, "fmus:read", "runs:read"))
        assert client.get("/v1/fmus").status_code == 200
        assert client.get("/v1/runs").status_code == 200
        body = assert_problem(client.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}),
                              403, "insufficient_scope")
        assert body["scope"] == "fmus:write"
        assert_problem(client.post("/v1/fmus/fmu_x/runs", json={}), 403, "insufficient_scope")
        assert_problem(client.get("/v1/billing/balance"), 403, "insufficient_scope")

    def test_unknown_scope_is_refused_by_the_cli(self, gateway: Gateway) -> None:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        gateway.admin("create-user", "--email", email)
        result = gateway.admin("create-key", "--email", email, "--scope", "root")
        assert result.returncode == 1 and "Unknown scope" in result.stderr


@pytest.fixture(scope="module")
def strict_gateway() -> Iterator[Gateway]:
    with running_gateway("strict", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="5", FMU_GATEWAY_WARM_SANDBOXES="0") as gateway:
        yield gateway


class TestRateLimits:
    def test_requests_beyond_the_limit_get_429_with_retry_after(self, strict_gateway: Gateway) -> None:
        client = strict_gateway.client(strict_gateway.create_user())
        responses = [client.get("/v1/fmus") for _ in range(6)]
        assert [r.status_code for r in responses[:5]] == [200] * 5
        assert [r.headers["ratelimit-remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
        assert all(r.headers["ratelimit-limit"] == "5" for r in responses[:5])
        body = assert_problem(responses[5], 429, "rate_limited")
        assert int(responses[5].headers["retry-after"]) == body["retry_after"] >= 1

    def test_limits_are_per_api_key(self, strict_gateway: Gateway) -> None:
        first = strict_gateway.client(strict_gateway.create_user())
        second = strict_gateway.client(strict_gateway.create_user())
        for _ in range(5):
            first.get("/v1/fmus")
        assert first.get("/v1/fmus").status_code == 429
        assert second.get("/v1/fmus").status_code == 200

    def test_unauthenticated_requests_are_not_counted_against_a_key(self, strict_gateway: Gateway) -> None:
        anonymous = httpx.get(f"{strict_gateway.base_url}/v1/fmus")
        assert_problem(anonymous, 401, "unauthenticated")
