"""``/v1/billing``: balance, ledger, prices, Stripe Checkout and Stripe's webhooks, and the hook the execute
route charges through.

The routes own their transactions: what a checkout or a webhook writes is committed here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool

from app.auth.dependencies import BillingRead, BillingWrite, Ctx, DbSession
from app.billing import service as billing_service
from app.billing import webhooks as stripe_webhooks
from app.billing.schemas import (
    Balance,
    CheckoutCreate,
    CheckoutOut,
    LedgerEntryOut,
    LedgerKind,
    PricingOut,
    WebhookReceived,
)
from app.billing.stripe_service import CheckoutSession
from app.context import AppContext
from app.kit.params import Cursor, IdFilter, Limit
from app.kit.schemas import Page

router = APIRouter(prefix="/v1/billing", tags=["billing"])

@router.get("/balance", response_model=Balance)
def get_balance(session: DbSession, principal: BillingRead) -> Balance:
    return billing_service.balance(session, principal.user_id)


@router.get("/ledger", response_model=Page[LedgerEntryOut])
def list_ledger(session: DbSession, principal: BillingRead,
                limit: Limit = 20, cursor: Cursor = None,
                run_id: IdFilter = None, kind: LedgerKind | None = None) -> Page[LedgerEntryOut]:
    """The caller's ledger, newest first: every change of the balance with what caused it."""
    entries, next_cursor = billing_service.ledger(session, principal.user_id, limit, cursor, run_id=run_id, kind=kind)
    return Page(data=[LedgerEntryOut.model_validate(e, from_attributes=True) for e in entries],
                has_more=next_cursor is not None, next_cursor=next_cursor)


@router.get("/pricing", response_model=PricingOut)
def get_pricing() -> PricingOut:
    """The tiers with their limits, the credit packs and the cost model; public (no API key), as
    a price list is."""
    return billing_service.pricing()


@router.post("/checkout", response_model=CheckoutOut, status_code=status.HTTP_201_CREATED)
async def create_checkout(body: CheckoutCreate, ctx: Ctx, principal: BillingWrite) -> CheckoutOut:
    """A Stripe Checkout Session: a credit pack (one payment) or a tier (monthly subscription).
    Credits and tier change when Stripe's webhook confirms the payment, not here. 503
    ``billing_unavailable`` when payments are not configured or Stripe cannot be reached."""
    created = await run_in_threadpool(_checkout, ctx, principal.user_id, body)
    return CheckoutOut(id=created.id, url=created.url, mode=created.mode)


def _checkout(ctx: AppContext, user_id: str, body: CheckoutCreate) -> CheckoutSession:
    """The Checkout Session, for the user's Stripe customer (created on first use). No transaction
    is held across a call to Stripe."""
    params = ctx.stripe.checkout_params(user_id, pack=body.pack, tier=body.tier)
    with ctx.db.session() as session:
        customer, email = ctx.stripe.stored_customer(session, user_id)
    if customer is None:
        created = ctx.stripe.create_customer(user_id, email)
        # Committed before the Checkout Session is asked for: the customer exists at Stripe now,
        # whatever happens next. A concurrent first use keeps whichever id was stored first.
        with ctx.db.session(write=True) as session:
            customer = ctx.stripe.store_customer(session, user_id, created)
            session.commit()
    return ctx.stripe.open_checkout(params, customer)


@router.post("/webhooks/stripe", response_model=WebhookReceived,
             openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object",
                                                 "description": "A Stripe event, signed in Stripe-Signature."}}}}})
async def stripe_webhook(request: Request, ctx: Ctx) -> WebhookReceived:
    """Stripe's events (no API key: the ``Stripe-Signature`` header authenticates them). 400
    ``invalid_signature`` for a bad, missing or stale signature; each event takes effect once."""
    payload = await request.body()
    event = stripe_webhooks.verify(ctx.settings, payload, request.headers.get("stripe-signature"))
    applied = await run_in_threadpool(_receive_webhook, ctx, event)
    return WebhookReceived(duplicate=not applied)


def _receive_webhook(ctx: AppContext, event: dict[str, Any]) -> bool:
    """Store and apply the event in one transaction; ``False`` if it was received before (then
    nothing changed: nothing to commit)."""
    with ctx.db.session(write=True) as session:
        applied = stripe_webhooks.receive(session, event)
        if applied:
            session.commit()
        return applied
