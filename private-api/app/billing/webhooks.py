"""Stripe webhook events: verified, stored once in ``stripe_events`` and applied in the same
transaction (the webhook route's, which commits it), so a replayed or concurrently redelivered event
changes nothing.

What each event does to the ledger (every effect has its own idempotency key as well):

- ``checkout.session.completed`` (payment, paid) and ``checkout.session.async_payment_succeeded``:
  the pack's credits, key ``purchase:<checkout session>``; an unpaid completion waits for the latter.
- ``checkout.session.completed`` (subscription): remembers the customer and subscription.
- ``invoice.paid``: the tier's monthly credits, key ``invoice:<invoice>``.
- ``customer.subscription.created/updated/deleted``: the user's tier.
- ``charge.refunded`` / ``charge.dispute.created``: the refunded or disputed share of the purchase is
  clawed back (spent credits become debt, repaid by the next purchase or grant).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe
from sqlalchemy.orm import Session

from app.auth.models import User
from app.billing import credits
from app.billing import repository as billing_repository
from app.billing.models import LedgerEntry, StripeEvent
from app.billing.pricing import UnknownPrice, load_pricing
from app.config import Settings
from app.errors import ProblemError

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("active", "trialing")
ENDED_STATUSES = ("canceled", "unpaid", "incomplete_expired")


class InvalidSignature(ProblemError):
    status = 400
    code = "invalid_signature"
    title = "Invalid webhook signature"


class WebhookUnavailable(ProblemError):
    status = 503
    code = "billing_unavailable"
    title = "Billing unavailable"


def verify(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event, if ``payload`` carries a valid ``Stripe-Signature`` within the tolerance."""
    secret = settings.stripe_webhook_secret.get_secret_value()
    if not secret:
        raise WebhookUnavailable("Stripe webhooks are not configured on this server.")
    try:
        stripe.Webhook.construct_event(payload.decode(), signature, secret,
                                       tolerance=settings.stripe_webhook_tolerance_s)
        event: dict[str, Any] = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidSignature("The Stripe-Signature header does not match this payload.") from exc
    if not (isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("type"), str)
            and isinstance((event.get("data") or {}).get("object"), dict)):
        raise InvalidSignature("The payload is not a Stripe event.")
    return event


def receive(session: Session, event: dict[str, Any]) -> bool:
    """Store and apply ``event`` in the caller's transaction; ``False`` if it was received before
    (nothing changed then)."""
    if billing_repository.stripe_event_received(session, event["id"]):
        return False
    if not billing_repository.insert_stripe_event(session, StripeEvent(
            id=event["id"], type=event["type"], livemode=bool(event.get("livemode")), payload=event)):
        return False  # a concurrent delivery of the same event stored it first
    handler = HANDLERS.get(event["type"])
    if handler is not None:
        handler(session, event["data"]["object"])
    session.flush()
    return True


def _user(session: Session, obj: dict[str, Any], metadata: dict[str, Any] | None = None) -> User | None:
    """The user an object belongs to: our metadata first, then the Stripe customer."""
    metadata = metadata if metadata is not None else obj.get("metadata") or {}
    for user_id in (metadata.get("user_id"), obj.get("client_reference_id")):
        if user_id:
            user = billing_repository.get_user(session, user_id)
            if user is not None:
                return user
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if customer:
        return billing_repository.find_user_by_stripe_customer(session, customer)
    return None


def _grant_purchase(session: Session, checkout: dict[str, Any]) -> None:
    metadata = checkout.get("metadata") or {}
    user = _user(session, checkout)
    if user is None or not str(metadata.get("credits", "")).isdigit():
        log.warning("checkout session %s: no user or credits in its metadata", checkout["id"])
        return
    amount = int(metadata["credits"])
    credits.credit(session, user.id, "purchase", amount, f"purchase:{checkout['id']}",
                   reference=checkout.get("payment_intent"),
                   description=f"{amount} credits bought (pack {metadata.get('pack')})",
                   details={"checkout_session": checkout["id"], "pack": metadata.get("pack"),
                            "amount_total": checkout.get("amount_total"), "currency": checkout.get("currency")})


def checkout_completed(session: Session, checkout: dict[str, Any]) -> None:
    if checkout.get("mode") == "payment":
        if checkout.get("payment_status") == "paid":
            _grant_purchase(session, checkout)
        # Unpaid: a delayed payment method; async_payment_succeeded grants it later.
        return
    if checkout.get("mode") == "subscription":
        user = _user(session, checkout)
        if user is None:
            return
        if user.stripe_customer_id is None and checkout.get("customer"):
            user.stripe_customer_id = checkout["customer"]
        if checkout.get("subscription"):
            user.stripe_subscription_id = checkout["subscription"]
        session.flush()


