"""Money tables: the credit ledger, stored idempotent responses, Stripe events and the usage outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.models import Base, JSONType, UTCDateTime, new_id, utcnow

LEDGER_KINDS = ("purchase", "grant", "hold", "settle", "release", "refund", "adjust", "earning")


class LedgerEntry(Base):
    """One change of a user's balance. Append-only (the migration adds triggers that refuse UPDATE
    and DELETE); ``amount`` is the signed change, so a user's entries sum to ``users.credits``."""

    __tablename__ = "ledger_entries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("led"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    # Unique per effect, e.g. ``hold:run_…`` or ``purchase:cs_…``: a retried effect is written once.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # The outside object behind the entry: a Checkout Session, invoice or charge id.
    reference: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(Base):
    """The first response to a POST with an ``Idempotency-Key``, replayed to its retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    # sha256 of method, path and body: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    # None while the first request is still being handled.
    status_code: Mapped[int | None] = mapped_column(Integer)
    # The response body, encrypted: some responses carry secrets (a new API key).
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    # A request that died mid-way stops blocking its retries after this.
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class StripeEvent(Base):
    """Every Stripe webhook event we accepted, once: a replayed event id changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    livemode: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageEvent(Base):
    """Outbox of usage to report to Stripe as a Billing Meter Event (identifier = run id).

    Written in the transaction that settles the run; a background flusher sends it with backoff."""

    __tablename__ = "usage_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("use"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The meter event identifier: Stripe deduplicates on it, we report each run at most once.
    identifier: Mapped[str] = mapped_column(String(100), unique=True)
    event_name: Mapped[str] = mapped_column(String(100))
    value: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # pending → sent; skipped (the user has no Stripe customer to bill); rejected (Stripe refused it
    # for good: `fmu-gateway-admin usage-events` lists those, `retry-usage-events` sends them again).
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
