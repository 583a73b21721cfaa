"""Stripe: Checkout Sessions for credit packs and tiers, and usage reporting per run (Billing
Meter Events through a database outbox, see ``usage_reporter``).

Stripe is optional: without ``FMU_GATEWAY_STRIPE_API_KEY`` there is no client, checkout answers 503
``billing_unavailable`` and finished runs' usage is still recorded in the outbox, unsent.

Nothing here commits. A checkout is steps the route takes, each visible there (``app.billing.routes``):
the session's parameters, the stored customer, on first use a new Stripe customer whose id the
route commits before it goes on, then the Checkout Session; no transaction is held across a call
to Stripe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy.orm import Session

from app.billing import repository as billing_repository
from app.billing.pricing import load_pricing
from app.config import Settings
from app.errors import NotFound, ProblemError
from app.runs.models import Run

log = logging.getLogger(__name__)
# The library logs every request at INFO; its warnings and errors are enough.
logging.getLogger("stripe").setLevel(logging.WARNING)

# The meter's event name in Stripe; each event carries the run's credits as its value.
METER_EVENT_NAME = "fmu_gateway_credits"


class BillingUnavailable(ProblemError):
    status = 503
    code = "billing_unavailable"
    title = "Billing unavailable"


class NotPurchasable(ProblemError):
    status = 422
    code = "not_purchasable"
    title = "Not purchasable through Checkout"


def create_client(settings: Settings) -> stripe.StripeClient | None:
    """The Stripe client, or ``None`` when no API key is configured."""
    if not settings.stripe_enabled:
        return None
    base_addresses: dict[str, str] = {}
    if settings.stripe_api_base:
        base_addresses["api"] = settings.stripe_api_base
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses=base_addresses,  # type: ignore[arg-type]
        max_network_retries=settings.stripe_max_network_retries,
        http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_s),
    )


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    mode: str


def _cents(usd: float) -> int:
    return round(usd * 100)


class StripeService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = create_client(settings)

    @staticmethod
    def charge_per_executions(session: Session, runs: list[Run]) -> None:
        """Record settled runs' usage in the outbox, in the transaction that settles them (the
        flusher reports each to Stripe with the run id as the meter event's identifier): one Core
        executemany, the model's defaults filling the other columns, nothing read back (the ORM's
        flush asked for RETURNING, so PostgreSQL got a multi-row statement parsed afresh each time)."""
        rows = [{"user_id": run.user_id, "identifier": run.id, "event_name": METER_EVENT_NAME,
                 "value": run.credits_charged} for run in runs if run.credits_charged > 0]
        if rows:
            billing_repository.insert_usage_events(session, rows)

    def require_client(self) -> stripe.StripeClient:
        if self.client is None:
            raise BillingUnavailable("Payments are not configured on this server.")
        return self.client

    @staticmethod
    def stored_customer(session: Session, user_id: str) -> tuple[str | None, str]:
        """The user's Stripe customer id (``None``: none created yet) and email."""
        user = billing_repository.get_user(session, user_id)
        if user is None:
            raise NotFound(f"No user {user_id!r}.")
        return user.stripe_customer_id or None, user.email

    def create_customer(self, user_id: str, email: str) -> str:
        """A new Stripe customer for the user; Stripe's idempotency key makes a repeat (a concurrent
        first use, a retry after a crash) the same customer."""
        client = self.require_client()
        customer = self._call(lambda: client.v1.customers.create(
            params={"email": email, "metadata": {"user_id": user_id}},
            options={"idempotency_key": f"customer:{user_id}"}))
        return str(customer.id)

    @staticmethod
    def store_customer(session: Session, user_id: str, customer_id: str) -> str:
        """Record the user's Stripe customer, unless a concurrent first use recorded one first: the
        id that is recorded (the caller commits it)."""
        stored = billing_repository.store_stripe_customer(session, user_id, customer_id)
        assert stored is not None
        return stored

    def checkout_params(self, user_id: str, *, pack: str | None = None, tier: str | None = None) -> dict[str, Any]:
        """What a Checkout Session for a credit pack (one payment) or a tier (a monthly
        subscription) is made of, but the customer (``open_checkout`` adds it)."""
        self.require_client()
        pricing = load_pricing()
        params: dict[str, Any] = {
            "client_reference_id": user_id,
            "success_url": self.settings.checkout_success_url,
            "cancel_url": self.settings.checkout_cancel_url,
        }
        if pack is not None:
            credit_pack = pricing.pack(pack)
            metadata = {"user_id": user_id, "pack": credit_pack.id, "credits": str(credit_pack.credits)}
            params.update(
                mode="payment",
                line_items=[{"quantity": 1, "price_data": {
                    "currency": pricing.currency, "unit_amount": _cents(credit_pack.price_usd),
                    "product_data": {"name": f"FMU Gateway {credit_pack.name}"}}}],
                metadata=metadata,
                # Copied onto the PaymentIntent, so refunds and disputes can be traced to the pack.
                payment_intent_data={"metadata": metadata},
            )
        elif tier is not None:
            plan = pricing.tier(tier)
            if plan.monthly_price_usd is None or plan.monthly_price_usd <= 0:
                raise NotPurchasable(f"The {plan.name} tier is not sold through Checkout.", tier=plan.id)
            metadata = {"user_id": user_id, "tier": plan.id}
            params.update(
                mode="subscription",
                line_items=[{"quantity": 1, "price_data": {
                    "currency": pricing.currency, "unit_amount": _cents(plan.monthly_price_usd),
                    "recurring": {"interval": "month"},
                    "product_data": {"name": f"FMU Gateway {plan.name}"}}}],
                metadata=metadata,
                subscription_data={"metadata": metadata},
            )
        else:
            raise NotPurchasable("Name a credit pack or a tier.")
        return params

    def open_checkout(self, params: dict[str, Any], customer_id: str) -> CheckoutSession:
        """The Checkout Session of ``checkout_params``, for the user's Stripe customer."""
        client = self.require_client()
        params = {**params, "customer": customer_id}
        created = self._call(lambda: client.v1.checkout.sessions.create(params=params))  # type: ignore[arg-type]
        return CheckoutSession(id=created.id, url=created.url or "", mode=created.mode)

    @staticmethod
    def _call(request: Any) -> Any:
        try:
            return request()
        except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
            log.warning("Stripe unavailable: %s", exc)
            raise BillingUnavailable("Stripe could not be reached; try again shortly.",
                                     headers={"Retry-After": "30"}) from exc
