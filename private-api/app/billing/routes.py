"""``/v1/billing``: balance, ledger, Stripe Checkout and Stripe's webhooks, and the hook the execute
route charges through."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select

from app.auth.dependencies import BillingRead, BillingWrite, Ctx, DbSession
from app.auth.models import User
from app.billing import webhooks as stripe_webhooks
from app.billing.models import LEDGER_KINDS, LedgerEntry
from app.kit.pagination import paginate
from app.kit.params import Cursor, IdFilter, Limit
from app.kit.schemas import Name, Page
from app.runs.models import ACTIVE_STATUSES, Run

router = APIRouter(prefix="/v1/billing", tags=["billing"])

LedgerKind = Literal["purchase", "grant", "hold", "settle", "release", "refund", "adjust"]
assert set(get_args(LedgerKind)) == set(LEDGER_KINDS)


class Balance(BaseModel):
    credits: int = Field(description="Credits available to spend now.")
    held_credits: int = Field(description="Credits held by the caller's queued and running runs.")
    debt_credits: int = Field(description="Clawed-back credits that were already spent; repaid by the next "
                                          "purchase or grant.")
    tier: str = Field(description="The caller's tier id (shared-specs/pricing_tiers.json).")


class LedgerEntryOut(BaseModel):
    id: str
    kind: LedgerKind
    amount: int = Field(description="Signed change of the balance.")
    balance_after: int
    run_id: str | None
    reference: str | None = Field(description="The Stripe object behind the entry (payment intent, invoice).")
    description: str | None
    created_at: datetime


class CheckoutCreate(BaseModel):
    """Exactly one of ``pack`` (a one-off credit pack) or ``tier`` (a monthly subscription)."""

    pack: Name | None = Field(default=None, examples=["pack_1k"])
    tier: Name | None = Field(default=None, examples=["pro"])

    @model_validator(mode="after")
    def _one(self) -> CheckoutCreate:
        if (self.pack is None) == (self.tier is None):
            raise ValueError("give exactly one of pack or tier")
        return self


class CheckoutOut(BaseModel):
    id: str = Field(description="The Stripe Checkout Session id.")
    url: str = Field(description="Send the customer here to pay.")
    mode: Literal["payment", "subscription"]


class WebhookReceived(BaseModel):
    received: bool = True
    duplicate: bool = Field(description="The event was received before; nothing changed.")


@router.get("/balance", response_model=Balance)
def get_balance(session: DbSession, principal: BillingRead) -> Balance:
    user = session.get(User, principal.user_id)
    held = session.scalar(select(func.coalesce(func.sum(Run.credits_held), 0)).where(
        Run.user_id == principal.user_id, Run.status.in_(ACTIVE_STATUSES)))
    if user is None:
        return Balance(credits=0, held_credits=0, debt_credits=0, tier="free")
    return Balance(credits=user.credits, held_credits=int(held or 0), debt_credits=user.debt_credits, tier=user.tier)


@router.get("/ledger", response_model=Page[LedgerEntryOut])
def list_ledger(session: DbSession, principal: BillingRead,
                limit: Limit = 20, cursor: Cursor = None,
                run_id: IdFilter = None, kind: LedgerKind | None = None) -> Page[LedgerEntryOut]:
    """The caller's ledger, newest first: every change of the balance with what caused it."""
    query = select(LedgerEntry).where(LedgerEntry.user_id == principal.user_id)
    if run_id is not None:
        query = query.where(LedgerEntry.run_id == run_id)
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    entries, next_cursor = paginate(session, query, LedgerEntry.id, limit, cursor)
    return Page(data=[LedgerEntryOut.model_validate(e, from_attributes=True) for e in entries],
                has_more=next_cursor is not None, next_cursor=next_cursor)


@router.post("/checkout", response_model=CheckoutOut, status_code=status.HTTP_201_CREATED)
async def create_checkout(body: CheckoutCreate, ctx: Ctx, principal: BillingWrite) -> CheckoutOut:
    """A Stripe Checkout Session: a credit pack (one payment) or a tier (monthly subscription).
    Credits and tier change when Stripe's webhook confirms the payment, not here. 503
    ``billing_unavailable`` when payments are not configured or Stripe cannot be reached."""
    created = await run_in_threadpool(ctx.stripe.create_checkout, principal.user_id, pack=body.pack, tier=body.tier)
    return CheckoutOut(id=created.id, url=created.url, mode=created.mode)


@router.post("/webhooks/stripe", response_model=WebhookReceived,
             openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object",
                                                 "description": "A Stripe event, signed in Stripe-Signature."}}}}})
async def stripe_webhook(request: Request, ctx: Ctx) -> WebhookReceived:
    """Stripe's events (no API key: the ``Stripe-Signature`` header authenticates them). 400
    ``invalid_signature`` for a bad, missing or stale signature; each event takes effect once."""
    payload = await request.body()
    event = stripe_webhooks.verify(ctx.settings, payload, request.headers.get("stripe-signature"))
    applied = await run_in_threadpool(stripe_webhooks.receive, ctx.db, event)
    return WebhookReceived(duplicate=not applied)
