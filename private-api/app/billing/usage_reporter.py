"""Flushes the usage outbox (``usage_events``) to Stripe as Billing Meter Events.

Each event is first claimed in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several API processes never pick the same rows; SQLite has one writer) by pushing its
``next_attempt_at`` a lease ahead, then sent with no transaction open. The run id is the meter
event's identifier, so Stripe counts it once: a resend after a lost response, a crash or an
expired lease is answered "already exists", which means it was sent.

A worker task: each of its steps (claim, finish, retry later, release) is a short transaction it
opens and commits itself; the SQL is in ``app.billing.repository``.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

import stripe

from app.background import BackgroundThread
from app.billing import repository as billing_repository
from app.billing.models import UsageEvent
from app.config import Settings
from app.db import Database
from app.kit.models import utcnow

log = logging.getLogger(__name__)

# Longer than any send (timeout times retries): a claimed event whose process died is retried after it.
CLAIM_LEASE = timedelta(minutes=5)


def is_duplicate(exc: stripe.StripeError) -> bool:
    """Stripe already has a meter event with this identifier: it was sent before."""
    return isinstance(exc, stripe.InvalidRequestError) and (
        exc.code == "resource_already_exists" or (exc.param == "identifier" and "exist" in str(exc)))


def is_outage(exc: stripe.StripeError) -> bool:
    return isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (exc.http_status or 0) >= 500


def is_rejection(exc: stripe.StripeError) -> bool:
    """Stripe refused this event for good (a 4xx about the request: an unknown customer, a bad
    value); sending it again would only be refused again. A bad API key (401/403) or a rate limit
    is no fault of the event's: those are retried."""
    return isinstance(exc, stripe.InvalidRequestError) and not is_duplicate(exc) and \
        (exc.http_status or 0) in (400, 404, 422)


class UsageReporter(BackgroundThread):
    thread_name = "usage-reporter"
    join_timeout_s = 30.0

    def __init__(self, settings: Settings, db: Database, client: stripe.StripeClient) -> None:
        super().__init__()
        self.settings = settings
        self.db = db
        self.client = client

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.usage_flush_interval_s):
            try:
                self.flush()
            except Exception:
                log.exception("usage flush failed")

    def backoff(self, attempts: int) -> timedelta:
        delay = min(self.settings.usage_backoff_max_s, self.settings.usage_backoff_base_s * 2 ** attempts)
        # Jitter spreads the retries of many events (and processes) after an outage.
        return timedelta(seconds=delay * random.uniform(0.5, 1.0))

    def claim(self, now: datetime) -> list[tuple[UsageEvent, str | None]]:
        """Due pending events with their users' Stripe customer ids, leased to this process."""
        with self.db.session(write=True) as session:
            rows = billing_repository.lock_due_usage_events(session, now, self.settings.usage_flush_batch)
            if rows:
                billing_repository.postpone_usage_events(session, [event.id for event, _ in rows], now + CLAIM_LEASE)
                session.commit()
            return rows

    def flush(self) -> int:
        """Send what is due; returns how many events were reported."""
        sent = 0
        claimed = self.claim(utcnow())
        for index, (event, customer) in enumerate(claimed):
            if self._stop.is_set():
                self._release([e.id for e, _ in claimed[index:]])
                break
            if customer is None:
                self._finish(event.id, status="skipped")
                continue
            try:
                self.client.v1.billing.meter_events.create(params={
                    "event_name": event.event_name,
                    "payload": {"stripe_customer_id": customer, "value": str(event.value)},
                    "identifier": event.identifier,
                    "timestamp": int(event.occurred_at.timestamp()),
                }, options={"max_network_retries": 0})  # the outbox's own backoff retries, without blocking
            except stripe.StripeError as exc:
                if is_rejection(exc):
                    self._reject(event, exc)
                    continue
                if not is_duplicate(exc):
                    self._retry_later(event, exc)
                    if is_outage(exc):
                        # Stripe is down: the rest of the batch waits for the next tick.
                        self._release([e.id for e, _ in claimed[index + 1:]])
                        break
                    continue
            self._finish(event.id, status="sent")
            sent += 1
        return sent

    def _finish(self, event_id: str, *, status: str) -> None:
        with self.db.session(write=True) as session:
            billing_repository.finish_usage_event(session, event_id, status=status,
                                                  sent_at=utcnow() if status == "sent" else None)
            session.commit()

    def _retry_later(self, event: UsageEvent, exc: stripe.StripeError) -> None:
        log.warning("meter event %s not reported (attempt %d): %s", event.identifier, event.attempts + 1, exc)
        with self.db.session(write=True) as session:
            billing_repository.retry_usage_event_later(
                session, event.id, next_attempt_at=utcnow() + self.backoff(event.attempts),
                last_error=f"{type(exc).__name__}: {exc}"[:2000])
            session.commit()

    def _reject(self, event: UsageEvent, exc: stripe.StripeError) -> None:
        log.error("meter event %s rejected by Stripe, not retried (fmu-gateway-admin usage-events lists it): %s",
                  event.identifier, exc)
        with self.db.session(write=True) as session:
            billing_repository.reject_usage_event(session, event.id, last_error=f"{type(exc).__name__}: {exc}"[:2000])
            session.commit()

    def _release(self, event_ids: list[str]) -> None:
        # Claimed but not tried: due again at once rather than after the lease.
        if event_ids:
            with self.db.session(write=True) as session:
                billing_repository.make_pending_usage_events_due(session, event_ids, utcnow())
                session.commit()
