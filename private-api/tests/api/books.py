"""A user's books through the API: the ledger (every page), the balance, and the identity every
test of money holds (a user's entries sum to their balance)."""

from __future__ import annotations

from typing import Any

import httpx


def ledger(client: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/v1/billing/ledger", params={"limit": 100, "cursor": cursor, **filters})
        assert page.status_code == 200, page.text
        entries += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return entries


def balance(client: httpx.Client) -> int:
    credits: int = client.get("/v1/billing/balance").json()["credits"]
    return credits


def assert_ledger_matches_balance(client: httpx.Client) -> None:
    assert sum(e["amount"] for e in ledger(client)) == balance(client)
