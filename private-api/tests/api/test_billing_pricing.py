"""``GET /v1/billing/pricing``: the tiers, their limits and the credit packs, as pricing_tiers.json
states them, to anyone (a price list is public)."""

from __future__ import annotations

import json

import httpx
from gateway_process import REPO_ROOT, Gateway

PRICING = json.loads((REPO_ROOT / "shared-specs" / "pricing_tiers.json").read_text())


class TestGetPricing:
    def test_pricing_is_the_pricing_file(self, gateway: Gateway, alice: httpx.Client) -> None:
        response = alice.get("/v1/billing/pricing")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tiers"] == PRICING["tiers"]
        assert body["credit_packs"] == PRICING["credit_packs"]
        assert body["cost_model"] == {k: v for k, v in PRICING["cost_model"].items() if k != "description"}
        assert (body["currency"], body["credit_value_usd"]) == (PRICING["currency"], PRICING["credit_value_usd"])

    def test_pricing_needs_no_api_key(self, gateway: Gateway) -> None:
        response = httpx.get(gateway.base_url + "/v1/billing/pricing", timeout=30)
        assert response.status_code == 200, response.text
        assert [tier["id"] for tier in response.json()["tiers"]] == [tier["id"] for tier in PRICING["tiers"]]

    def test_the_callers_tier_is_among_the_tiers(self, gateway: Gateway, alice: httpx.Client) -> None:
        tier = alice.get("/v1/billing/balance").json()["tier"]
        assert tier in {t["id"] for t in alice.get("/v1/billing/pricing").json()["tiers"]}
