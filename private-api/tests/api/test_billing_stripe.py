"""Stripe billing end to end: a real gateway process, the real ``stripe`` library, and a fake
Stripe on 127.0.0.1 (tests/stripe_fake) that signs its webhooks as Stripe does."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from databases import BACKENDS, temporary_database
from gateway_process import Gateway, new_var_dir, running_gateway, start_gateway, stop_gateway
from problems import assert_problem
from stripe_fake.server import Delivery, FakeStripe

WEBHOOK = "/v1/billing/webhooks/stripe"


@dataclass
class Shop:
    gateway: Gateway
    stripe: FakeStripe
    database_url: str

    def customer(self, credits: int = 0) -> httpx.Client:
        return self.gateway.client(self.gateway.create_user(credits))

    def deliver(self, event: dict[str, Any] | Delivery) -> httpx.Response:
        delivery = event if isinstance(event, Delivery) else self.stripe.delivery(event)
        return httpx.post(self.gateway.base_url + WEBHOOK, content=delivery.body, headers=delivery.headers,
                          timeout=30)

    def deliver_ok(self, event: dict[str, Any] | Delivery) -> dict[str, Any]:
        response = self.deliver(event)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def checkout(self, client: httpx.Client, **body: str) -> str:
        response = client.post("/v1/billing/checkout", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["url"].startswith(self.stripe.url) and created["id"].startswith("cs_test_")
        return str(created["id"])

    def buy(self, client: httpx.Client, pack: str = "pack_1k") -> str:
        """Buy a pack and have Stripe confirm it; returns the payment intent id."""
        session_id = self.checkout(client, pack=pack)
        self.deliver_ok(self.stripe.complete_checkout(session_id))
        return str(self.stripe.session_of(session_id)["payment_intent"])

    def subscribe(self, client: httpx.Client, tier: str = "pro") -> str:
        session_id = self.checkout(client, tier=tier)
        self.deliver_ok(self.stripe.complete_checkout(session_id))
        return str(self.stripe.session_of(session_id)["subscription"])

    def query(self, sql: str | sa.TextClause, **params: Any) -> list[Any]:
        """Read the gateway's database directly (what the API does not show, e.g. the outbox)."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(sa.text(sql) if isinstance(sql, str) else sql, params))
        finally:
            engine.dispose()


