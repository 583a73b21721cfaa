"""The billing API's objects: balance, ledger entries, prices, Checkout, webhook receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field, model_validator

from app.billing.models import LEDGER_KINDS
from app.billing.pricing import CostModel, CreditPack, Tier
from app.kit.schemas import Name

LedgerKind = Literal["purchase", "grant", "hold", "settle", "release", "refund", "adjust", "earning"]
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


class PricingOut(BaseModel):
    """The tiers with their limits and the credit packs on sale (shared-specs/pricing_tiers.json)."""

    version: int
    currency: str
    credit_value_usd: float = Field(description="What one credit is worth.")
    cost_model: CostModel = Field(description="How a run's cost in credits follows from its CPU time.")
    tiers: list[Tier]
    credit_packs: list[CreditPack]


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
