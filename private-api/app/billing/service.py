"""What the billing routes answer: a caller's balance and ledger, and the prices. Money moves in ``credits`` (the
ledger), ``stripe_service`` (Checkout, customers) and ``webhooks`` (Stripe's events)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.billing import repository as billing_repository
from app.billing.models import LedgerEntry
from app.billing.pricing import load_pricing
from app.billing.schemas import Balance, LedgerKind, PricingOut
from app.runs import repository as run_repository


def balance(session: Session, user_id: str) -> Balance:
    user = billing_repository.get_user(session, user_id)
    if user is None:
        return Balance(credits=0, held_credits=0, debt_credits=0, tier="free")
    held = run_repository.credits_held_by_active(session, user_id)
    return Balance(credits=user.credits, held_credits=held, debt_credits=user.debt_credits, tier=user.tier)


def ledger(session: Session, user_id: str, limit: int, cursor: str | None, *, run_id: str | None = None,
           kind: LedgerKind | None = None) -> tuple[list[LedgerEntry], str | None]:
    """The user's ledger entries, newest first, and the next page's cursor."""
    return billing_repository.list_ledger_entries(session, user_id, limit, cursor, run_id=run_id, kind=kind)


def pricing() -> PricingOut:
    """The tiers, their limits and the credit packs, as pricing_tiers.json states them."""
    return PricingOut.model_validate(load_pricing().model_dump())