def balance(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/billing/balance")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ledger(client: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, **filters}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/billing/ledger", params=params).json()
        entries += page["data"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return entries


def assert_ledger_matches_balance(client: httpx.Client) -> None:
    entries = ledger(client)
    assert sum(e["amount"] for e in entries) == balance(client)["credits"]
    assert all(e["balance_after"] >= 0 for e in entries)


@pytest.fixture(scope="module", params=BACKENDS)
def shop(request: pytest.FixtureRequest) -> Iterator[Shop]:
    fake = FakeStripe().start()
    var_dir = new_var_dir("stripe")
    try:
        with temporary_database(request.param, var_dir) as database_url:
            gateway = start_gateway(
                var_dir, FMU_GATEWAY_DATABASE_URL=database_url, FMU_GATEWAY_STRIPE_API_KEY=fake.api_key,
                FMU_GATEWAY_STRIPE_API_BASE=fake.url, FMU_GATEWAY_STRIPE_WEBHOOK_SECRET=fake.webhook_secret,
                FMU_GATEWAY_USAGE_FLUSH_INTERVAL_S="0.2", FMU_GATEWAY_USAGE_BACKOFF_BASE_S="0.2",
                FMU_GATEWAY_USAGE_BACKOFF_MAX_S="1")
            try:
                yield Shop(gateway, fake, database_url)
            finally:
                stop_gateway(gateway)
    finally:
        fake.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture
def outage(shop: Shop) -> Iterator[FakeStripe]:
    """The fake Stripe, brought back after the test whatever the test did to it."""
    yield shop.stripe
    if shop.stripe.outage:
        shop.stripe.come_back()


def run_vanderpol(client: httpx.Client, fmu_path: Path, count: int) -> list[dict[str, Any]]:
    fmu = client.post("/v1/fmus", files={"file": ("v.fmu", fmu_path.read_bytes())})
    assert fmu.status_code in (200, 201), fmu.text
    runs = []
    for _ in range(count):
        response = client.post(f"/v1/fmus/{fmu.json()['id']}/runs", params={"wait": 60},
                               json={"stop_time": 0.5, "timeout_s": 1, "cache": False})  # each one computed
        assert response.status_code == 200, response.text
        # A 1 s timeout can run out on a loaded machine; a timed-out run is charged all the same.
        assert response.json()["status"] in ("succeeded", "timed_out"), response.json()
        assert response.json()["credits_charged"] > 0
        runs.append(response.json())
    return runs


def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class TestCheckout:
    def test_pack_checkout_creates_a_payment_session_with_the_pack_price(self, shop: Shop) -> None:
        client = shop.customer()
        session_id = shop.checkout(client, pack="pack_5k")
        stored = shop.stripe.checkout_sessions[session_id]
        assert stored["mode"] == "payment" and stored["amount_total"] == 5000 and stored["currency"] == "usd"
        assert stored["metadata"]["pack"] == "pack_5k" and stored["metadata"]["credits"] == "5500"
        assert stored["_payment_intent_metadata"] == stored["metadata"]
        assert stored["customer"] in shop.stripe.customers
        # Checkout alone grants nothing: only Stripe's webhook does.
        assert balance(client)["credits"] == 0

    def test_the_stripe_customer_is_created_once_and_reused(self, shop: Shop) -> None:
        client = shop.customer()
        first = shop.checkout(client, pack="pack_1k")
        second = shop.checkout(client, tier="pro")
        customers = {shop.stripe.checkout_sessions[s]["customer"] for s in (first, second)}
        assert len(customers) == 1

    def test_tier_checkout_is_a_monthly_subscription(self, shop: Shop) -> None:
        session_id = shop.checkout(shop.customer(), tier="team")
        stored = shop.stripe.checkout_sessions[session_id]
        assert stored["mode"] == "subscription" and stored["amount_total"] == 24900
        assert stored["_line_items"][0]["price_data"]["recurring"]["interval"] == "month"
        assert stored["_subscription_metadata"]["tier"] == "team"

    @pytest.mark.parametrize("tier", ["enterprise", "free"])
    def test_tiers_without_a_checkout_price_are_422(self, shop: Shop, tier: str) -> None:
        response = shop.customer().post("/v1/billing/checkout", json={"tier": tier})
        assert_problem(response, 422, "not_purchasable")

    def test_unknown_pack_is_422(self, shop: Shop) -> None:
        assert_problem(shop.customer().post("/v1/billing/checkout", json={"pack": "pack_1m"}), 422, "unknown_price")

    def test_pack_and_tier_together_is_422(self, shop: Shop) -> None:
        response = shop.customer().post("/v1/billing/checkout", json={"pack": "pack_1k", "tier": "pro"})
        assert_problem(response, 422, "validation_error")

    def test_stripe_down_is_503(self, shop: Shop, outage: FakeStripe) -> None:
        client = shop.customer()
        outage.go_down()
        assert_problem(client.post("/v1/billing/checkout", json={"pack": "pack_1k"}), 503, "billing_unavailable")



def test_without_stripe_checkout_and_webhooks_are_503() -> None:
    with running_gateway("nostripe") as gateway:
        client = gateway.client(gateway.create_user())
        assert_problem(client.post("/v1/billing/checkout", json={"pack": "pack_1k"}), 503, "billing_unavailable")
        assert_problem(httpx.post(gateway.base_url + WEBHOOK, content=b"{}", headers={"Stripe-Signature": "t=1,v1=0"}),
                       503, "billing_unavailable")
        assert balance(client)["credits"] == 1000


class TestPurchase:
    def test_completed_checkout_grants_the_pack(self, shop: Shop) -> None:
        client = shop.customer()
        intent = shop.buy(client, "pack_1k")
        assert balance(client)["credits"] == 1000
        [entry] = ledger(client, kind="purchase")
        assert entry["amount"] == 1000 and entry["reference"] == intent
        assert_ledger_matches_balance(client)

    def test_a_replayed_event_grants_once(self, shop: Shop) -> None:
        client = shop.customer()
        delivery = shop.stripe.delivery(shop.stripe.complete_checkout(shop.checkout(client, pack="pack_1k")))
        answers = [shop.deliver_ok(delivery)["duplicate"] for _ in range(5)]
        assert answers == [False, True, True, True, True]
        assert balance(client)["credits"] == 1000
        assert len(ledger(client, kind="purchase")) == 1
        assert_ledger_matches_balance(client)

    def test_concurrent_deliveries_of_one_event_grant_once(self, shop: Shop) -> None:
        client = shop.customer()
        delivery = shop.stripe.delivery(shop.stripe.complete_checkout(shop.checkout(client, pack="pack_5k")))
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: shop.deliver_ok(delivery)["duplicate"], range(8)))
        assert answers.count(False) == 1
        assert balance(client)["credits"] == 5500
        assert_ledger_matches_balance(client)

    def test_forged_signature_is_400_and_changes_nothing(self, shop: Shop) -> None:
        client = shop.customer()
        event = shop.stripe.complete_checkout(shop.checkout(client, pack="pack_1k"))
        forged = shop.stripe.delivery(event, secret="whsec_not_the_real_one")
        assert_problem(shop.deliver(forged), 400, "invalid_signature")
        tampered = shop.stripe.delivery(event)
        tampered.body = tampered.body.replace(b'"credits":"1000"', b'"credits":"9000"')
        assert_problem(shop.deliver(tampered), 400, "invalid_signature")
        unsigned = shop.stripe.delivery(event)
        del unsigned.headers["Stripe-Signature"]
        assert_problem(shop.deliver(unsigned), 400, "invalid_signature")
        assert balance(client)["credits"] == 0 and ledger(client) == []
        assert not shop.query("SELECT id FROM stripe_events WHERE id = :id", id=event["id"])
        # Not stored: the genuine delivery still takes effect.
        assert shop.deliver_ok(event)["duplicate"] is False
        assert balance(client)["credits"] == 1000

    def test_stale_signature_is_400(self, shop: Shop) -> None:
        client = shop.customer()
        event = shop.stripe.complete_checkout(shop.checkout(client, pack="pack_1k"))
        stale = shop.stripe.delivery(event, timestamp=int(time.time()) - 301)
        assert_problem(shop.deliver(stale), 400, "invalid_signature")
        assert balance(client)["credits"] == 0

    def test_delayed_payment_grants_when_it_succeeds(self, shop: Shop) -> None:
        client = shop.customer()
        session_id = shop.checkout(client, pack="pack_1k")
        shop.deliver_ok(shop.stripe.complete_checkout(session_id, paid=False))
        assert balance(client)["credits"] == 0
        succeeded = shop.stripe.async_payment(session_id, succeeded=True)
        shop.deliver_ok(succeeded)
        shop.deliver_ok(shop.stripe.event(succeeded["type"], succeeded["data"]["object"]))  # a second event id
        assert balance(client)["credits"] == 1000
        assert len(ledger(client, kind="purchase")) == 1

    def test_failed_delayed_payment_grants_nothing(self, shop: Shop) -> None:
        client = shop.customer()
        session_id = shop.checkout(client, pack="pack_1k")
        shop.deliver_ok(shop.stripe.complete_checkout(session_id, paid=False))
        failed = shop.stripe.async_payment(session_id, succeeded=False)
        shop.deliver_ok(failed)
        assert balance(client)["credits"] == 0
        assert shop.query("SELECT type FROM stripe_events WHERE id = :id", id=failed["id"])[0][0] == \
            "checkout.session.async_payment_failed"

    def test_unknown_event_types_are_stored_and_acknowledged(self, shop: Shop) -> None:
        event = shop.stripe.event("customer.updated", {"id": "cus_unknown", "object": "customer"})
        assert shop.deliver_ok(event) == {"received": True, "duplicate": False}
        assert shop.query("SELECT type FROM stripe_events WHERE id = :id", id=event["id"])