def async_payment_succeeded(session: Session, checkout: dict[str, Any]) -> None:
    if checkout.get("mode") == "payment":
        _grant_purchase(session, checkout)


def invoice_paid(session: Session, invoice: dict[str, Any]) -> None:
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    subscription = details.get("subscription") or invoice.get("subscription")
    if not subscription:
        return  # not a subscription invoice
    metadata = details.get("metadata") or {}
    user = _user(session, invoice, metadata)
    if user is None:
        log.warning("invoice %s: no user for customer %s", invoice["id"], invoice.get("customer"))
        return
    try:
        tier = load_pricing().tier(metadata.get("tier") or user.tier)
    except UnknownPrice:
        log.warning("invoice %s: unknown tier %r", invoice["id"], metadata.get("tier"))
        return
    if tier.monthly_included_credits <= 0 or tier.id == "free":
        return
    credits.credit(session, user.id, "grant", tier.monthly_included_credits, f"invoice:{invoice['id']}",
                   reference=invoice["id"], description=f"{tier.name} monthly credits",
                   details={"tier": tier.id, "subscription": subscription})


def subscription_changed(session: Session, subscription: dict[str, Any]) -> None:
    user = _user(session, subscription)
    if user is None:
        return
    status = subscription.get("status")
    if status in ACTIVE_STATUSES:
        try:
            tier = load_pricing().tier((subscription.get("metadata") or {}).get("tier", ""))
        except UnknownPrice:
            log.warning("subscription %s: no known tier in its metadata", subscription["id"])
            return
        user.tier = tier.id
        user.stripe_subscription_id = subscription["id"]
        if user.stripe_customer_id is None:
            user.stripe_customer_id = subscription.get("customer")
    elif status in ENDED_STATUSES:
        _end_subscription(user, subscription["id"])
    session.flush()


def subscription_deleted(session: Session, subscription: dict[str, Any]) -> None:
    user = _user(session, subscription)
    if user is not None:
        _end_subscription(user, subscription["id"])
        session.flush()


def _end_subscription(user: User, subscription_id: str) -> None:
    # The end of an older subscription must not downgrade a user who has a newer one.
    if user.stripe_subscription_id in (None, subscription_id):
        user.tier = "free"
        user.stripe_subscription_id = None


def _purchase_of(session: Session, payment_intent: str | None) -> LedgerEntry | None:
    if not payment_intent:
        return None
    return billing_repository.find_purchase(session, payment_intent)


def _clawed(session: Session, payment_intent: str, prefix: str = "clawback:") -> int:
    """Credits already clawed back from a purchase (taken and turned into debt)."""
    entries = billing_repository.entries_with_key_prefix(session, payment_intent, prefix)
    return sum(int((entry.details or {}).get("clawback", 0)) for entry in entries)


def _share(purchase: LedgerEntry, cents: int) -> int:
    total = int((purchase.details or {}).get("amount_total") or 0)
    if total <= 0:
        return 0
    return min(purchase.amount, purchase.amount * min(cents, total) // total)


def charge_refunded(session: Session, charge: dict[str, Any]) -> None:
    purchase = _purchase_of(session, charge.get("payment_intent"))
    if purchase is None:
        return  # not a credit pack (e.g. a subscription invoice): nothing to take back
    intent = charge["payment_intent"]
    refunded = int(charge.get("amount_refunded") or 0)
    # Refunds are cumulative on the charge: a later partial refund only takes the difference.
    owed = _share(purchase, refunded) - _clawed(session, intent, f"clawback:{intent}:refund:")
    owed = min(owed, purchase.amount - _clawed(session, intent))
    credits.claw_back(session, purchase.user_id, owed, f"clawback:{intent}:refund:{refunded}", reference=intent,
                      description=f"refund of {refunded} {charge.get('currency', '')} cents on {charge['id']}")


def dispute_created(session: Session, dispute: dict[str, Any]) -> None:
    intent = dispute.get("payment_intent")
    purchase = _purchase_of(session, intent)
    if purchase is None or intent is None:
        return
    owed = min(_share(purchase, int(dispute.get("amount") or 0)), purchase.amount - _clawed(session, intent))
    credits.claw_back(session, purchase.user_id, owed, f"clawback:{intent}:dispute:{dispute['id']}",
                      reference=intent, description=f"dispute {dispute['id']} ({dispute.get('reason')})")


HANDLERS = {
    "checkout.session.completed": checkout_completed,
    "checkout.session.async_payment_succeeded": async_payment_succeeded,
    "invoice.paid": invoice_paid,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_deleted,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_created,
}
