"""Every query of the ledger_entries, usage_events and stripe_events tables, and of the users'
balance columns (credits, debt_credits, stripe_customer_id): billing owns the balance.

Statements every run's path runs (a balance change, its ledger entries, a usage event) are built
once, at import, in Core: building one per call cost more than SQLite takes to run it, and nothing
is loaded or synchronised (every value is given).

Nothing here commits: the request or the worker task that calls owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.billing.models import LedgerEntry, StripeEvent, UsageEvent
from app.kit.pagination import paginate

_USERS, _LEDGER, _USAGE = (cast(Table, model.__table__) for model in (User, LedgerEntry, UsageEvent))
# A balance change that would go below zero changes nothing (and returns no row).
_APPLY = (update(_USERS).where(_USERS.c.id == bindparam("b_user"), _USERS.c.credits + bindparam("b_amount") >= 0)
          .values(credits=_USERS.c.credits + bindparam("b_amount")).returning(_USERS.c.credits))
_INSERT_ENTRIES = insert(_LEDGER)
# The model's defaults fill the usage event's other columns.
_INSERT_USAGE = insert(_USAGE)


# The balance (users.credits, users.debt_credits) and the user's row lock.

def apply_balance_change(session: Session, user_id: str, amount: int) -> int | None:
    """Add ``amount`` (negative: a debit) to the user's credits; the new balance, or ``None`` if
    it would go below zero (or there is no such user): then nothing changed."""
    return session.connection().execute(_APPLY, {"b_user": user_id, "b_amount": amount}).scalar_one_or_none()


def lock_user_for_update(session: Session, user_id: str) -> User | None:
    """The user's row, read afresh under the lock the balance's UPDATE takes (FOR NO KEY UPDATE)."""
    return session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                          .execution_options(populate_existing=True))


def lock_user(session: Session, user_id: str) -> None:
    """Take the user's row lock and read nothing: concurrent requests of one user queue here."""
    # PostgreSQL: each queued request counts what the previous committed. NO KEY UPDATE is the lock
    # the credit hold's UPDATE takes; a plain FOR UPDATE would deadlock with the KEY SHARE locks that
    # other transactions' run/FMU inserts hold on the row. SQLite needs nothing: its write
    # transactions (BEGIN IMMEDIATE) run one at a time.
    session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def lock_users(session: Session, user_ids: Sequence[str]) -> None:
    """Take the row locks of several users in one order (by id), as ``lock_user`` takes one: two
    transactions that each change the balances of the same two users (grantees paying each other's
    models' owners) then queue instead of deadlocking."""
    session.execute(select(User.id).where(User.id.in_(sorted(set(user_ids)))).order_by(User.id)
                    .with_for_update(key_share=True))


def add_debt(session: Session, user_id: str, credits: int) -> None:
    session.execute(update(User).where(User.id == user_id).values(debt_credits=User.debt_credits + credits)
                    .execution_options(synchronize_session=False))


def repay_debt(session: Session, user_id: str, credits: int) -> None:
    session.execute(update(User).where(User.id == user_id).values(debt_credits=User.debt_credits - credits)
                    .execution_options(synchronize_session=False))


def get_user(session: Session, user_id: str) -> User | None:
    """The user's row (balance, tier, Stripe ids), from the session's identity map if it is there."""
    return session.get(User, user_id)


# The ledger.

def insert_ledger_entries(session: Session, entries: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Write one entry or several (one executemany); every column's value is given."""
    session.connection().execute(_INSERT_ENTRIES, entries)


def has_ledger_entry(session: Session, idempotency_key: str) -> bool:
    return session.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == idempotency_key)) is not None


def list_ledger_entries(session: Session, user_id: str, limit: int, cursor: str | None, *,
                        run_id: str | None = None, kind: str | None = None) -> tuple[list[LedgerEntry], str | None]:
    """A page of the user's entries, newest first, of one run or one kind if given."""
    query = select(LedgerEntry).where(LedgerEntry.user_id == user_id)
    if run_id is not None:
        query = query.where(LedgerEntry.run_id == run_id)
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    return paginate(session, query, LedgerEntry.id, limit, cursor)


def find_purchase(session: Session, payment_intent: str) -> LedgerEntry | None:
    """The purchase entry a Stripe payment intent paid for."""
    return session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "purchase",
                                                    LedgerEntry.reference == payment_intent))


