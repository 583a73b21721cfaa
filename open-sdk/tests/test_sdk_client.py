"""Client configuration: arguments, environment, defaults, credentials, lifecycle."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from gateway_process import Gateway

from fmu_gateway_sdk import ApiKeyAuth, AsyncFMUGatewayClient, FMUGatewayClient, FMUGatewayError


class TestConfiguration:
    def test_environment_supplies_key_and_url(self, gateway: Gateway, api_key: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FMU_GATEWAY_API_KEY", api_key)
        monkeypatch.setenv("FMU_GATEWAY_URL", gateway.base_url + "/")
        with FMUGatewayClient() as client:
            assert client.base_url == gateway.base_url
            assert client.billing.balance().credits > 0

    def test_arguments_win_over_the_environment(self, gateway: Gateway, api_key: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FMU_GATEWAY_API_KEY", "fmu_test_wrong")
        monkeypatch.setenv("FMU_GATEWAY_URL", "http://127.0.0.1:9")
        with FMUGatewayClient(api_key, gateway.base_url) as client:
            assert client.billing.balance().credits > 0

    def test_default_server_is_the_local_gateway(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FMU_GATEWAY_URL", raising=False)
        with FMUGatewayClient("fmu_test_x") as client:
            assert client.base_url == "http://127.0.0.1:8000"

    def test_an_httpx_auth_replaces_the_key(self, gateway: Gateway, api_key: str) -> None:
        with FMUGatewayClient(base_url=gateway.base_url, auth=ApiKeyAuth(api_key)) as client:
            assert client.billing.balance().credits > 0
        with pytest.raises(FMUGatewayError, match="either"):
            FMUGatewayClient(api_key, gateway.base_url, auth=ApiKeyAuth(api_key))

    def test_the_key_never_shows_in_reprs(self, api_key: str) -> None:
        shown = repr(ApiKeyAuth(api_key))
        assert api_key not in shown and shown.startswith("ApiKeyAuth('fmu_test_")
        assert api_key not in repr(FMUGatewayClient(api_key))

    def test_negative_retries_are_refused(self) -> None:
        with pytest.raises(ValueError, match="max_retries"):
            FMUGatewayClient("fmu_test_x", max_retries=-1)


class TestLifecycle:
    def test_context_manager_closes_the_connection_pool(self, gateway: Gateway, api_key: str) -> None:
        with FMUGatewayClient(api_key, gateway.base_url) as client:
            client.billing.balance()
        with pytest.raises(RuntimeError, match="closed"):
            client.billing.balance()

    def test_async_context_manager_closes_too(self, gateway: Gateway, api_key: str) -> None:
        async def scenario() -> None:
            async with AsyncFMUGatewayClient(api_key, gateway.base_url) as client:
                await client.billing.balance()
            with pytest.raises(RuntimeError, match="closed"):
                await client.billing.balance()

        asyncio.run(scenario())

    def test_timeout_is_per_request(self, gateway: Gateway, api_key: str) -> None:
        with FMUGatewayClient(api_key, gateway.base_url, timeout=httpx.Timeout(5.0)) as client:
            assert client.billing.balance().credits > 0
