"""Token mode: the client trades its API key for short-lived access tokens and renews them, against a
gateway whose tokens live 3 seconds."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fmu_gateway_sdk import (
    AsyncFMUGatewayClient,
    AuthenticationError,
    FMUGatewayClient,
    PermissionDeniedError,
    TokenAuth,
)
from gateway_process import Gateway, running_gateway
from sdk_support import count_requests

TOKEN_TTL_S = 3


@pytest.fixture(scope="module")
def short_tokens() -> Iterator[Gateway]:
    with running_gateway("sdk-tokens", FMU_GATEWAY_JWT_TTL_S=str(TOKEN_TTL_S),
                         FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def key(short_tokens: Gateway) -> str:
    """One user for the module (the admin CLI is slow); each test's TokenAuth starts without a token."""
    return short_tokens.create_user(credits=1000)


def another_key(gateway: Gateway, key: str) -> tuple[str, str]:
    """(id, secret) of a new key of ``key``'s user, made through the API."""
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        created = http.post("/v1/api-keys", json={}).json()
    return created["id"], created["secret"]


def exchanges(gateway: Gateway) -> int:
    return count_requests(gateway, "POST", "/v1/auth/token", 200)


class TestTokenMode:
    def test_the_key_goes_only_to_the_token_endpoint(self, short_tokens: Gateway, key: str) -> None:
        sent: list[tuple[str, str]] = []

        def record(request: httpx.Request) -> None:
            sent.append((request.url.path, request.headers["Authorization"].removeprefix("Bearer ")))

        auth = TokenAuth(key)
        with httpx.Client(base_url=short_tokens.base_url, auth=auth, event_hooks={"request": [record]}) as http:
            assert http.get("/v1/fmus").status_code == 200
            assert http.get("/v1/billing/balance").status_code == 200
        assert sent == [("/v1/auth/token", key), ("/v1/fmus", auth.access_token),
                        ("/v1/billing/balance", auth.access_token)]
        assert auth.access_token and not auth.access_token.startswith("fmu_")
        assert key not in repr(auth)

    def test_auth_mode_token_exchanges_once_for_many_calls(self, short_tokens: Gateway, key: str) -> None:
        before = exchanges(short_tokens)
        with FMUGatewayClient(key, short_tokens.base_url, auth_mode="token") as client:
            for _ in range(5):
                assert client.billing.balance().credits == 1000
        assert exchanges(short_tokens) == before + 1

    def test_api_key_mode_stays_the_default(self, short_tokens: Gateway, key: str) -> None:
        before = exchanges(short_tokens)
        with FMUGatewayClient(key, short_tokens.base_url) as client:
            client.billing.balance()
        assert exchanges(short_tokens) == before

    def test_tokens_are_renewed_across_their_expiry(self, short_tokens: Gateway, key: str,
                                                    model_files: dict[str, Path]) -> None:
        auth = TokenAuth(key)
        tokens = []
        with FMUGatewayClient(base_url=short_tokens.base_url, auth=auth) as client:
            deadline = time.monotonic() + 3 * TOKEN_TTL_S
            while time.monotonic() < deadline:
                client.billing.balance()  # no 401 surfaces: it would raise
                tokens.append(auth.access_token)
                time.sleep(0.25)
            # A streamed upload, which could not be resent after a 401, goes out with a fresh token too.
            time.sleep(TOKEN_TTL_S)
            assert client.fmus.upload(model_files["VanDerPol"]).model_name == "VanDerPol"
            tokens.append(auth.access_token)
        assert len(set(tokens)) >= 3
        assert tokens == sorted(tokens, key=tokens.index)  # each token used for one stretch, never again
        assert count_requests(short_tokens, "GET", "/v1/billing/balance", 401) == 0
        assert count_requests(short_tokens, "POST", "/v1/fmus", 401) == 0

    def test_the_async_client_renews_too(self, short_tokens: Gateway, key: str) -> None:
        auth = TokenAuth(key)

        async def scenario() -> list[str | None]:
            seen = []
            async with AsyncFMUGatewayClient(base_url=short_tokens.base_url, auth=auth) as client:
                deadline = time.monotonic() + 3 * TOKEN_TTL_S
                while time.monotonic() < deadline:
                    await client.billing.balance()
                    seen.append(auth.access_token)
                    await asyncio.sleep(0.25)
            return seen

        assert len(set(asyncio.run(scenario()))) >= 3

    def test_a_401_token_expired_is_answered_by_one_new_exchange(self, short_tokens: Gateway, key: str) -> None:
        auth = TokenAuth(key)
        with FMUGatewayClient(base_url=short_tokens.base_url, auth=auth) as client:
            client.billing.balance()
            first = auth.access_token
            time.sleep(TOKEN_TTL_S + 1)
            # As if the client's clock lagged the server's: it still believes the token is fresh.
            auth._refresh_at = math.inf
            rejected = count_requests(short_tokens, "GET", "/v1/billing/balance", 401)
            assert client.billing.balance().credits == 1000
            assert auth.access_token != first
        assert count_requests(short_tokens, "GET", "/v1/billing/balance", 401) == rejected + 1


class TestConcurrency:
    def test_threads_share_one_exchange(self, short_tokens: Gateway, key: str) -> None:
        before = exchanges(short_tokens)
        errors: list[BaseException] = []
        with FMUGatewayClient(key, short_tokens.base_url, auth_mode="token") as client:
            start = threading.Barrier(12)

            def call() -> None:
                start.wait()
                try:
                    client.billing.balance()
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=call) for _ in range(12)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert errors == []
        assert exchanges(short_tokens) == before + 1

    def test_tasks_share_one_exchange(self, short_tokens: Gateway, key: str) -> None:
        before = exchanges(short_tokens)

        async def scenario() -> None:
            async with AsyncFMUGatewayClient(key, short_tokens.base_url, auth_mode="token") as client:
                await asyncio.gather(*(client.billing.balance() for _ in range(12)))

        asyncio.run(scenario())
        assert exchanges(short_tokens) == before + 1


class TestErrors:
    def test_a_revoked_key_fails_with_its_code_and_is_not_exchanged_again(self, short_tokens: Gateway,
                                                                          key: str) -> None:
        key_id, secret = another_key(short_tokens, key)
        with FMUGatewayClient(secret, short_tokens.base_url, auth_mode="token", max_retries=0) as client:
            client.billing.balance()
            with httpx.Client(base_url=short_tokens.base_url, headers={"Authorization": f"Bearer {key}"}) as raw:
                assert raw.post(f"/v1/api-keys/{key_id}/revoke").status_code == 200
            before = exchanges(short_tokens)
            with pytest.raises(AuthenticationError) as caught:
                client.billing.balance()
            assert caught.value.code == "api_key_revoked"
            assert exchanges(short_tokens) == before

    def test_a_token_narrowed_to_some_scopes(self, short_tokens: Gateway, key: str) -> None:
        with FMUGatewayClient(base_url=short_tokens.base_url, auth=TokenAuth(key, scopes=["fmus:read"])) as client:
            assert all(fmu.id for fmu in client.fmus.list())
            with pytest.raises(PermissionDeniedError) as caught:
                client.billing.balance()
            assert caught.value.code == "insufficient_scope"

    def test_an_unknown_key_fails_at_the_exchange(self, short_tokens: Gateway) -> None:
        with FMUGatewayClient("fmu_test_unknown", short_tokens.base_url, auth_mode="token") as client, \
                pytest.raises(AuthenticationError) as caught:
            client.billing.balance()
        assert caught.value.code == "unauthenticated"