def entries_with_key_prefix(session: Session, reference: str, key_prefix: str) -> list[LedgerEntry]:
    """The entries of a Stripe object (``reference``) whose idempotency keys start with ``key_prefix``."""
    return list(session.scalars(select(LedgerEntry).where(
        LedgerEntry.reference == reference, LedgerEntry.idempotency_key.startswith(key_prefix))))


# Stripe: customers and received events.

def find_user_by_stripe_customer(session: Session, customer_id: str) -> User | None:
    return session.scalar(select(User).where(User.stripe_customer_id == customer_id))


def store_stripe_customer(session: Session, user_id: str, customer_id: str) -> str | None:
    """Record the user's Stripe customer unless one is recorded already; the id now recorded."""
    session.execute(update(User).where(User.id == user_id, User.stripe_customer_id.is_(None))
                    .values(stripe_customer_id=customer_id))
    stored = session.get(User, user_id)
    return None if stored is None else stored.stripe_customer_id


def stripe_event_received(session: Session, event_id: str) -> bool:
    return session.get(StripeEvent, event_id) is not None


def insert_stripe_event(session: Session, event: StripeEvent) -> bool:
    """Store a received event; False (and nothing stored) if a concurrent delivery stored it first
    (PostgreSQL waits for that one's transaction)."""
    try:
        with session.begin_nested():  # a savepoint: the caller's transaction goes on
            session.add(event)
            session.flush()
    except IntegrityError:
        return False
    return True


# The usage outbox.

def insert_usage_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """One Core executemany; nothing is read back."""
    session.connection().execute(_INSERT_USAGE, rows)


def lock_due_usage_events(session: Session, now: datetime, limit: int) -> list[tuple[UsageEvent, str | None]]:
    """Up to ``limit`` pending events due at ``now``, oldest first, with their users' Stripe customer
    ids; locked, skipping those another transaction holds (PostgreSQL; SQLite has one writer)."""
    return list(session.execute(
        select(UsageEvent, User.stripe_customer_id).join(User, User.id == UsageEvent.user_id)
        .where(UsageEvent.status == "pending", UsageEvent.next_attempt_at <= now)
        .order_by(UsageEvent.next_attempt_at).limit(limit)
        .with_for_update(of=UsageEvent, skip_locked=True)).tuples())


def postpone_usage_events(session: Session, event_ids: list[str], until: datetime) -> None:
    session.execute(update(UsageEvent).where(UsageEvent.id.in_(event_ids)).values(next_attempt_at=until))


def finish_usage_event(session: Session, event_id: str, *, status: str, sent_at: datetime | None) -> None:
    session.execute(update(UsageEvent).where(UsageEvent.id == event_id).values(
        status=status, sent_at=sent_at, last_error=None))


def retry_usage_event_later(session: Session, event_id: str, *, next_attempt_at: datetime, last_error: str) -> None:
    """Count a failed attempt and put the next one off."""
    session.execute(update(UsageEvent).where(UsageEvent.id == event_id).values(
        attempts=UsageEvent.attempts + 1, next_attempt_at=next_attempt_at, last_error=last_error))


def reject_usage_event(session: Session, event_id: str, *, last_error: str) -> None:
    """Stripe refused the event for good: it waits, ``rejected``, for an operator."""
    session.execute(update(UsageEvent).where(UsageEvent.id == event_id).values(
        status="rejected", attempts=UsageEvent.attempts + 1, last_error=last_error))


def usage_events_of_status(session: Session, status: str, limit: int) -> list[UsageEvent]:
    """Events in ``status``, oldest first."""
    return list(session.scalars(select(UsageEvent).where(UsageEvent.status == status)
                                .order_by(UsageEvent.occurred_at, UsageEvent.id).limit(limit)))


def retry_rejected_usage_events(session: Session, event_ids: list[str] | None, now: datetime) -> int:
    """Rejected events (those of ``event_ids``, or all) pending again, due at ``now``; how many."""
    query = update(UsageEvent).where(UsageEvent.status == "rejected")
    if event_ids is not None:
        query = query.where(UsageEvent.id.in_(event_ids))
    moved: int = session.execute(query.values(status="pending", next_attempt_at=now)
                                 .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    return moved


def make_pending_usage_events_due(session: Session, event_ids: list[str], now: datetime) -> None:
    """The events of ``event_ids`` still pending are due at ``now``."""
    session.execute(update(UsageEvent).where(UsageEvent.id.in_(event_ids), UsageEvent.status == "pending")
                    .values(next_attempt_at=now))