class TestSubscription:
    def test_subscription_lifecycle_changes_the_tier(self, shop: Shop) -> None:
        client = shop.customer()
        subscription = shop.subscribe(client, "pro")
        assert balance(client)["tier"] == "free"  # the subscription events set it
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "created"))
        assert balance(client)["tier"] == "pro"
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "updated", status="past_due"))
        assert balance(client)["tier"] == "pro"  # grace while Stripe retries the payment
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "updated", status="active", tier="team"))
        assert balance(client)["tier"] == "team"
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "updated", status="unpaid"))
        assert balance(client)["tier"] == "free"
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "updated", status="active"))
        assert balance(client)["tier"] == "team"
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "deleted"))
        assert balance(client)["tier"] == "free"

    def test_each_paid_invoice_grants_the_monthly_credits_once(self, shop: Shop) -> None:
        client = shop.customer()
        subscription = shop.subscribe(client, "pro")
        shop.deliver_ok(shop.stripe.subscription_event(subscription, "created"))
        first = shop.stripe.delivery(shop.stripe.invoice_paid(subscription, "subscription_create"))
        for _ in range(3):
            shop.deliver_ok(first)
        assert balance(client)["credits"] == 6000
        shop.deliver_ok(shop.stripe.invoice_paid(subscription))
        assert balance(client)["credits"] == 12000
        grants = ledger(client, kind="grant")
        assert [g["amount"] for g in grants] == [6000, 6000] and len({g["reference"] for g in grants}) == 2
        assert_ledger_matches_balance(client)


