"""How the client proves who it is.

Today: an API key sent as ``Authorization: Bearer <key>`` (:class:`ApiKeyAuth`). Every credential is
an :class:`httpx.Auth`, whose generator-based ``auth_flow`` serves the sync and the async client
alike and may send requests of its own. That is where the short-lived JWT exchange slots in: a
``TokenExchangeAuth(api_key)`` whose flow first trades the key for a token at the token endpoint,
caches it until shortly before it expires, and re-exchanges once on a 401; pass it as
``FMUGatewayClient(auth=...)`` and nothing else changes.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import httpx

from fmu_gateway_sdk.errors import FMUGatewayError

__all__ = ["API_KEY_ENV", "ApiKeyAuth", "mask_secret", "resolve_auth"]

API_KEY_ENV = "FMU_GATEWAY_API_KEY"


def mask_secret(secret: str) -> str:
    """``fmu_test_ab...yz``: enough to recognise a key, not enough to use it."""
    prefix, _, _ = secret.rpartition("_")
    body = secret[len(prefix) + 1 :] if prefix else secret
    shown = f"{prefix}_" if prefix else ""
    return f"{shown}{body[:2]}...{body[-2:]}" if len(body) > 8 else f"{shown}***"


class ApiKeyAuth(httpx.Auth):
    """Sends the API key as a bearer token on every request."""

    def __init__(self, api_key: str) -> None:
        api_key = api_key.strip()
        if not api_key:
            raise FMUGatewayError("The API key is empty.", code="missing_api_key")
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return f"ApiKeyAuth({mask_secret(self._api_key)!r})"


def resolve_auth(api_key: str | None = None, auth: httpx.Auth | None = None) -> httpx.Auth:
    """The credential to use: ``auth`` if given, else the API key argument, else ``$FMU_GATEWAY_API_KEY``."""
    if auth is not None:
        if api_key is not None:
            raise FMUGatewayError("Pass either api_key or auth, not both.", code="conflicting_credentials")
        return auth
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key or not key.strip():
        raise FMUGatewayError(
            f"No API key: pass api_key=... or set {API_KEY_ENV} "
            "(after `make run`, the dev key is in var/dev-api-key).",
            code="missing_api_key",
        )
    return ApiKeyAuth(key)
