"""How the client proves who it is.

Two credentials, both :class:`httpx.Auth`, so the sync and the async client share them:

- :class:`ApiKeyAuth` (the default) sends the API key as ``Authorization: Bearer <key>`` on every request.
- :class:`TokenAuth` (``auth_mode="token"``) sends the key only to ``POST /v1/auth/token`` and every
  other request with the short-lived access token it gets there, exchanging again shortly before the
  token expires, and once more if the server still answers 401 ``token_expired``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Literal

import anyio
import httpx

from fmu_gateway_sdk.errors import FMUGatewayError

__all__ = ["API_KEY_ENV", "TOKEN_PATH", "ApiKeyAuth", "AuthMode", "TokenAuth", "mask_secret", "resolve_auth"]

API_KEY_ENV = "FMU_GATEWAY_API_KEY"
TOKEN_PATH = "/v1/auth/token"
AuthMode = Literal["api_key", "token"]
# A token is exchanged again when less than this much of its life is left: 10% of it, at most a minute.
REFRESH_FRACTION = 0.1
REFRESH_MAX_S = 60.0


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

    @property
    def api_key(self) -> str:
        return self._api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return f"ApiKeyAuth({mask_secret(self._api_key)!r})"


class _ExchangeRequest(httpx.Request):
    """The request that trades the API key for a token: the flow's drivers hold the lock across it."""


class TokenAuth(httpx.Auth):
    """Exchanges the API key for access tokens at ``token_url`` and sends those instead of the key.

    ``scopes`` narrows the tokens to some of the key's scopes. ``token_url`` defaults to the
    requests' own origin + ``/v1/auth/token``. One instance may serve many threads (sync client) or
    tasks (async client): only one exchange runs at a time and the others wait for its token.
    """

    def __init__(self, api_key: str, token_url: str | None = None, *, scopes: Sequence[str] | None = None) -> None:
        self._key = ApiKeyAuth(api_key)
        self.token_url = token_url
        self.scopes = list(scopes) if scopes is not None else None
        self._token: str | None = None
        self._refresh_at = -math.inf  # time.monotonic() after which the token is exchanged again
        self._sync_lock = threading.Lock()
        self._async_lock: anyio.Lock | None = None

    @property
    def access_token(self) -> str | None:
        """The current access token (``None`` before the first request)."""
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # Driven by sync_auth_flow/async_auth_flow below, which hold a lock from each step that may
        # decide to exchange until the exchange's response is handled.
        if self._token is None or time.monotonic() >= self._refresh_at:
            exchanged = yield from self._exchange(request)
            if not exchanged:
                return  # the token endpoint's error (e.g. 401 api_key_revoked) is the answer
        sent_with = self._token
        request.headers["Authorization"] = f"Bearer {sent_with}"
        response = yield request
        # Expired early by the server's clock: exchange once and resend, if the body can be sent again.
        if (response.status_code == 401 and _problem_code(response) == "token_expired"
                and isinstance(request.stream, httpx.ByteStream)):
            if self._token == sent_with:
                exchanged = yield from self._exchange(request)
                if not exchanged:
                    return
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def _exchange(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, bool]:
        url = self.token_url or str(request.url.join(TOKEN_PATH))
        headers = {"Authorization": f"Bearer {self._key.api_key}"}
        if "User-Agent" in request.headers:
            headers["User-Agent"] = request.headers["User-Agent"]
        sent_at = time.monotonic()
        response = yield _ExchangeRequest("POST", url, headers=headers,
                                          json={"scopes": self.scopes} if self.scopes is not None else None,
                                          extensions={k: v for k, v in request.extensions.items() if k == "timeout"})
        if response.status_code != 200:
            return False
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body["expires_in"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FMUGatewayError(f"Unexpected answer from {url}: {exc!r}", code="invalid_token_response") from exc
        self._token = token
        # Counted from before the exchange was sent, so network time only makes the refresh earlier.
        self._refresh_at = sent_at + lifetime - min(REFRESH_MAX_S, lifetime * REFRESH_FRACTION)
        return True

    @staticmethod
    def _needs_body(response: httpx.Response) -> bool:
        # Only the token's own response and a 401 are read here; other bodies may be streamed downloads.
        return isinstance(response.request, _ExchangeRequest) or response.status_code == 401

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        response: httpx.Response | None = None
        while True:
            with self._sync_lock:
                try:
                    outgoing = next(flow) if response is None else flow.send(response)
                    while isinstance(outgoing, _ExchangeRequest):
                        exchange_response = yield outgoing
                        exchange_response.read()
                        outgoing = flow.send(exchange_response)
                except StopIteration:
                    return
            response = yield outgoing
            if self._needs_body(response):
                response.read()

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._async_lock is None:
            self._async_lock = anyio.Lock()
        flow = self.auth_flow(request)
        response: httpx.Response | None = None
        while True:
            async with self._async_lock:
                try:
                    outgoing = next(flow) if response is None else flow.send(response)
                    while isinstance(outgoing, _ExchangeRequest):
                        exchange_response = yield outgoing
                        await exchange_response.aread()
                        outgoing = flow.send(exchange_response)
                except StopIteration:
                    return
            response = yield outgoing
            if self._needs_body(response):
                await response.aread()

    def __repr__(self) -> str:
        return f"TokenAuth({mask_secret(self._key.api_key)!r})"


def _problem_code(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    with contextlib.suppress(ValueError, AttributeError):
        code = response.json().get("code")
        return code if isinstance(code, str) else None
    return None


def resolve_auth(api_key: str | None = None, auth: httpx.Auth | None = None, *, auth_mode: AuthMode = "api_key",
                 base_url: str | None = None) -> httpx.Auth:
    """The credential to use: ``auth`` if given, else the API key argument, else ``$FMU_GATEWAY_API_KEY``;
    with ``auth_mode="token"`` the key is exchanged for access tokens at ``base_url``."""
    if auth_mode not in ("api_key", "token"):
        raise ValueError(f"auth_mode must be 'api_key' or 'token', not {auth_mode!r}")
    if auth is not None:
        if api_key is not None:
            raise FMUGatewayError("Pass either api_key or auth, not both.", code="conflicting_credentials")
        if auth_mode != "api_key":
            raise FMUGatewayError("auth_mode applies to api_key; pass TokenAuth(...) as auth instead.",
                                  code="conflicting_credentials")
        return auth
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key or not key.strip():
        raise FMUGatewayError(
            f"No API key: pass api_key=... or set {API_KEY_ENV} "
            "(after `make run`, the dev key is in var/dev-api-key).",
            code="missing_api_key",
        )
    if auth_mode == "token":
        return TokenAuth(key, f"{base_url}{TOKEN_PATH}" if base_url else None)
    return ApiKeyAuth(key)