class TestRefundsAndDisputes:
    def test_partial_then_full_refund_takes_back_only_the_difference(self, shop: Shop) -> None:
        client = shop.customer()
        intent = shop.buy(client, "pack_1k")
        partial = shop.stripe.delivery(shop.stripe.refund(intent, 250))
        shop.deliver_ok(partial)
        shop.deliver_ok(partial)
        assert balance(client)["credits"] == 750
        shop.deliver_ok(shop.stripe.refund(intent))
        assert balance(client) | {"tier": None} == {"credits": 0, "held_credits": 0, "debt_credits": 0, "tier": None}
        assert [e["amount"] for e in ledger(client, kind="adjust")] == [-750, -250]
        assert_ledger_matches_balance(client)

    def test_refund_of_spent_credits_becomes_debt_repaid_by_the_next_purchase(self, shop: Shop,
                                                                              fmus: dict[str, Path]) -> None:
        client = shop.customer()
        intent = shop.buy(client, "pack_1k")
        runs = run_vanderpol(client, fmus["VanDerPol"], 2)
        spent = sum(r["credits_charged"] for r in runs)
        assert spent > 0 and balance(client)["credits"] == 1000 - spent
        shop.deliver_ok(shop.stripe.refund(intent))
        assert balance(client)["credits"] == 0 and balance(client)["debt_credits"] == spent
        shop.buy(client, "pack_1k")
        assert balance(client)["credits"] == 1000 - spent and balance(client)["debt_credits"] == 0
        assert_ledger_matches_balance(client)

    def test_dispute_takes_back_the_disputed_share(self, shop: Shop) -> None:
        client = shop.customer()
        intent = shop.buy(client, "pack_5k")  # 5500 credits for 5000 cents
        dispute = shop.stripe.delivery(shop.stripe.dispute(intent, amount=2000))
        shop.deliver_ok(dispute)
        shop.deliver_ok(dispute)
        assert balance(client)["credits"] == 5500 - 2200
        # A later full refund only takes what the dispute left.
        shop.deliver_ok(shop.stripe.refund(intent))
        assert balance(client)["credits"] == 0 and balance(client)["debt_credits"] == 0
        assert_ledger_matches_balance(client)


