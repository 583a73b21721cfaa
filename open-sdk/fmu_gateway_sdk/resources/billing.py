"""``client.billing``: your credit balance."""

from __future__ import annotations

from fmu_gateway_sdk._base_client import AsyncRequester, SyncRequester
from fmu_gateway_sdk.models import Balance


class Billing:
    def __init__(self, api: SyncRequester) -> None:
        self._api = api

    def balance(self) -> Balance:
        """Credits left; each run holds its price when it is created."""
        return Balance.from_response(self._api.request("GET", "/v1/billing/balance"))


class AsyncBilling:
    def __init__(self, api: AsyncRequester) -> None:
        self._api = api

    async def balance(self) -> Balance:
        """Credits left; each run holds its price when it is created."""
        return Balance.from_response(await self._api.request("GET", "/v1/billing/balance"))
