"""Client configuration: arguments, environment, defaults, credentials, headers, lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from fake_gateway import API_KEY, FakeGateway

from fmu_gateway_sdk import ApiKeyAuth, AsyncFMUGatewayClient, FMUGatewayClient, FMUGatewayError, __version__

BALANCE = "/v1/billing/balance"


class TestConfiguration:
    def test_the_environment_supplies_key_and_url(self, fake: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        fake.answers("GET", BALANCE, {"credits": 3})
        monkeypatch.setenv("FMU_GATEWAY_API_KEY", API_KEY)
        monkeypatch.setenv("FMU_GATEWAY_URL", fake.base_url + "/")
        with FMUGatewayClient() as client:
            assert client.base_url == fake.base_url
            assert client.billing.balance().credits == 3
        [request] = fake.requests("GET", BALANCE)
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"

    def test_arguments_win_over_the_environment(self, fake: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        fake.answers("GET", BALANCE, {"credits": 3})
        monkeypatch.setenv("FMU_GATEWAY_API_KEY", "fmu_test_wrong")
        monkeypatch.setenv("FMU_GATEWAY_URL", "http://127.0.0.1:9")
        with FMUGatewayClient(API_KEY, fake.base_url) as client:
            client.billing.balance()
        assert fake.requests("GET", BALANCE)[0].headers["Authorization"] == f"Bearer {API_KEY}"

    def test_the_default_server_is_the_local_gateway(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FMU_GATEWAY_URL", raising=False)
        with FMUGatewayClient("fmu_test_x") as client:
            assert client.base_url == "http://127.0.0.1:8000"

    def test_an_httpx_auth_replaces_the_key(self, fake: FakeGateway) -> None:
        fake.answers("GET", BALANCE, {"credits": 3})
        with FMUGatewayClient(base_url=fake.base_url, auth=ApiKeyAuth("fmu_test_other")) as client:
            client.billing.balance()
        assert fake.requests("GET", BALANCE)[0].headers["Authorization"] == "Bearer fmu_test_other"
        with pytest.raises(FMUGatewayError, match="either"):
            FMUGatewayClient(API_KEY, fake.base_url, auth=ApiKeyAuth(API_KEY))

    def test_auth_mode_cannot_be_combined_with_auth(self) -> None:
        with pytest.raises(FMUGatewayError, match="auth_mode"):
            FMUGatewayClient(auth=ApiKeyAuth(API_KEY), auth_mode="token")
        with pytest.raises(ValueError, match="auth_mode"):
            FMUGatewayClient(API_KEY, auth_mode="jwt")  # type: ignore[arg-type]

    def test_the_key_never_shows_in_reprs(self) -> None:
        shown = repr(ApiKeyAuth(API_KEY))
        assert API_KEY not in shown and shown.startswith("ApiKeyAuth('fmu_test_")
        assert API_KEY not in repr(FMUGatewayClient(API_KEY))

    def test_negative_retries_are_refused(self) -> None:
        with pytest.raises(ValueError, match="max_retries"):
            FMUGatewayClient("fmu_test_x", max_retries=-1)

    def test_requests_name_the_sdk_and_its_version(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.answers("GET", BALANCE, {"credits": 3})
        client.billing.balance()
        assert fake.requests()[0].headers["User-Agent"].startswith(f"fmu-gateway-sdk/{__version__} python/")


class TestLifecycle:
    def test_the_context_manager_closes_the_connection_pool(self, fake: FakeGateway) -> None:
        fake.answers("GET", BALANCE, {"credits": 3})
        with FMUGatewayClient(API_KEY, fake.base_url) as client:
            client.billing.balance()
        with pytest.raises(RuntimeError, match="closed"):
            client.billing.balance()

    def test_the_async_context_manager_closes_too(self, fake: FakeGateway) -> None:
        fake.answers("GET", BALANCE, {"credits": 3})

        async def scenario() -> None:
            async with AsyncFMUGatewayClient(API_KEY, fake.base_url) as client:
                await client.billing.balance()
            with pytest.raises(RuntimeError, match="closed"):
                await client.billing.balance()

        asyncio.run(scenario())
        assert len(fake.requests("GET", BALANCE)) == 1