class TestUsageReporting:
    @pytest.mark.parametrize("mode", ["refused", "503"])
    def test_usage_made_during_an_outage_is_reported_once_when_stripe_returns(
            self, shop: Shop, outage: FakeStripe, fmus: dict[str, Path], mode: str) -> None:
        client = shop.customer(credits=100)
        customer = shop.stripe.checkout_sessions[shop.checkout(client, pack="pack_1k")]["customer"]
        outage.go_down(mode)
        runs = run_vanderpol(client, fmus["VanDerPol"], 3)
        run_ids = sorted(r["id"] for r in runs)

        def attempts() -> list[Any]:
            return shop.query(sa.text("SELECT identifier, status, attempts, value FROM usage_events "
                                      "WHERE identifier IN :ids ORDER BY identifier")
                              .bindparams(sa.bindparam("ids", expanding=True)), ids=run_ids)

        wait_until(lambda: all(row.attempts >= 1 for row in attempts()))
        assert [row.status for row in attempts()] == ["pending"] * 3

        def reported() -> list[dict[str, Any]]:
            return [e for e in shop.stripe.meter_events if e["payload"]["stripe_customer_id"] == customer]

        assert reported() == []
        shop.stripe.come_back()
        wait_until(lambda: len(reported()) >= 3)
        time.sleep(1)  # long enough for any second report to arrive
        events = reported()
        assert sorted(e["identifier"] for e in events) == run_ids
        charged = {r["id"]: r["credits_charged"] for r in runs}
        assert all(e["payload"]["value"] == str(charged[e["identifier"]]) for e in events)
        assert all(e["event_name"] == "fmu_gateway_credits" for e in events)
        wait_until(lambda: [row.status for row in attempts()] == ["sent"] * 3)

    def test_a_lost_response_is_not_reported_twice(self, shop: Shop, fmus: dict[str, Path]) -> None:
        client = shop.customer(credits=100)
        customer = shop.stripe.checkout_sessions[shop.checkout(client, pack="pack_1k")]["customer"]
        shop.stripe.lose_meter_event_responses = 1
        [run] = run_vanderpol(client, fmus["VanDerPol"], 1)
        wait_until(lambda: shop.query("SELECT status FROM usage_events WHERE identifier = :id",
                                      id=run["id"])[0][0] == "sent")
        assert [e["identifier"] for e in shop.stripe.meter_events
                if e["payload"]["stripe_customer_id"] == customer] == [run["id"]]

    def test_an_event_stripe_refuses_for_good_waits_for_the_operator_then_is_sent_once(
            self, shop: Shop, fmus: dict[str, Path]) -> None:
        client = shop.customer(credits=100)
        customer = shop.stripe.checkout_sessions[shop.checkout(client, pack="pack_1k")]["customer"]
        shop.stripe.reject_meter_events = 1
        [run] = run_vanderpol(client, fmus["VanDerPol"], 1)

        def row() -> Any:
            return shop.query("SELECT status, attempts, last_error FROM usage_events WHERE identifier = :id",
                              id=run["id"])[0]

        wait_until(lambda: row().status == "rejected")
        time.sleep(2)  # longer than the flush interval and its backoff: nothing retries it
        assert (row().status, row().attempts) == ("rejected", 1)
        assert "No such customer" in row().last_error
        listed = shop.gateway.admin("usage-events")
        assert listed.returncode == 0 and run["id"] in listed.stdout
        retried = shop.gateway.admin("retry-usage-events")
        assert retried.returncode == 0 and "1 rejected usage event(s) pending again" in retried.stdout
        wait_until(lambda: row().status == "sent")
        assert [e["identifier"] for e in shop.stripe.meter_events
                if e["payload"]["stripe_customer_id"] == customer] == [run["id"]]

    def test_usage_of_a_user_without_a_stripe_customer_is_skipped(self, shop: Shop, fmus: dict[str, Path]) -> None:
        client = shop.customer(credits=100)
        [run] = run_vanderpol(client, fmus["VanDerPol"], 1)
        wait_until(lambda: shop.query("SELECT status FROM usage_events WHERE identifier = :id",
                                      id=run["id"])[0][0] == "skipped")
        assert run["id"] not in shop.stripe.meter_identifiers()


class TestLedger:
    def test_ledger_filters_by_run_and_kind(self, shop: Shop, fmus: dict[str, Path]) -> None:
        client = shop.customer(credits=50)
        [run] = run_vanderpol(client, fmus["VanDerPol"], 1)
        kinds = {e["kind"] for e in ledger(client, run_id=run["id"])}
        assert {"hold", "settle"} <= kinds and all(e["run_id"] == run["id"] for e in ledger(client, run_id=run["id"]))
        assert [e["kind"] for e in ledger(client, kind="hold")] == ["hold"]
        assert balance(client)["held_credits"] == 0
        assert_ledger_matches_balance(client)

    def test_ledger_is_private(self, shop: Shop) -> None:
        alice, bob = shop.customer(), shop.customer()
        shop.buy(alice)
        assert ledger(bob) == []
